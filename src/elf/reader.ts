// ELF64 little-endian reader for relocatable objects, executables (PIE or
// not) and shared objects. Every offset and size taken from the file is
// checked against the buffer, so malformed input ends in a bad_input error,
// never an exception from Buffer or an endless loop.

import { TspliceError } from '../errors.js';
import {
  DT_NEEDED, DT_NULL, DT_SONAME, NT_GNU_BUILD_ID, SHN_LORESERVE, SHN_UNDEF, SHN_XINDEX, SHT_DYNAMIC,
  SHT_DYNSYM, SHT_GNU_VERDEF, SHT_GNU_VERNEED, SHT_GNU_VERSYM, SHT_NOBITS, SHT_NOTE, SHT_RELA, SHT_STRTAB, SHT_SYMTAB,
  SHT_SYMTAB_SHNDX, STT_SECTION, PT_NOTE,
} from './constants.js';

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: bigint;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
  info: number;
  addralign: number;
  entsize: number;
  /** File contents (empty for SHT_NOBITS). */
  data: Buffer;
}

export interface ElfSymbol {
  index: number;
  name: string;
  value: bigint;
  size: number;
  type: number;
  bind: number;
  visibility: number;
  /** Section index (SHN_* values for special ones; SHN_XINDEX already resolved). */
  shndx: number;
  /** For dynamic symbols: version name, e.g. "GLIBC_2.2.5", when versioned. */
  version?: string;
  /** For dynamic symbols: the version is the default one (name@@VER). */
  defaultVersion?: boolean;
}

export interface ElfRela {
  offset: bigint;
  type: number;
  symbolIndex: number;
  addend: bigint;
}

export interface ElfSegment {
  type: number;
  flags: number;
  offset: number;
  vaddr: bigint;
  filesz: number;
  memsz: number;
  align: number;
}

export interface ElfFile {
  /** A name for messages (usually the path). */
  name: string;
  type: number;
  machine: number;
  entry: bigint;
  sections: ElfSection[];
  segments: ElfSegment[];
  /** .symtab, index 0 (the null symbol) included; empty when stripped. */
  symbols: ElfSymbol[];
  /** .dynsym, index 0 included; empty for relocatable objects. */
  dynamicSymbols: ElfSymbol[];
  /** Relocation sections keyed by the index of the section they apply to. */
  relocations: Map<number, ElfRela[]>;
  /** SHF_ALLOC relocation sections (.rela.dyn, .rela.plt) by name. */
  dynamicRelocations: Map<string, ElfRela[]>;
  buildId?: string;
  soname?: string;
  needed: string[];
}

const ELF_MAGIC = 0x464c457f;

function bad(name: string, what: string): TspliceError {
  return new TspliceError('bad_input', `${name}: malformed ELF file: ${what}`, { file: name });
}

function checkRange(name: string, buf: Buffer, offset: number, size: number, what: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size < 0 ||
      offset + size > buf.length) {
    throw bad(name, `${what} (offset ${offset}, size ${size}) lies outside the file (${buf.length} bytes)`);
  }
}

function toSafe(name: string, v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(name, `${what} is too large (${v})`);
  return Number(v);
}

function cString(name: string, table: Buffer, offset: number, what: string): string {
  if (offset >= table.length) {
    if (offset === 0 && table.length === 0) return '';
    throw bad(name, `${what}: string offset ${offset} outside its string table (${table.length} bytes)`);
  }
  const end = table.indexOf(0, offset);
  if (end < 0) throw bad(name, `${what}: string at ${offset} is not NUL-terminated`);
  return table.toString('latin1', offset, end);
}

