// The symbols of the target kernel's linked objects (vmlinux from the -dbg
// package, modules from the image package), as livepatch needs them:
//  - which definition of a local name belongs to the translation unit being
//    patched (the STT_FILE groups of the symbol table),
//  - its `sympos`: its position among same-named symbols in kallsyms order
//    (address order for vmlinux, symbol-table order for a module), 0 when the
//    name is unique,
//  - the code bytes at an address, for run-pre matching at create time.
//
// Parsing the 590 MB vmlinux takes ~10 s, so its table is cached as JSON next
// to the package it came from.

import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { SHF_ALLOC, SHN_UNDEF, SHT_NOBITS, STB_LOCAL, STT_FILE, STT_FUNC, STT_OBJECT, STT_SECTION } from '../../elf/constants.js';
import { parseElf } from '../../elf/reader.js';
import { TspliceError } from '../../errors.js';

export interface KernelSymbol {
  name: string;
  /** Link-time address (vmlinux) or offset in its section (module). */
  value: number;
  size: number;
  type: number;
  local: boolean;
  /** Index of the STT_FILE group it follows in the symbol table (-1 before any FILE symbol). */
  file: number;
  /** Position in the symbol table. */
  order: number;
  /** Where its bytes are in the ELF file (-1 for SHT_NOBITS). */
  fileOffset: number;
}

/** One linked kernel object's symbols (vmlinux or a module). */
export class KernelSymbols {
  private readonly byName = new Map<string, KernelSymbol[]>();

  constructor(
    /** "vmlinux" or the module name. */
    readonly object: string,
    /** The ELF file the symbols (and code) come from. */
    readonly path: string,
    readonly symbols: KernelSymbol[],
    /** Basenames of the STT_FILE symbols, by group index. */
    readonly files: string[],
    /** GNU build id of the file, when it has one. */
    readonly buildId?: string,
  ) {
    for (const s of symbols) {
      const list = this.byName.get(s.name) ?? [];
      list.push(s);
      this.byName.set(s.name, list);
    }
    // kallsyms order: vmlinux's table is sorted by address, a module's is its symtab order.
    if (object === 'vmlinux') for (const list of this.byName.values()) list.sort((a, b) => a.value - b.value);
  }

  named(name: string): KernelSymbol[] {
    return this.byName.get(name) ?? [];
  }

  /** A global (non-local) definition of name, if any. */
  global(name: string): KernelSymbol | undefined {
    return this.named(name).find((s) => !s.local);
  }

  /** 0 when the name is unique in the object, else the 1-based position of `symbol` among its namesakes. */
  sympos(symbol: KernelSymbol): number {
    const all = this.named(symbol.name);
    if (all.length <= 1) return 0;
    return all.indexOf(symbol) + 1;
  }

  /**
   * The FILE groups that can be the translation unit `source` (by basename)
   * and define every one of `locals` (local names the unit's pre object defines
   * and that survived linking); exactly one is wanted.
   */
  unitGroups(source: string, locals: string[]): number[] {
    const base = basename(source);
    // Modules are shipped without STT_FILE symbols: the whole module is one group.
    if (this.files.length === 0) {
      return locals.every((name) => this.named(name).some((s) => s.local)) ? [-1] : [];
    }
    const groups: number[] = [];
    this.files.forEach((f, i) => {
      if (f !== base) return;
      if (locals.every((name) => this.named(name).some((s) => s.file === i))) groups.push(i);
    });
    return groups;
  }

  /** The local `name` defined in FILE group `group`. */
  localIn(group: number, name: string): KernelSymbol | undefined {
    return this.named(name).find((s) => s.local && s.file === group);
  }

  /** The bytes of a symbol as the file holds them (unrelocated code of a module; linked code of vmlinux). */
  bytes(symbol: KernelSymbol, length = symbol.size): Buffer {
    if (symbol.fileOffset < 0) throw new TspliceError('internal', `${this.object}: ${symbol.name} has no file contents`);
    const buf = Buffer.alloc(length);
    const fd = openSync(this.path, 'r');
    try {
      readSync(fd, buf, 0, length, symbol.fileOffset);
    } finally {
      closeSync(fd);
    }
    return buf;
  }
}

/** Bumped when the cached JSON's shape changes. */
const CACHE_FORMAT = 2;

interface SymbolTableJson {
  format: number;
  buildId?: string;
  object: string;
  path: string;
  symbols: KernelSymbol[];
  files: string[];
}

/** Read (or build and cache at `cachePath`) the symbol table of a linked kernel object. */
export function loadKernelSymbols(object: string, path: string, cachePath?: string): KernelSymbols {
  if (cachePath && existsSync(cachePath)) {
    const json = JSON.parse(readFileSync(cachePath, 'utf8')) as SymbolTableJson;
    if (json.path === path && json.format === CACHE_FORMAT) {
      return new KernelSymbols(json.object, json.path, json.symbols, json.files, json.buildId);
    }
  }
  if (!existsSync(path)) throw new TspliceError('bad_input', `${path} does not exist: cannot read ${object}'s symbols`);
  const elf = parseElf(readFileSync(path), path);
  const files: string[] = [];
  const symbols: KernelSymbol[] = [];
  for (const s of elf.symbols) {
    if (s.index === 0) continue;
    if (s.type === STT_FILE) {
      files.push(basename(s.name));
      continue;
    }
    if (s.type === STT_SECTION || s.shndx === SHN_UNDEF || s.name === '') continue;
    const section = elf.sections[s.shndx];
    if (section && (section.flags & SHF_ALLOC) === 0n) continue;
    // A module's init code is freed after loading and its symbols leave kallsyms: they do not count for sympos.
    if (object !== 'vmlinux' && section && section.name.startsWith('.init.')) continue;
    const fileOffset = section && section.type !== SHT_NOBITS ? section.offset + Number(s.value - section.addr) : -1;
    symbols.push({
      name: s.name, value: Number(s.value), size: s.size, type: s.type, local: s.bind === STB_LOCAL,
      file: files.length - 1, order: s.index, fileOffset,
    });
  }
  if (cachePath) {
    const json: SymbolTableJson = { format: CACHE_FORMAT, buildId: elf.buildId, object, path, symbols, files };
    writeFileSync(`${cachePath}.tmp`, JSON.stringify(json));
    renameSync(`${cachePath}.tmp`, cachePath);
  }
  return new KernelSymbols(object, path, symbols, files, elf.buildId);
}

/** True for symbol types a livepatch may name (functions and variables; also untyped asm labels). */
export function isNamedEntity(type: number): boolean {
  return type === STT_FUNC || type === STT_OBJECT || type === 0;
}
