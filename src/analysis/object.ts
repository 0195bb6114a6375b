// One relocatable object seen as the diff needs it: its functions (with their
// `.cold` parts and aliases folded in), its data objects, and every
// relocation resolved to the exact place it points at.
//
// "The exact place" needs the instruction: a PC-relative field's addend is
// the target minus the distance from the field to the end of the instruction
// (-4 for `lea .LC0(%rip)`, -5 for `addl $1, x(%rip)`), so the string or the
// static variable a section-symbol relocation means is only known after
// decoding the instruction around it.

import { TspliceError } from '../errors.js';
import {
  SHF_ALLOC, SHF_EXECINSTR, SHF_MERGE, SHF_STRINGS, SHF_TLS, SHF_WRITE, SHN_LORESERVE, SHN_UNDEF, STB_GLOBAL,
  STB_WEAK, STT_FUNC, STT_GNU_IFUNC, STT_OBJECT, STT_SECTION, STT_TLS,
} from '../elf/constants.js';
import { type ElfFile, type ElfRela, type ElfSection, type ElfSymbol } from '../elf/reader.js';
import {
  R_X86_64_GOTPC32_TLSDESC, R_X86_64_GOTTPOFF, R_X86_64_TLSGD, R_X86_64_TLSLD, isGotPcRelative, isPcRelative,
  relocationFieldSize,
} from '../elf/x86_64.js';
import { decodeAll, type Insn } from '../x86/decode.js';
import { coldParentName, normalizeSymbolName } from './names.js';

/** What a section holds, as far as comparing references into it goes. */
export type SectionRole =
  | 'text' // machine code
  | 'strings' // SHF_MERGE|SHF_STRINGS: .rodata.str1.1, compared by the string
  | 'constants' // SHF_MERGE: .rodata.cst8 (.LC0 doubles), compared by the entry
  | 'rodata' // read-only data, compared by content
  | 'data' // writable data (.data, .bss, TLS), compared by identity
  | 'other'; // not loaded (debug, notes) or unknown

export interface Entity {
  kind: 'function' | 'data';
  /** The symbol that names it (the global one when aliases share the address). */
  symbol: ElfSymbol;
  name: string;
  /** Name with compiler numbering removed, for pairing pre with post. */
  normalized: string;
  section: ElfSection;
  /** Byte range inside the section. */
  start: number;
  end: number;
  /** Data only: writable at run time (.data, .bss, TLS; not .rodata or .data.rel.ro). */
  writable: boolean;
  /** Functions only: `.cold` parts split off by gcc, compared and shipped with it. */
  coldParts: Entity[];
  /** For a `.cold` part: the function it belongs to. */
  coldParent?: Entity;
  /** Normalised names of the entities that reference this one (for pairing look-alike names). */
  users: Set<string>;
}

/** A relocation with what it points at worked out. */
export interface ResolvedReloc {
  rela: ElfRela;
  /** Offset of the field inside its section. */
  offset: number;
  /** Bytes the relocation writes (masked when comparing code). */
  size: number;
  symbol: ElfSymbol;
  /** Section the target lies in; undefined for undefined (external) and absolute symbols. */
  targetSection?: ElfSection;
  /** Offset inside targetSection the field designates (symbol value + addend + instruction tail). */
  targetOffset: number;
  /** The instruction holding the field, for relocations in code. */
  insn?: Insn;
}

export interface ObjectIndex {
  elf: ElfFile;
  functions: Entity[];
  data: Entity[];
  /** Symbol index → the entity it names (aliases and cold parts included). */
  bySymbol: Map<number, Entity>;
  /** Section index → its named entities, sorted by start. */
  bySection: Map<number, Entity[]>;
  /** Section index → resolved relocations applying to it, sorted by offset. */
  relocs: Map<number, ResolvedReloc[]>;
  /** Section index → every offset some relocation in the object points at (for splitting anonymous rodata). */
  referencedOffsets: Map<number, Set<number>>;
}

