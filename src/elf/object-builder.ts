// Builds a relocatable ELF64 little-endian object (ET_REL) from sections,
// symbols and relocations given as values. This is the last step of making a
// livepatch module: the diff chooses post-patch sections, and this lays them
// out as an object the kernel's module loader and livepatch core accept.
//
// Output is deterministic: the same calls in the same order give the same
// bytes (section order = order added; symbols ordered by a fixed rule; no
// timestamps, no hashing of object identity).

import { TspliceError } from '../errors.js';
import {
  ELFCLASS64, ELFDATA2LSB, ELFOSABI_NONE, EM_X86_64, ET_REL, EV_CURRENT, SHF_INFO_LINK, SHN_ABS, SHN_COMMON,
  SHN_LORESERVE, SHN_UNDEF, SHN_XINDEX, SHT_NOBITS, SHT_NULL, SHT_RELA, SHT_STRTAB, SHT_SYMTAB, SHT_SYMTAB_SHNDX,
  STB_LOCAL, STT_FILE, STT_SECTION,
} from './constants.js';
import { relocationFieldSize } from './x86_64.js';

/** A section of the object being built. */
export interface OutSection {
  name: string;
  type: number;
  flags: bigint;
  /** Power of two (0 and 1 both mean "no alignment"); the file offset of the data respects it. */
  addralign: number;
  entsize?: number;
  /** Contents. Omit for SHT_NOBITS (give size instead). */
  data?: Buffer;
  /** Size of an SHT_NOBITS section; ignored for other types (their size is data.length). */
  size?: number;
  /** sh_link: another section of this object (becomes its index), or a raw value. */
  link?: OutSection | number;
  /** sh_info: another section of this object (becomes its index), or a raw value. */
  info?: OutSection | number;
}

/**
 * Where a symbol is defined: a section of this object, undefined, absolute, common
 * (value = alignment), or a raw reserved index such as SHN_LIVEPATCH (0xff20).
 */
export type SymbolPlace = OutSection | 'undef' | 'abs' | 'common' | number;

export interface OutSymbol {
  /** Empty for section symbols (tools show the section's name). */
  name: string;
  type: number;
  bind: number;
  visibility?: number;
  /** Default 'undef'. */
  section?: SymbolPlace;
  /** Offset in the section (relocatable object), or the absolute value. */
  value: bigint;
  size: number;
}

export interface OutRela {
  offset: bigint;
  type: number;
  /** Omitted only for relocations that use no symbol (index 0), e.g. R_X86_64_NONE. */
  symbol?: OutSymbol;
  addend: bigint;
}

export interface RelocationOptions {
  /** Default ".rela" + target name; livepatch uses ".klp.rela.<obj>.<section>". */
  name?: string;
  /** Extra section flags (SHF_INFO_LINK is always set), e.g. SHF_ALLOC | SHF_RELA_LIVEPATCH. */
  flags?: bigint;
}

export interface ObjectBuilderOptions {
  /** e_machine; default EM_X86_64. Relocation field checks use the x86-64 table. */
  machine?: number;
  /** When given, an STT_FILE symbol with this name comes first among the locals (as gcc emits). */
  fileName?: string;
}

interface RelaTable {
  section: OutSection;
  target: OutSection;
  relas: OutRela[];
}

const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
const RELA_SIZE = 24;

function misuse(message: string, details: Record<string, unknown> = {}): TspliceError {
  return new TspliceError('internal', `object builder: ${message}`, details);
}

function alignUp(n: number, align: number): number {
  return align <= 1 ? n : Math.ceil(n / align) * align;
}

function isPowerOfTwoOrZero(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && (n & (n - 1)) === 0;
}

/** A string table: NUL first, each distinct string once, in first-use order (deterministic). */
class StringTable {
  private readonly offsets = new Map<string, number>();
  private readonly parts: Buffer[] = [Buffer.alloc(1)];
  private length = 1;

