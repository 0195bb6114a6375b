// Which pre symbol a relocation refers to, as a key of the result, and the
// content check for mergeable data: a string literal the running code points
// at must hold the same bytes as the pre object's literal.

import { SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, SHT_PROGBITS } from '../elf/constants.js';
import type { ElfSection } from '../elf/reader.js';
import type { CodeReader } from './memory.js';
import { isUnmappedError } from './memory.js';
import {
  isMergeable, isSectionSymbol, isStringSection, referencedOffset, targetSection, type PreFunction, type PreRelocation,
} from './pre.js';
import type { SymbolRef } from './resolution.js';

/**
 * The resolution key of a relocation's target. `instructionEnd` is the pre
 * offset just after the instruction holding the field (for PC-relative
 * addends).
 */
export function symbolRef(pre: PreFunction, r: PreRelocation, instructionEnd: number): SymbolRef {
  const section = targetSection(pre, r);
  if (!section) return { key: r.symbolName };
  if (isMergeable(section)) {
    if (!isSectionSymbol(r.symbol)) return { key: r.symbolName };
    return { key: `${section.name}+0x${referencedOffset(r, instructionEnd).toString(16)}` };
  }
  return { key: r.symbolName, section: { name: section.name, offset: r.symbol.value } };
}

/**
 * For a reference into a mergeable section with the symbol at run-time
 * address `S`: the address the key of `symbolRef` stands for (the element
 * itself for section symbols, the symbol otherwise).
 */
export function keyAddress(pre: PreFunction, r: PreRelocation, instructionEnd: number, S: bigint): bigint {
  const section = targetSection(pre, r);
  if (!section || !isMergeable(section) || !isSectionSymbol(r.symbol)) return S;
  return S + referencedOffset(r, instructionEnd);
}

/**
 * Compare referenced constant data with the running memory at its resolved
 * address: an element of a mergeable section, or the first bytes at the
 * referenced offset of a read-only section without relocations. Returns a
 * mismatch description or undefined.
 */
export function checkReferencedData(
  pre: PreFunction, r: PreRelocation, instructionEnd: number, S: bigint, reader: CodeReader,
): string | undefined {
  const section = targetSection(pre, r);
  if (!section || section.data.length === 0) return undefined;
  const plainData = !isMergeable(section) && isConstantData(pre, section);
  if (!isMergeable(section) && !plainData) return undefined;
  const offset = referencedOffset(r, instructionEnd);
  if (offset < 0n || offset >= BigInt(section.data.length)) return undefined;
  const start = Number(offset);
  const address = S - r.symbol.value + offset;
  let end: number;
  if (isStringSection(section)) {
    const nul = section.data.indexOf(0, start);
    end = nul < 0 ? section.data.length : nul + 1;
  } else if (plainData) {
    // Read-only data without relocations (e.g. -O0 string literals in .rodata): the bytes from the referenced one on.
    // Stop at a NUL: what follows a string literal may be laid out differently in the normal build.
    end = Math.min(section.data.length, start + CONSTANT_WINDOW);
    const nul = section.data.subarray(start, end).indexOf(0);
    if (nul >= 0) end = start + nul + 1;
  } else {
    end = Math.min(section.data.length, start + Math.max(1, section.entsize));
  }
  const expected = section.data.subarray(start, end);
  let actual: Buffer;
  try {
    actual = reader.read(address, expected.length);
  } catch (e) {
    if (!isUnmappedError(e)) throw e;
    return `${r.symbolName} resolves to 0x${address.toString(16)}, which is not mapped`;
  }
  if (actual.equals(expected)) return undefined;
  const show = (b: Buffer) =>
    isStringSection(section) ? JSON.stringify(b.toString('latin1').replace(/\0$/, '')) : b.toString('hex');
  return `${section.name} element at +0x${start.toString(16)} is ${show(expected)} in the pre object but ${show(actual)} at 0x${address.toString(16)}`;
}

/** Bytes compared after a reference into plain read-only data. */
const CONSTANT_WINDOW = 16;

function isConstantData(pre: PreFunction, section: ElfSection): boolean {
  return (
    section.type === SHT_PROGBITS && (section.flags & SHF_ALLOC) !== 0n &&
    (section.flags & (SHF_WRITE | SHF_EXECINSTR)) === 0n && (pre.elf.relocations.get(section.index) ?? []).length === 0
  );
}
