// The "pre" side of matching: a function section of the object built from
// the unpatched source with -ffunction-sections, and its relocations.

import { SHF_EXECINSTR, SHF_MERGE, SHF_STRINGS, STB_LOCAL, STT_FILE, STT_FUNC, STT_SECTION } from '../elf/constants.js';
import { relocationsFor, symbolDisplayName, symbolSection, type ElfFile, type ElfRela, type ElfSection, type ElfSymbol } from '../elf/reader.js';
import { R_X86_64_NONE, isPcRelative, relocationFieldSize, relocationName } from '../elf/x86_64.js';
import { TspliceError } from '../errors.js';

export interface PreFunction {
  /** The translation unit (object file) it comes from, for messages. */
  unit: string;
  /** Function name (the symbol at the start of the section), e.g. `helper` or `foo.constprop.0`. */
  name: string;
  section: ElfSection;
  elf: ElfFile;
}

export interface PreRelocation {
  rela: ElfRela;
  /** Offset of the relocated field in the function's section. */
  offset: number;
  type: number;
  addend: bigint;
  /** Bytes the relocation writes. */
  size: number;
  symbol: ElfSymbol;
  /** The symbol's name, or its section's name for section symbols. */
  symbolName: string;
}

/** The relocations of a pre function, by field offset; marker relocations (R_X86_64_NONE) left out. */
export function preRelocations(pre: PreFunction): PreRelocation[] {
  return relocationsFor(pre.elf, pre.section)
    .filter((r) => r.type !== R_X86_64_NONE)
    .map((rela) => {
      const symbol = pre.elf.symbols[rela.symbolIndex];
      if (!symbol) {
        throw new TspliceError('bad_input', `${pre.unit}: relocation in ${pre.section.name} names missing symbol ${rela.symbolIndex}`);
      }
      return {
        rela,
        offset: Number(rela.offset),
        type: rela.type,
        addend: rela.addend,
        size: relocationFieldSize(rela.type),
        symbol,
        symbolName: symbolDisplayName(pre.elf, symbol),
      };
    })
    .sort((a, b) => a.offset - b.offset);
}

/** `counter-0x4`, `printf+0x0` — how objdump shows a relocation target. */
export function describeRelocation(r: PreRelocation): string {
  const a = r.addend;
  const sign = a < 0n ? `-0x${(-a).toString(16)}` : a > 0n ? `+0x${a.toString(16)}` : '';
  return `${relocationName(r.type)} ${r.symbolName}${sign}`;
}

/** Every function of a pre object (one per executable section), named after the function symbol at offset 0. */
export function preFunctions(elf: ElfFile, unit = elf.name): PreFunction[] {
  const out: PreFunction[] = [];
  for (const section of elf.sections) {
    if ((section.flags & SHF_EXECINSTR) === 0n || section.size === 0) continue;
    const sym = elf.symbols.find((s) => s.type === STT_FUNC && s.shndx === section.index && s.value === 0n);
    if (!sym) continue;
    out.push({ unit, name: sym.name, section, elf });
  }
  return out;
}

/** The pre function called `name`; throws bad_input when the object has none. */
export function preFunction(elf: ElfFile, name: string, unit = elf.name): PreFunction {
  const found = preFunctions(elf, unit).find((f) => f.name === name);
  if (!found) {
    throw new TspliceError(
      'bad_input',
      `${unit} has no function section for ${name} (was it built with -ffunction-sections?)`,
      { unit, function: name },
    );
  }
  return found;
}

/** The source file name the object was compiled from (its STT_FILE symbol), if recorded. */
export function sourceFileName(elf: ElfFile): string | undefined {
  return elf.symbols.find((s) => s.type === STT_FILE)?.name;
}

/** Compiler clone suffixes without their numbers: `foo.constprop.3` and `foo.constprop.0` are the same function. */
export function cloneInsensitiveName(name: string): string {
  return name.replace(/\.\d+/g, '');
}

export function isSectionSymbol(sym: ElfSymbol): boolean {
  return sym.type === STT_SECTION;
}

export function isLocal(sym: ElfSymbol): boolean {
  return sym.bind === STB_LOCAL;
}

/** The pre section a relocation's symbol lies in, when the unit defines it. */
export function targetSection(pre: PreFunction, r: PreRelocation): ElfSection | undefined {
  return symbolSection(pre.elf, r.symbol);
}

export function isMergeable(section: ElfSection): boolean {
  return (section.flags & SHF_MERGE) !== 0n;
}

export function isStringSection(section: ElfSection): boolean {
  return (section.flags & SHF_STRINGS) !== 0n;
}

/**
 * Offset in the target symbol's section of the byte the instruction actually
 * refers to: symbol value + addend, plus, for PC-relative fields, the distance
 * from the field to the end of the instruction that the addend compensates.
 */
export function referencedOffset(r: PreRelocation, instructionEnd: number): bigint {
  const pcBias = isPcRelative(r.type) ? BigInt(instructionEnd - r.offset) : 0n;
  return r.symbol.value + r.addend + pcBias;
}