  add(s: string): number {
    if (s === '') return 0;
    const known = this.offsets.get(s);
    if (known !== undefined) return known;
    if (s.includes('\0')) throw misuse(`name ${JSON.stringify(s)} contains a NUL byte`);
    const bytes = Buffer.from(s + '\0', 'latin1');
    const offset = this.length;
    this.offsets.set(s, offset);
    this.parts.push(bytes);
    this.length += bytes.length;
    return offset;
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}

/** Collects sections, symbols and relocations, then writes one ET_REL object. */
export class ObjectBuilder {
  private readonly machine: number;
  private readonly fileName?: string;
  /** Content and relocation sections, in output order (indices 1..n). */
  private readonly sections: OutSection[] = [];
  private readonly sectionSet = new Set<OutSection>();
  private readonly symbols: OutSymbol[] = [];
  private readonly symbolSet = new Set<OutSymbol>();
  /** First non-local symbol added under each name (lookups stay fast for big objects). */
  private readonly globalsByName = new Map<string, OutSymbol>();
  private readonly sectionSymbols = new Map<OutSection, OutSymbol>();
  private readonly relaTables = new Map<OutSection, RelaTable>();
  private readonly relaTablesByName = new Map<string, RelaTable>();

  constructor(options: ObjectBuilderOptions = {}) {
    this.machine = options.machine ?? EM_X86_64;
    this.fileName = options.fileName;
  }

  /** Add a section; the returned object (the one given) identifies it in symbols and relocations. */
  addSection(section: OutSection): OutSection {
    if (this.sectionSet.has(section)) throw misuse(`section ${section.name} was added twice`);
    if (!isPowerOfTwoOrZero(section.addralign)) {
      throw misuse(`section ${section.name}: alignment ${section.addralign} is not a power of two`);
    }
    if ([SHT_NULL, SHT_SYMTAB, SHT_STRTAB, SHT_SYMTAB_SHNDX].includes(section.type)) {
      throw misuse(`section ${section.name}: type ${section.type} is generated by the builder, not added`);
    }
    if (section.type === SHT_RELA && !this.relaTables.has(section)) {
      throw misuse(`section ${section.name}: add relocation sections with addRelocations()`);
    }
    if (section.type === SHT_NOBITS) {
      if (section.data && section.data.length > 0) throw misuse(`section ${section.name}: SHT_NOBITS with data`);
      if (!Number.isSafeInteger(section.size ?? 0) || (section.size ?? 0) < 0) {
        throw misuse(`section ${section.name}: bad size ${section.size}`);
      }
    }
    this.sections.push(section);
    this.sectionSet.add(section);
    return section;
  }

  /** Add a symbol; the returned object (the one given) is what relocations refer to. */
  addSymbol(symbol: OutSymbol): OutSymbol {
    if (this.symbolSet.has(symbol)) throw misuse(`symbol ${symbol.name} was added twice`);
    if (symbol.type === STT_SECTION) throw misuse('section symbols come from sectionSymbol()');
    if (symbol.bind < 0 || symbol.bind > 15 || symbol.type < 0 || symbol.type > 15) {
      throw misuse(`symbol ${symbol.name}: bad bind ${symbol.bind} or type ${symbol.type}`);
    }
    this.checkPlace(symbol);
    this.symbols.push(symbol);
    this.symbolSet.add(symbol);
    if (symbol.bind !== STB_LOCAL && !this.globalsByName.has(symbol.name)) this.globalsByName.set(symbol.name, symbol);
    return symbol;
  }

  /** The symbol was added, or is a section symbol of this object. */
  hasSymbol(symbol: OutSymbol): boolean {
    if (this.symbolSet.has(symbol)) return true;
    const place = symbol.section;
    return symbol.type === STT_SECTION && typeof place === 'object' && this.sectionSymbols.get(place) === symbol;
  }

  /** The first non-local symbol added with this name, if any. */
  findGlobal(name: string): OutSymbol | undefined {
    return this.globalsByName.get(name);
  }

  /** The STT_SECTION symbol of a section (made on first use, as modern assemblers only emit used ones). */
  sectionSymbol(section: OutSection): OutSymbol {
    if (!this.sectionSet.has(section)) throw misuse(`section ${section.name} is not part of this object`);
    let sym = this.sectionSymbols.get(section);
    if (!sym) {
      sym = { name: '', type: STT_SECTION, bind: STB_LOCAL, section, value: 0n, size: 0 };
      this.sectionSymbols.set(section, sym);
    }
    return sym;
  }