/** Parse an ELF64 little-endian file. Throws TspliceError('bad_input') on anything malformed. */
export function parseElf(buf: Buffer, name = '<elf>'): ElfFile {
  if (buf.length < 64) throw bad(name, `file too short for an ELF header (${buf.length} bytes)`);
  if (buf.readUInt32LE(0) !== ELF_MAGIC) throw bad(name, 'not an ELF file (bad magic)');
  if (buf[4] !== 2) throw bad(name, 'not a 64-bit ELF file (only ELF64 is supported)');
  if (buf[5] !== 1) throw bad(name, 'not a little-endian ELF file');

  const type = buf.readUInt16LE(16);
  const machine = buf.readUInt16LE(18);
  const entry = buf.readBigUInt64LE(24);
  const phoff = toSafe(name, buf.readBigUInt64LE(32), 'e_phoff');
  const shoff = toSafe(name, buf.readBigUInt64LE(40), 'e_shoff');
  const phentsize = buf.readUInt16LE(54);
  let phnum = buf.readUInt16LE(56);
  const shentsize = buf.readUInt16LE(58);
  let shnum = buf.readUInt16LE(60);
  let shstrndx = buf.readUInt16LE(62);

  // Section header 0 holds the real counts when they overflow 16 bits.
  if (shoff !== 0) {
    if (shentsize !== 64) throw bad(name, `unexpected section header size ${shentsize}`);
    checkRange(name, buf, shoff, 64, 'section header 0');
    if (shnum === 0) shnum = toSafe(name, buf.readBigUInt64LE(shoff + 32), 'section count');
    if (shstrndx === SHN_XINDEX) shstrndx = buf.readUInt32LE(shoff + 40);
    if (phnum === 0xffff) phnum = buf.readUInt32LE(shoff + 44);
  } else {
    shnum = 0;
  }

  const segments: ElfSegment[] = [];
  if (phnum > 0) {
    if (phentsize !== 56) throw bad(name, `unexpected program header size ${phentsize}`);
    checkRange(name, buf, phoff, phnum * 56, 'program header table');
    for (let i = 0; i < phnum; i++) {
      const p = phoff + i * 56;
      segments.push({
        type: buf.readUInt32LE(p),
        flags: buf.readUInt32LE(p + 4),
        offset: toSafe(name, buf.readBigUInt64LE(p + 8), 'p_offset'),
        vaddr: buf.readBigUInt64LE(p + 16),
        filesz: toSafe(name, buf.readBigUInt64LE(p + 32), 'p_filesz'),
        memsz: toSafe(name, buf.readBigUInt64LE(p + 40), 'p_memsz'),
        align: toSafe(name, buf.readBigUInt64LE(p + 48), 'p_align'),
      });
    }
  }

  checkRange(name, buf, shoff, shnum * 64, 'section header table');
  const raw: Array<Omit<ElfSection, 'index' | 'name' | 'data'> & { nameOff: number }> = [];
  for (let i = 0; i < shnum; i++) {
    const s = shoff + i * 64;
    raw.push({
      nameOff: buf.readUInt32LE(s),
      type: buf.readUInt32LE(s + 4),
      flags: buf.readBigUInt64LE(s + 8),
      addr: buf.readBigUInt64LE(s + 16),
      offset: toSafe(name, buf.readBigUInt64LE(s + 24), `section ${i} offset`),
      size: toSafe(name, buf.readBigUInt64LE(s + 32), `section ${i} size`),
      link: buf.readUInt32LE(s + 40),
      info: buf.readUInt32LE(s + 44),
      addralign: toSafe(name, buf.readBigUInt64LE(s + 48), `section ${i} alignment`),
      entsize: toSafe(name, buf.readBigUInt64LE(s + 56), `section ${i} entry size`),
    });
  }

  const sectionData = (i: number): Buffer => {
    const r = raw[i];
    if (r.type === SHT_NOBITS || r.type === 0) return Buffer.alloc(0);
    checkRange(name, buf, r.offset, r.size, `section ${i} contents`);
    return buf.subarray(r.offset, r.offset + r.size);
  };

  let shstrtab: Buffer = Buffer.alloc(0);
  if (shnum > 0) {
    if (shstrndx >= shnum) throw bad(name, `section name table index ${shstrndx} out of range`);
    shstrtab = sectionData(shstrndx);
  }

  const sections: ElfSection[] = raw.map((r, index) => ({
    index,
    name: index === 0 ? '' : cString(name, shstrtab, r.nameOff, `name of section ${index}`),
    type: r.type,
    flags: r.flags,
    addr: r.addr,
    offset: r.offset,
    size: r.size,
    link: r.link,
    info: r.info,
    addralign: r.addralign,
    entsize: r.entsize,
    data: sectionData(index),
  }));

  const linked = (s: ElfSection, what: string): ElfSection => {
    if (s.link >= sections.length) throw bad(name, `${what}: linked section ${s.link} out of range`);
    return sections[s.link];
  };

  const readSymbols = (table: ElfSection | undefined): ElfSymbol[] => {
    if (!table) return [];
    if (table.entsize !== 24) throw bad(name, `${table.name}: unexpected symbol size ${table.entsize}`);
    if (table.size % 24 !== 0) throw bad(name, `${table.name}: size is not a multiple of 24`);
    const strtab = linked(table, table.name);
    if (strtab.type !== SHT_STRTAB) throw bad(name, `${table.name}: linked section is not a string table`);
    const xindex = sections.find((s) => s.type === SHT_SYMTAB_SHNDX && s.link === table.index);
    const symbols: ElfSymbol[] = [];
    const count = table.size / 24;
    for (let i = 0; i < count; i++) {
      const o = i * 24;
      const d = table.data;
      const info = d[o + 4];
      let shndx = d.readUInt16LE(o + 6);
      if (shndx === SHN_XINDEX) {
        if (!xindex || xindex.data.length < (i + 1) * 4) throw bad(name, `symbol ${i}: missing extended section index`);
        shndx = xindex.data.readUInt32LE(i * 4);
      }
      if (shndx !== SHN_UNDEF && shndx < SHN_LORESERVE && shndx >= sections.length) {
        throw bad(name, `${table.name}: symbol ${i} refers to section ${shndx}, which does not exist`);
      }
      symbols.push({
        index: i,
        name: cString(name, strtab.data, d.readUInt32LE(o), `${table.name} symbol ${i}`),
        bind: info >> 4,
        type: info & 0xf,
        visibility: d[o + 5] & 3,
        shndx,
        value: d.readBigUInt64LE(o + 8),
        size: toSafe(name, d.readBigUInt64LE(o + 16), `symbol ${i} size`),
      });
    }
    return symbols;
  };

  const symbols = readSymbols(sections.find((s) => s.type === SHT_SYMTAB));
  const dynsymSection = sections.find((s) => s.type === SHT_DYNSYM);
  const dynamicSymbols = readSymbols(dynsymSection);
  if (dynsymSection) applyVersions(name, sections, dynamicSymbols);

  const relocations = new Map<number, ElfRela[]>();
  const dynamicRelocations = new Map<string, ElfRela[]>();
  for (const s of sections) {
    if (s.type !== SHT_RELA) continue;
    if (s.entsize !== 24 || s.size % 24 !== 0) throw bad(name, `${s.name}: malformed relocation table`);
    const symtab = s.link === 0 ? undefined : linked(s, s.name);
    const symCount = symtab ? (symtab.type === SHT_DYNSYM ? dynamicSymbols.length : symbols.length) : 0;
    const entries: ElfRela[] = [];
    for (let o = 0; o < s.size; o += 24) {
      const info = s.data.readBigUInt64LE(o + 8);
      const symbolIndex = Number(info >> 32n);
      if (symbolIndex !== 0 && symbolIndex >= symCount) {
        throw bad(name, `${s.name}: relocation at ${o / 24} refers to symbol ${symbolIndex}, which does not exist`);
      }
      entries.push({
        offset: s.data.readBigUInt64LE(o),
        type: Number(info & 0xffffffffn),
        symbolIndex,
        addend: s.data.readBigInt64LE(o + 16),
      });
    }
    if ((s.flags & 2n) !== 0n || s.info === 0) {
      dynamicRelocations.set(s.name, entries);
    } else {
      if (s.info >= sections.length) throw bad(name, `${s.name}: applies to section ${s.info}, which does not exist`);
      relocations.set(s.info, entries);
    }
  }

  const elf: ElfFile = {
    name, type, machine, entry, sections, segments, symbols, dynamicSymbols, relocations, dynamicRelocations,
    needed: [],
  };
  readNotes(elf, buf);
  readDynamic(elf);
  return elf;
}

