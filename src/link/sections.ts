// What each section of the post object is to the linker, and which symbol
// stands for a section when the running program has to be asked about it.

import {
  SHF_ALLOC, SHF_EXECINSTR, SHF_TLS, SHF_WRITE, STB_GLOBAL, STB_LOCAL, STB_WEAK, STT_FILE, STT_FUNC,
  STT_GNU_IFUNC, STT_OBJECT, STT_SECTION, STT_TLS,
} from '../elf/constants.js';
import { symbolSection, type ElfFile, type ElfSection, type ElfSymbol } from '../elf/reader.js';
import type { SymbolBinding, SymbolKind } from './resolution.js';

/**
 * - code: executable; placed when installed, else the running copy is used;
 * - const: read-only data (and .data.rel.ro*, read-only once relocated): copied into the block;
 * - data: writable: the running variable is used, unless the section is new;
 * - tls: thread-local: always the running one (new TLS cannot be added to live threads);
 * - other: not loaded at run time (debug info, notes): code must not refer to it.
 */
export type SectionClass = 'code' | 'const' | 'data' | 'tls' | 'other';

export function classifySection(section: ElfSection): SectionClass {
  if ((section.flags & SHF_ALLOC) === 0n) return 'other';
  if ((section.flags & SHF_TLS) !== 0n) return 'tls';
  if ((section.flags & SHF_EXECINSTR) !== 0n) return 'code';
  if ((section.flags & SHF_WRITE) === 0n || /^\.data\.rel\.ro(\.|$)/.test(section.name)) return 'const';
  return 'data';
}

/** Named symbols of each section (section and file symbols left out), in symbol-table order. */
export function symbolsBySection(elf: ElfFile): Map<number, ElfSymbol[]> {
  const bySection = new Map<number, ElfSymbol[]>();
  for (const sym of elf.symbols) {
    if (sym.index === 0 || sym.type === STT_SECTION || sym.type === STT_FILE || sym.name === '') continue;
    const section = symbolSection(elf, sym);
    if (!section) continue;
    const list = bySection.get(section.index) ?? [];
    list.push(sym);
    bySection.set(section.index, list);
  }
  return bySection;
}

/**
 * The symbol that names a section for the resolver: with -ffunction-sections/-fdata-sections each
 * section holds one function or variable at offset 0. Local labels (.LC0, .L...) do not count.
 */
export function representativeSymbol(symbols: ElfSymbol[] | undefined): ElfSymbol | undefined {
  if (!symbols) return undefined;
  const named = symbols.filter((s) => !s.name.startsWith('.L'));
  const rank = (s: ElfSymbol): number =>
    (s.value === 0n ? 0 : 4) +
    (s.type === STT_FUNC || s.type === STT_OBJECT || s.type === STT_TLS || s.type === STT_GNU_IFUNC ? 0 : 2) +
    (s.bind === STB_LOCAL ? 1 : 0);
  return [...named].sort((a, b) => rank(a) - rank(b))[0];
}

/** A compiler-split cold part (foo.cold, foo.cold.3): a piece of its parent, jumped into, never called. */
export function isColdFragment(symbols: ElfSymbol[] | undefined): boolean {
  const functions = (symbols ?? []).filter((s) => s.type === STT_FUNC);
  return functions.length > 0 && functions.every((s) => /\.cold(\.\d+)?$/.test(s.name));
}

export function bindingOf(sym: ElfSymbol): SymbolBinding {
  if (sym.bind === STB_GLOBAL) return 'global';
  if (sym.bind === STB_WEAK) return 'weak';
  return sym.bind === STB_LOCAL ? 'local' : 'global';
}

export function kindOf(sym: ElfSymbol): SymbolKind {
  switch (sym.type) {
    case STT_FUNC: return 'function';
    case STT_OBJECT: return 'object';
    case STT_TLS: return 'tls';
    case STT_GNU_IFUNC: return 'ifunc';
    default: return 'notype';
  }
}