  /**
   * Add relocations that apply to target. Relocations for the same section name are
   * appended to one table. Returns the SHT_RELA section.
   */
  addRelocations(target: OutSection, relas: OutRela[], options: RelocationOptions = {}): OutSection {
    if (!this.sectionSet.has(target)) throw misuse(`relocation target ${target.name} is not part of this object`);
    const name = options.name ?? `.rela${target.name}`;
    const flags = (options.flags ?? 0n) | SHF_INFO_LINK;
    let table = this.relaTablesByName.get(name);
    if (table) {
      if (table.target !== target) {
        throw misuse(`relocation section ${name} already applies to ${table.target.name}, not ${target.name}`);
      }
      if (table.section.flags !== flags) throw misuse(`relocation section ${name} added with different flags`);
    } else {
      const section: OutSection = { name, type: SHT_RELA, flags, addralign: 8, entsize: RELA_SIZE, info: target };
      table = { section, target, relas: [] };
      this.relaTables.set(section, table);
      this.relaTablesByName.set(name, table);
      this.addSection(section);
    }
    table.relas.push(...relas);
    return table.section;
  }

  /** Lay out and encode the object. */
  write(): Buffer {
    const sectionIndex = new Map<OutSection, number>();
    this.sections.forEach((s, i) => sectionIndex.set(s, i + 1));

    const symbols = this.orderedSymbols();
    const firstGlobal = symbols.findIndex((s) => s !== null && s.bind !== STB_LOCAL);
    const symbolIndex = new Map<OutSymbol, number>();
    symbols.forEach((s, i) => { if (s) symbolIndex.set(s, i); });
    this.checkSymbols(symbols, sectionIndex);

    const shndxOf = (sym: OutSymbol): number => {
      const place = sym.section ?? 'undef';
      if (place === 'undef') return SHN_UNDEF;
      if (place === 'abs') return SHN_ABS;
      if (place === 'common') return SHN_COMMON;
      if (typeof place === 'number') return place;
      return sectionIndex.get(place) as number;
    };
    const needXindex = symbols.some((s) => s !== null && shndxOf(s) >= SHN_LORESERVE &&
      typeof (s.section ?? 'undef') === 'object');

    const symtabIndex = this.sections.length + 1;
    const strtabIndex = symtabIndex + (needXindex ? 2 : 1);
    const shstrtabIndex = strtabIndex + 1;
    const sectionCount = shstrtabIndex + 1;

    // Symbol table (and extended section indices when a section index does not fit 16 bits).
    const strtab = new StringTable();
    const symtab = Buffer.alloc(symbols.length * SYM_SIZE);
    const xindex = Buffer.alloc(needXindex ? symbols.length * 4 : 0);
    symbols.forEach((sym, i) => {
      if (!sym) return;
      const o = i * SYM_SIZE;
      let shndx = shndxOf(sym);
      if (typeof (sym.section ?? 'undef') === 'object' && shndx >= SHN_LORESERVE) {
        xindex.writeUInt32LE(shndx, i * 4);
        shndx = SHN_XINDEX;
      }
      symtab.writeUInt32LE(strtab.add(sym.name), o);
      symtab[o + 4] = (sym.bind << 4) | sym.type;
      symtab[o + 5] = (sym.visibility ?? 0) & 3;
      symtab.writeUInt16LE(shndx, o + 6);
      symtab.writeBigUInt64LE(BigInt.asUintN(64, sym.value), o + 8);
      symtab.writeBigUInt64LE(BigInt(sym.size), o + 16);
    });

    const relaData = new Map<OutSection, Buffer>();
    for (const table of this.relaTables.values()) {
      relaData.set(table.section, this.encodeRelas(table, symbolIndex));
    }

    interface Header {
      name: string; type: number; flags: bigint; link: number; info: number; addralign: number; entsize: number;
      data: Buffer; size: number;
    }
    const resolveRef = (ref: OutSection | number | undefined, owner: OutSection, what: string): number => {
      if (ref === undefined) return 0;
      if (typeof ref === 'number') return ref;
      const idx = sectionIndex.get(ref);
      if (idx === undefined) throw misuse(`section ${owner.name}: ${what} refers to ${ref.name}, not part of this object`);
      return idx;
    };
    const headers: Header[] = [];
    for (const s of this.sections) {
      const rela = relaData.get(s);
      const data = rela ?? (s.type === SHT_NOBITS ? Buffer.alloc(0) : (s.data ?? Buffer.alloc(0)));
      headers.push({
        name: s.name, type: s.type, flags: s.flags,
        link: rela ? symtabIndex : resolveRef(s.link, s, 'sh_link'),
        info: resolveRef(s.info, s, 'sh_info'),
        addralign: s.addralign, entsize: s.entsize ?? 0,
        data, size: s.type === SHT_NOBITS ? (s.size ?? 0) : data.length,
      });
    }
    headers.push({ name: '.symtab', type: SHT_SYMTAB, flags: 0n, link: strtabIndex, info: firstGlobal < 0 ? symbols.length : firstGlobal,
      addralign: 8, entsize: SYM_SIZE, data: symtab, size: symtab.length });
    if (needXindex) {
      headers.push({ name: '.symtab_shndx', type: SHT_SYMTAB_SHNDX, flags: 0n, link: symtabIndex, info: 0,
        addralign: 4, entsize: 4, data: xindex, size: xindex.length });
    }
    const strtabData = strtab.bytes();
    headers.push({ name: '.strtab', type: SHT_STRTAB, flags: 0n, link: 0, info: 0, addralign: 1, entsize: 0,
      data: strtabData, size: strtabData.length });
    const shstrtab = new StringTable();
    const nameOffsets = headers.map((h) => shstrtab.add(h.name));
    const shstrtabName = shstrtab.add('.shstrtab');
    const shstrtabData = shstrtab.bytes();
    headers.push({ name: '.shstrtab', type: SHT_STRTAB, flags: 0n, link: 0, info: 0, addralign: 1, entsize: 0,
      data: shstrtabData, size: shstrtabData.length });
    nameOffsets.push(shstrtabName);
    if (headers.length + 1 !== sectionCount) throw misuse('section count mismatch (bug)');

    // Layout: header, section contents in order (each at its alignment), section header table.
    const offsets: number[] = [];
    let pos = EHDR_SIZE;
    for (const h of headers) {
      pos = alignUp(pos, h.addralign);
      offsets.push(pos);
      if (h.type !== SHT_NOBITS) pos += h.data.length;
    }
    const shoff = alignUp(pos, 8);
    const out = Buffer.alloc(shoff + sectionCount * SHDR_SIZE);

    out.writeUInt32LE(0x464c457f, 0);
    out[4] = ELFCLASS64;
    out[5] = ELFDATA2LSB;
    out[6] = EV_CURRENT;
    out[7] = ELFOSABI_NONE;
    out.writeUInt16LE(ET_REL, 16);
    out.writeUInt16LE(this.machine, 18);
    out.writeUInt32LE(EV_CURRENT, 20);
    out.writeBigUInt64LE(BigInt(shoff), 40);
    out.writeUInt16LE(EHDR_SIZE, 52);
    out.writeUInt16LE(SHDR_SIZE, 58);
    // Counts and indices that do not fit 16 bits move into section header 0.
    out.writeUInt16LE(sectionCount >= SHN_LORESERVE ? 0 : sectionCount, 60);
    out.writeUInt16LE(shstrtabIndex >= SHN_LORESERVE ? SHN_XINDEX : shstrtabIndex, 62);
    if (sectionCount >= SHN_LORESERVE) out.writeBigUInt64LE(BigInt(sectionCount), shoff + 32);
    if (shstrtabIndex >= SHN_LORESERVE) out.writeUInt32LE(shstrtabIndex, shoff + 40);

    headers.forEach((h, i) => {
      if (h.type !== SHT_NOBITS) h.data.copy(out, offsets[i]);
      const o = shoff + (i + 1) * SHDR_SIZE;
      out.writeUInt32LE(nameOffsets[i], o);
      out.writeUInt32LE(h.type, o + 4);
      out.writeBigUInt64LE(h.flags, o + 8);
      out.writeBigUInt64LE(BigInt(offsets[i]), o + 24);
      out.writeBigUInt64LE(BigInt(h.size), o + 32);
      out.writeUInt32LE(h.link, o + 40);
      out.writeUInt32LE(h.info, o + 44);
      out.writeBigUInt64LE(BigInt(h.addralign), o + 48);
      out.writeBigUInt64LE(BigInt(h.entsize), o + 56);
    });
    return out;
  }

