// Where in the running image a pre function might be. Each place is only a
// candidate: run-pre matching decides.
//   1. .symtab: functions with the same name up to compiler clone numbers
//      (`foo`, `foo.constprop.1`); local ones may exist in several files.
//   2. .dynsym, when .symtab has none.
//   3. A stripped image: a byte-pattern scan of the executable sections, with
//      relocated instructions and padding wildcarded.

import { PF_X, PT_LOAD, SHF_EXECINSTR, SHN_LORESERVE, SHN_UNDEF, STB_LOCAL, STT_FILE, STT_FUNC, STT_GNU_IFUNC } from '../elf/constants.js';
import type { ElfSymbol } from '../elf/reader.js';
import { decodeAll } from '../x86/decode.js';
import { isPadding } from '../x86/nop.js';
import type { RunningImage } from './image.js';
import { isUnmappedError, type CodeReader } from './memory.js';
import { cloneInsensitiveName, preRelocations, type PreFunction } from './pre.js';

export interface Candidate {
  address: bigint;
  /** Size of the running function, when a symbol gives it. */
  size?: number;
  /** update: the copy of the function an applied update placed in the process. */
  source: 'symtab' | 'dynsym' | 'scan' | 'update';
  /** Name of the running symbol, when found by symbol. */
  symbol?: string;
  /** Source file a local symbol belongs to (the STT_FILE symbol before it). */
  file?: string;
}

/** Shortest byte run worth scanning for: shorter ones hit everywhere. */
const MIN_ANCHOR = 6;
/** Bound on scan hits, so a degenerate pattern cannot make matching quadratic. */
const MAX_SCAN_HITS = 512;

export function findCandidates(pre: PreFunction, image: RunningImage, reader?: CodeReader): Candidate[] {
  const fromSymtab = bySymbol(pre, image, image.elf.symbols, 'symtab');
  if (fromSymtab.length > 0) return fromSymtab;
  const fromDynsym = bySymbol(pre, image, image.elf.dynamicSymbols, 'dynsym');
  if (fromDynsym.length > 0) return fromDynsym;
  if (image.elf.symbols.length > 1) return []; // not stripped: the function is simply not there
  return byPattern(pre, image, reader);
}

function bySymbol(pre: PreFunction, image: RunningImage, symbols: ElfSymbol[], source: 'symtab' | 'dynsym'): Candidate[] {
  const wanted = cloneInsensitiveName(pre.name);
  const seen = new Set<bigint>();
  const out: Candidate[] = [];
  let file: string | undefined;
  for (const sym of symbols) {
    if (sym.type === STT_FILE) file = sym.name;
    if (sym.bind !== STB_LOCAL) file = undefined;
    if (sym.type !== STT_FUNC && sym.type !== STT_GNU_IFUNC) continue;
    if (sym.shndx === SHN_UNDEF || sym.shndx >= SHN_LORESERVE || cloneInsensitiveName(sym.name) !== wanted) continue;
    const address = sym.value + image.bias;
    if (seen.has(address)) continue;
    seen.add(address);
    const candidate: Candidate = { address, source, symbol: sym.name };
    if (sym.size > 0) candidate.size = sym.size;
    if (file !== undefined) candidate.file = file;
    out.push(candidate);
  }
  // Exact names first: `foo` before `foo.constprop.0`.
  return out.sort((a, b) => Number(b.symbol === pre.name) - Number(a.symbol === pre.name));
}

interface Anchor {
  /** Offset in the pre function. */
  offset: number;
  bytes: Buffer;
}

/** Runs of pre bytes that must appear unchanged in the running code. */
function anchors(pre: PreFunction): Anchor[] {
  const relocations = preRelocations(pre);
  const runs: Anchor[] = [];
  let runStart = -1;
  const code = decodeAll(pre.section.data, 0n);
  const close = (end: number) => {
    // A tiny function is its own anchor when nothing in it is relocated.
    const whole = runStart === 0 && end === pre.section.size;
    if (runStart >= 0 && (end - runStart >= MIN_ANCHOR || whole)) {
      runs.push({ offset: runStart, bytes: pre.section.data.subarray(runStart, end) });
    }
    runStart = -1;
  };
  for (const insn of code) {
    const start = Number(insn.ip);
    const end = start + insn.length;
    // Relocated instructions may be rewritten by the linker (or shortened), padding may differ.
    const unstable = insn.invalid || isPadding(insn) || relocations.some((r) => r.offset >= start && r.offset < end);
    if (unstable) close(start);
    else if (runStart < 0) runStart = start;
  }
  close(pre.section.size);
  const longest = runs.reduce<Anchor | undefined>((best, a) => (!best || a.bytes.length > best.bytes.length ? a : best), undefined);
  const prefix = runs.find((a) => a.offset === 0);
  return [...new Set([longest, prefix].filter((a): a is Anchor => a !== undefined))];
}

interface CodeRegion {
  address: bigint;
  bytes: Buffer;
}

function codeRegions(image: RunningImage, reader?: CodeReader): CodeRegion[] {
  const sections = image.elf.sections.filter(
    (s) => (s.flags & SHF_EXECINSTR) !== 0n && s.data.length > 0 && !/^\.i?plt/.test(s.name),
  );
  if (sections.length > 0) return sections.map((s) => ({ address: s.addr + image.bias, bytes: s.data }));
  if (!reader) return [];
  const regions: CodeRegion[] = [];
  for (const seg of image.elf.segments) {
    if (seg.type !== PT_LOAD || (seg.flags & PF_X) === 0) continue;
    try {
      regions.push({ address: seg.vaddr + image.bias, bytes: reader.read(seg.vaddr + image.bias, seg.filesz) });
    } catch (e) {
      if (!isUnmappedError(e)) throw e;
    }
  }
  return regions;
}

function byPattern(pre: PreFunction, image: RunningImage, reader?: CodeReader): Candidate[] {
  const found = new Set<bigint>();
  const regions = codeRegions(image, reader);
  const alignment = BigInt(Math.max(1, pre.section.addralign));
  for (const anchor of anchors(pre)) {
    for (const region of regions) {
      for (let at = region.bytes.indexOf(anchor.bytes); at >= 0; at = region.bytes.indexOf(anchor.bytes, at + 1)) {
        const start = region.address + BigInt(at - anchor.offset);
        // The normal build aligns the function as the pre object's section asks.
        if (at < anchor.offset || start % alignment !== 0n) continue;
        found.add(start);
        if (found.size >= MAX_SCAN_HITS) break;
      }
    }
  }
  return [...found].map((address) => ({ address, source: 'scan' as const }));
}