/** Attach symbol versions (.gnu.version + .gnu.version_d/_r) to dynamic symbols. */
function applyVersions(name: string, sections: ElfSection[], symbols: ElfSymbol[]): void {
  const versym = sections.find((s) => s.type === SHT_GNU_VERSYM);
  if (!versym || versym.size < symbols.length * 2) return;
  const names = new Map<number, string>();
  for (const s of sections) {
    if (s.type !== SHT_GNU_VERDEF && s.type !== SHT_GNU_VERNEED) continue;
    if (s.link >= sections.length) throw bad(name, `${s.name}: linked section out of range`);
    const strtab = sections[s.link].data;
    const d = s.data;
    let off = 0;
    // Each table is a linked list; bound the walk by the section size so a loop in the file cannot hang us.
    for (let guard = 0; guard < s.size && off + 20 <= d.length; guard++) {
      if (s.type === SHT_GNU_VERDEF) {
        const ndx = d.readUInt16LE(off + 4);
        const aux = d.readUInt32LE(off + 12);
        const next = d.readUInt32LE(off + 16);
        if (off + aux + 4 <= d.length) names.set(ndx, cString(name, strtab, d.readUInt32LE(off + aux), 'version name'));
        if (next === 0) break;
        off += next;
      } else {
        const cnt = d.readUInt16LE(off + 2);
        let aux = off + d.readUInt32LE(off + 8);
        for (let j = 0; j < cnt && aux + 16 <= d.length; j++) {
          const other = d.readUInt16LE(aux + 6);
          names.set(other, cString(name, strtab, d.readUInt32LE(aux + 8), 'version name'));
          const nextAux = d.readUInt32LE(aux + 12);
          if (nextAux === 0) break;
          aux += nextAux;
        }
        const next = d.readUInt32LE(off + 12);
        if (next === 0) break;
        off += next;
      }
    }
  }
  for (const sym of symbols) {
    const v = versym.data.readUInt16LE(sym.index * 2);
    const idx = v & 0x7fff;
    if (idx >= 2 && names.has(idx)) {
      sym.version = names.get(idx);
      sym.defaultVersion = (v & 0x8000) === 0;
    }
  }
}