  /** null, STT_FILE, section symbols (section order), other locals, then non-locals (order added). */
  private orderedSymbols(): Array<OutSymbol | null> {
    const ordered: Array<OutSymbol | null> = [null];
    if (this.fileName !== undefined) {
      ordered.push({ name: this.fileName, type: STT_FILE, bind: STB_LOCAL, section: 'abs', value: 0n, size: 0 });
    }
    for (const s of this.symbols) if (s.bind === STB_LOCAL && s.type === STT_FILE) ordered.push(s);
    for (const s of this.sections) {
      const sym = this.sectionSymbols.get(s);
      if (sym) ordered.push(sym);
    }
    for (const s of this.symbols) if (s.bind === STB_LOCAL && s.type !== STT_FILE) ordered.push(s);
    for (const s of this.symbols) if (s.bind !== STB_LOCAL) ordered.push(s);
    return ordered;
  }

  private checkPlace(symbol: OutSymbol): void {
    const place = symbol.section ?? 'undef';
    if (typeof place === 'object' && !this.sectionSet.has(place)) {
      throw misuse(`symbol ${symbol.name}: its section ${place.name} is not part of this object`);
    }
    if (typeof place === 'number' && place !== SHN_UNDEF &&
        (!Number.isInteger(place) || place < SHN_LORESERVE || place > 0xffff || place === SHN_XINDEX)) {
      throw misuse(`symbol ${symbol.name}: raw section index ${place} must be a reserved one (0xff00..0xfffe); ` +
        'give the OutSection for ordinary sections');
    }
  }

