// What a relocation's symbol stands for once the block's contents are known:
// a spot inside a section placed in the block, something the running program
// already has (asked of the resolver), or an absolute value. Section symbols of
// sections left in the running program are named by a symbol of that section,
// because the resolver only knows symbols.

import { SHN_ABS, STT_FUNC, STT_GNU_IFUNC, STT_SECTION } from '../elf/constants.js';
import { symbolSection, type ElfFile, type ElfSection, type ElfSymbol } from '../elf/reader.js';
import { TspliceError } from '../errors.js';
import type { SymbolRef } from './resolution.js';
import { bindingOf, kindOf, representativeSymbol } from './sections.js';

/** A symbol reference without the access, which each relocation adds. */
export type SymbolQuery = Omit<SymbolRef, 'access'>;

export interface PlacedTarget {
  kind: 'placed';
  /** Stable name of the target, used to share GOT slots and stubs between relocations. */
  key: string;
  /** Index of the placed section. */
  sectionIndex: number;
  /** Offset of the symbol inside its section. */
  offset: bigint;
  /** st_size of the symbol (R_X86_64_SIZE*). */
  size: number;
  name: string;
  /** An IFUNC resolver: calling it would not call the function it selects. */
  ifunc: boolean;
}

export interface ExternalTarget {
  kind: 'external';
  key: string;
  /** What the resolver is asked. */
  query: SymbolQuery;
  /** Added to the resolved value: a section symbol is asked as a symbol at `-delta` inside the section. */
  delta: bigint;
  size: number;
  /** The symbol is undefined in the object and weak: it may be absent (value 0), as in a static link. */
  weakUndefined: boolean;
  name: string;
}

export interface AbsoluteTarget {
  kind: 'absolute';
  key: string;
  value: bigint;
  size: number;
  name: string;
}

export type RelocationTarget = PlacedTarget | ExternalTarget | AbsoluteTarget;

/**
 * The target of symbol `sym`, given the sections placed in the block. `sectionSymbols` are the named
 * symbols of each section (from symbolsBySection).
 */
export function relocationTarget(
  elf: ElfFile,
  unit: string,
  sym: ElfSymbol,
  placed: ReadonlySet<number>,
  sectionSymbols: Map<number, ElfSymbol[]>,
): RelocationTarget {
  const section = symbolSection(elf, sym);
  if (section && placed.has(section.index)) {
    const offset = sym.type === STT_SECTION ? 0n : sym.value;
    return {
      kind: 'placed', key: `placed:${section.index}:${offset}`, sectionIndex: section.index, offset,
      size: sym.size, name: sym.type === STT_SECTION ? section.name : sym.name, ifunc: sym.type === STT_GNU_IFUNC,
    };
  }
  if (!section && sym.shndx === SHN_ABS) {
    return { kind: 'absolute', key: `abs:${sym.value}`, value: sym.value, size: sym.size, name: sym.name };
  }
  let named = sym;
  let delta = 0n;
  if (sym.type === STT_SECTION) {
    // Only a section symbol can get here with a section: ask about the symbol at the section's start.
    const rep = representativeSymbol(sectionSymbols.get(section?.index ?? -1));
    if (!rep || !section) {
      throw new TspliceError(
        'no_match',
        `${unit}: section ${section?.name ?? '?'} is referred to but holds no symbol that the running program ` +
          'could be asked about; rebuild the unit with -ffunction-sections -fdata-sections',
        { unit, section: section?.name },
      );
    }
    named = rep;
    delta = -rep.value;
  }
  const query: SymbolQuery = {
    name: named.name,
    binding: bindingOf(named),
    type: kindOf(named),
    unit,
    ...(section ? { section: section.name } : {}),
  };
  return {
    kind: 'external',
    key: `ext:${named.name}:${section?.name ?? ''}`,
    query,
    delta,
    size: named.size,
    weakUndefined: !section && query.binding === 'weak',
    name: sym.type === STT_SECTION ? (section?.name ?? named.name) : named.name,
  };
}

/** The function a relocation site belongs to, for messages: the function symbol covering the offset. */
export function siteName(section: ElfSection, symbols: ElfSymbol[] | undefined, offset: bigint): string {
  const covering = (symbols ?? []).find(
    (s) => s.type === STT_FUNC && s.value <= offset && offset < s.value + BigInt(Math.max(s.size, 1)),
  );
  return covering?.name ?? representativeSymbol(symbols)?.name ?? section.name;
}