function readNotes(elf: ElfFile, buf: Buffer): void {
  const blobs: Buffer[] = elf.sections.filter((s) => s.type === SHT_NOTE).map((s) => s.data);
  if (blobs.length === 0) {
    for (const p of elf.segments) {
      if (p.type !== PT_NOTE) continue;
      checkRange(elf.name, buf, p.offset, p.filesz, 'note segment');
      blobs.push(buf.subarray(p.offset, p.offset + p.filesz));
    }
  }
  for (const d of blobs) {
    let off = 0;
    while (off + 12 <= d.length) {
      const namesz = d.readUInt32LE(off);
      const descsz = d.readUInt32LE(off + 4);
      const type = d.readUInt32LE(off + 8);
      const nameStart = off + 12;
      const descStart = nameStart + align4(namesz);
      const next = descStart + align4(descsz);
      if (next > d.length || next <= off) break;
      const noteName = d.toString('latin1', nameStart, nameStart + Math.max(0, namesz - 1));
      if (noteName === 'GNU' && type === NT_GNU_BUILD_ID) {
        elf.buildId = d.toString('hex', descStart, descStart + descsz);
      }
      off = next;
    }
  }
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function readDynamic(elf: ElfFile): void {
  const dyn = elf.sections.find((s) => s.type === SHT_DYNAMIC);
  if (!dyn || dyn.link >= elf.sections.length) return;
  const strtab = elf.sections[dyn.link].data;
  for (let o = 0; o + 16 <= dyn.data.length; o += 16) {
    const tag = dyn.data.readBigInt64LE(o);
    const val = dyn.data.readBigUInt64LE(o + 8);
    if (tag === BigInt(DT_NULL)) break;
    if (tag === BigInt(DT_NEEDED) || tag === BigInt(DT_SONAME)) {
      const s = cString(elf.name, strtab, Number(val), 'dynamic entry');
      if (tag === BigInt(DT_NEEDED)) elf.needed.push(s);
      else elf.soname = s;
    }
  }
}

/** The section a symbol is defined in, or undefined for undefined/absolute/common symbols. */
export function symbolSection(elf: ElfFile, sym: ElfSymbol): ElfSection | undefined {
  if (sym.shndx === SHN_UNDEF || sym.shndx >= SHN_LORESERVE) return undefined;
  return elf.sections[sym.shndx];
}

export function sectionByName(elf: ElfFile, name: string): ElfSection | undefined {
  return elf.sections.find((s) => s.name === name);
}

/** Relocations that apply to a section (empty when it has none). */
export function relocationsFor(elf: ElfFile, section: ElfSection): ElfRela[] {
  return elf.relocations.get(section.index) ?? [];
}

/** A symbol's name, or its section's name for section symbols (which have none of their own). */
export function symbolDisplayName(elf: ElfFile, sym: ElfSymbol): string {
  if (sym.type === STT_SECTION && sym.name === '') return symbolSection(elf, sym)?.name ?? '';
  return sym.name;
}