  private checkSymbols(symbols: Array<OutSymbol | null>, sectionIndex: Map<OutSection, number>): void {
    const defined = new Set<string>();
    for (const sym of symbols) {
      if (!sym) continue;
      this.checkPlace(sym);
      const place = sym.section ?? 'undef';
      if (sym.bind === STB_LOCAL && place === 'undef' && sym.type !== STT_FILE) {
        throw misuse(`symbol ${sym.name} is local and undefined; nothing could ever resolve it`);
      }
      if (!Number.isSafeInteger(sym.size) || sym.size < 0) throw misuse(`symbol ${sym.name}: bad size ${sym.size}`);
      if (typeof place === 'object') {
        const size = place.type === SHT_NOBITS ? (place.size ?? 0) : (place.data?.length ?? 0);
        if (sym.value < 0n || sym.value + BigInt(sym.size) > BigInt(size)) {
          throw misuse(`symbol ${sym.name || place.name} (offset ${sym.value}, size ${sym.size}) lies outside ` +
            `section ${place.name} (${size} bytes)`, { index: sectionIndex.get(place) });
        }
      }
      if (sym.bind !== STB_LOCAL && place !== 'undef') {
        if (defined.has(sym.name)) throw misuse(`global symbol ${sym.name} is defined twice`);
        defined.add(sym.name);
      }
    }
  }

  private encodeRelas(table: RelaTable, symbolIndex: Map<OutSymbol, number>): Buffer {
    const { target } = table;
    const targetSize = target.type === SHT_NOBITS ? 0 : (target.data?.length ?? 0);
    const buf = Buffer.alloc(table.relas.length * RELA_SIZE);
    table.relas.forEach((r, i) => {
      let symIdx = 0;
      if (r.symbol) {
        const idx = symbolIndex.get(r.symbol);
        if (idx === undefined) {
          throw misuse(`${table.section.name}: relocation at 0x${r.offset.toString(16)} uses symbol ` +
            `${r.symbol.name || '(section)'}, which was not added to this object`);
        }
        symIdx = idx;
      }
      const field = this.machine === EM_X86_64 ? relocationFieldSize(r.type) : 0;
      if (r.offset < 0n || r.offset + BigInt(field) > BigInt(targetSize)) {
        throw misuse(`${table.section.name}: relocation at 0x${r.offset.toString(16)} (type ${r.type}) lies ` +
          `outside ${target.name} (${targetSize} bytes)`);
      }
      if (!Number.isInteger(r.type) || r.type < 0 || r.type > 0xffffffff) throw misuse(`bad relocation type ${r.type}`);
      const o = i * RELA_SIZE;
      buf.writeBigUInt64LE(r.offset, o);
      buf.writeBigUInt64LE((BigInt(symIdx) << 32n) | BigInt(r.type), o + 8);
      buf.writeBigInt64LE(r.addend, o + 16);
    });
    return buf;
  }
}