export function sectionRole(section: ElfSection): SectionRole {
  const f = section.flags;
  if ((f & SHF_ALLOC) === 0n) return 'other';
  // Unwind tables and notes describe code; their differences are not changes of their own.
  if (section.name === '.eh_frame' || section.name.startsWith('.note.')) return 'other';
  if ((f & SHF_EXECINSTR) !== 0n) return 'text';
  if ((f & SHF_MERGE) !== 0n && (f & SHF_STRINGS) !== 0n) return 'strings';
  if ((f & SHF_MERGE) !== 0n && section.entsize > 0) return 'constants';
  if ((f & SHF_TLS) !== 0n) return 'data';
  // .data.rel.ro holds const objects with pointers: written only by the dynamic
  // linker, read-only afterwards (RELRO), so it is content like .rodata.
  if ((f & SHF_WRITE) === 0n || section.name === '.data.rel.ro' || section.name.startsWith('.data.rel.ro.')) {
    return 'rodata';
  }
  return 'data';
}

function isDefined(sym: ElfSymbol): boolean {
  return sym.shndx !== SHN_UNDEF && sym.shndx < SHN_LORESERVE;
}

/** Which of several symbols at one address names the function: global first, then one without compiler suffix. */
function primaryRank(sym: ElfSymbol): number {
  const global = sym.bind === STB_GLOBAL || sym.bind === STB_WEAK ? 0 : 2;
  return global + (sym.name.includes('.') ? 1 : 0);
}

/** Build the index of one relocatable object. */
export function indexObject(elf: ElfFile): ObjectIndex {
  const bySymbol = new Map<number, Entity>();
  const bySection = new Map<number, Entity[]>();
  const functions: Entity[] = [];
  const data: Entity[] = [];

  // Group symbols by (section, address): aliases name one entity.
  const groups = new Map<string, ElfSymbol[]>();
  for (const sym of elf.symbols) {
    if (!isDefined(sym) || sym.name === '') continue;
    const section = elf.sections[sym.shndx];
    const role = sectionRole(section);
    const isFunction = (sym.type === STT_FUNC || sym.type === STT_GNU_IFUNC) && role === 'text';
    const isData = (sym.type === STT_OBJECT || sym.type === STT_TLS) && role !== 'text' && role !== 'other';
    if (!isFunction && !isData) continue;
    const key = `${isFunction ? 'f' : 'd'}:${sym.shndx}:${sym.value}`;
    const list = groups.get(key) ?? [];
    list.push(sym);
    groups.set(key, list);
  }

  for (const syms of groups.values()) {
    syms.sort((a, b) => primaryRank(a) - primaryRank(b) || a.index - b.index);
    const sym = syms[0];
    const section = elf.sections[sym.shndx];
    const start = Number(sym.value);
    const size = Math.max(...syms.map((s) => s.size));
    if (start > section.size) {
      throw new TspliceError('bad_input', `${elf.name}: symbol ${sym.name} lies outside its section ${section.name}`);
    }
    const kind = sym.type === STT_FUNC || sym.type === STT_GNU_IFUNC ? 'function' : 'data';
    const entity: Entity = {
      kind,
      symbol: sym,
      name: sym.name,
      normalized: normalizeSymbolName(sym.name),
      section,
      start,
      end: size > 0 ? Math.min(start + size, section.size) : section.size,
      writable: kind === 'data' && sectionRole(section) === 'data',
      coldParts: [],
      users: new Set(),
    };
    for (const s of syms) bySymbol.set(s.index, entity);
    const list = bySection.get(section.index) ?? [];
    list.push(entity);
    bySection.set(section.index, list);
    (kind === 'function' ? functions : data).push(entity);
  }
  for (const list of bySection.values()) list.sort((a, b) => a.start - b.start);
  // A zero-size symbol reaches to the next one, not to the section end.
  for (const list of bySection.values()) {
    for (let i = 0; i + 1 < list.length; i++) {
      if (list[i].symbol.size === 0) list[i].end = Math.min(list[i].end, list[i + 1].start);
    }
  }

  // Fold `.cold` parts into the function they were split from.
  const functionByName = new Map(functions.map((f) => [f.name, f]));
  const topLevel: Entity[] = [];
  for (const f of functions) {
    const parentName = coldParentName(f.name);
    const parent = parentName === undefined ? undefined : functionByName.get(parentName);
    if (parent && parent !== f) {
      f.coldParent = parent;
      parent.coldParts.push(f);
    } else {
      topLevel.push(f);
    }
  }

  const relocs = new Map<number, ResolvedReloc[]>();
  const referencedOffsets = new Map<number, Set<number>>();
  for (const [sectionIndex, entries] of elf.relocations) {
    const section = elf.sections[sectionIndex];
    if (!section || sectionRole(section) === 'other') continue;
    const resolved = resolveSectionRelocs(elf, section, entries);
    relocs.set(sectionIndex, resolved);
    for (const r of resolved) {
      if (!r.targetSection) continue;
      const set = referencedOffsets.get(r.targetSection.index) ?? new Set<number>();
      set.add(r.targetOffset);
      referencedOffsets.set(r.targetSection.index, set);
    }
  }

  const index: ObjectIndex = { elf, functions: topLevel, data, bySymbol, bySection, relocs, referencedOffsets };
  recordUsers(index, functions);
  return index;
}

/** Decode a code section's relocations down to the byte each one designates. */
function resolveSectionRelocs(elf: ElfFile, section: ElfSection, entries: ElfRela[]): ResolvedReloc[] {
  const code = sectionRole(section) === 'text' ? decodeAll(section.data, 0n) : [];
  const resolved: ResolvedReloc[] = [];
  let cursor = 0;
  const sorted = [...entries].sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  for (const rela of sorted) {
    const offset = Number(rela.offset);
    const size = relocationFieldSize(rela.type);
    if (offset + size > section.size) {
      throw new TspliceError('bad_input', `${elf.name}: relocation at ${section.name}+0x${offset.toString(16)} ` +
        'lies outside its section');
    }
    const symbol = elf.symbols[rela.symbolIndex];
    let insn: Insn | undefined;
    while (cursor < code.length && Number(code[cursor].ip) + code[cursor].length <= offset) cursor++;
    if (cursor < code.length && Number(code[cursor].ip) <= offset) insn = code[cursor];
    // A PC-relative field in code counts from the end of its instruction,
    // which the addend compensates for; add that tail back to find the target.
    let tail = 0;
    const pcRelative = countsFromInstructionEnd(rela.type);
    if (pcRelative && insn) {
      const end = Number(insn.ip) + insn.length;
      tail = end - offset >= size ? end - offset : size;
    } else if (pcRelative && code.length > 0) {
      tail = size;
    }
    const targetSection = symbol && isDefined(symbol) ? elf.sections[symbol.shndx] : undefined;
    const targetOffset = symbol ? Number(symbol.value + rela.addend) + tail : 0;
    resolved.push({ rela, offset, size, symbol: symbol ?? elf.symbols[0], targetSection, targetOffset, insn });
  }
  return resolved;
}

/** Field holds target minus the address of the next instruction. */
function countsFromInstructionEnd(type: number): boolean {
  return isPcRelative(type) || isGotPcRelative(type) || type === R_X86_64_TLSGD || type === R_X86_64_TLSLD ||
    type === R_X86_64_GOTTPOFF || type === R_X86_64_GOTPC32_TLSDESC;
}

/** The named entity a relocation designates, if any (section symbols resolved by offset). */
export function targetEntity(index: ObjectIndex, r: ResolvedReloc): Entity | undefined {
  if (r.symbol.type !== STT_SECTION) {
    const named = index.bySymbol.get(r.symbol.index);
    if (named) return named;
  }
  if (!r.targetSection) return undefined;
  return entityAt(index, r.targetSection, r.targetOffset);
}

/**
 * The entity covering `offset` in `section`; in code, the closest function
 * before it (jump-table entries point past a function's end by design).
 */
export function entityAt(index: ObjectIndex, section: ElfSection, offset: number): Entity | undefined {
  const list = index.bySection.get(section.index);
  if (!list) return undefined;
  let best: Entity | undefined;
  for (const e of list) {
    if (e.start <= offset && offset < e.end) return e;
    if (e.start <= offset) best = e;
  }
  return sectionRole(section) === 'text' ? (best ?? list[0]) : undefined;
}

/** Relocations whose field lies in [start, end) of a section. */
export function relocsIn(index: ObjectIndex, section: ElfSection, start: number, end: number): ResolvedReloc[] {
  return (index.relocs.get(section.index) ?? []).filter((r) => r.offset >= start && r.offset < end);
}

function recordUsers(index: ObjectIndex, allFunctions: Entity[]): void {
  for (const user of [...allFunctions, ...index.data]) {
    const owner = user.coldParent ?? user;
    for (const r of relocsIn(index, user.section, user.start, user.end)) {
      const target = targetEntity(index, r);
      if (target && target !== owner && target !== user) target.users.add(owner.normalized);
    }
  }
}
