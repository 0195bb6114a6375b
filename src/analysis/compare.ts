// Whether one function (or variable) of the pre object and its counterpart
// in the post object are the same, and if not, where they first differ.
//
// Bytes are compared with relocation fields masked; the relocations are
// compared by what they designate. Functions and writable data are compared
// by identity (their paired name): calling the same function is the same code
// even if that function changed, since the old caller will reach its new
// version through the trampoline. Strings, constants and other read-only data
// are compared by content, recursively through read-only data that itself
// holds relocations (jump tables, pointer tables): a changed literal changes
// every function that uses it, while a literal that only moved inside
// `.rodata.str1.1` changes none.

import { SHT_NOBITS, STT_SECTION } from '../elf/constants.js';
import type { ElfSection } from '../elf/reader.js';
import { isCall, isUnconditionalJump } from '../x86/decode.js';
import { normalizeSymbolName } from './names.js';
import {
  entityAt, relocsIn, sectionRole, targetEntity, type Entity, type ObjectIndex, type ResolvedReloc,
} from './object.js';
import { pairedId, type Pairing } from './pairing.js';

/** One side (pre or post) of a comparison, with memoised read-only data fingerprints. */
export interface Side {
  index: ObjectIndex;
  side: 'pre' | 'post';
  pairing: Pairing;
  fingerprints: Map<string, string>;
}

export function makeSide(index: ObjectIndex, side: 'pre' | 'post', pairing: Pairing): Side {
  return { index, side, pairing, fingerprints: new Map() };
}

type TargetKind = 'none' | 'external' | 'entity' | 'section' | 'string' | 'constant' | 'rodata';

/** What a relocation designates: `key` is equal on both sides exactly when the targets are the same. */
export interface Target {
  kind: TargetKind;
  key: string;
  /** For messages: a symbol name, a quoted string, a section name. */
  display: string;
  /** The target reads as a C string literal (also in plain .rodata, where -O0 puts them). */
  literal?: string;
}

const MAX_DISPLAY = 40;

function quote(text: string): string {
  const shown = text.length > MAX_DISPLAY ? `${text.slice(0, MAX_DISPLAY)}...` : text;
  return JSON.stringify(shown);
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Where a relocation points, in terms comparable across the two objects. */
export function describeTarget(side: Side, r: ResolvedReloc): Target {
  const { symbol, targetSection } = r;
  const addend = r.rela.addend;
  if (symbol.index === 0) return { kind: 'none', key: `abs:${addend}`, display: `${addend}` };
  if (!targetSection) {
    return { kind: 'external', key: `ext:${symbol.name}${signed(addend)}`, display: symbol.name };
  }
  switch (sectionRole(targetSection)) {
    case 'strings': {
      const text = readString(targetSection, r.targetOffset);
      return { kind: 'string', key: `str:${JSON.stringify(text)}`, display: quote(text), literal: text };
    }
    case 'constants': {
      const size = targetSection.entsize;
      const entry = r.targetOffset - (r.targetOffset % size);
      const bytes = targetSection.data.subarray(Math.max(0, entry), Math.max(0, entry + size)).toString('hex');
      return { kind: 'constant', key: `const:${bytes}@${r.targetOffset - entry}`, display: `constant 0x${bytes}` };
    }
    case 'rodata': {
      const region = rodataRegion(side.index, targetSection, r.targetOffset);
      const print = regionFingerprint(side, targetSection, region);
      const key = `ro:${print}@${r.targetOffset - region.start}`;
      const literal = region.anonymous ? cString(targetSection, r.targetOffset, region.end) : undefined;
      return { kind: 'rodata', key, display: literal === undefined ? region.name : quote(literal), literal };
    }
    default: {
      const entity = targetEntity(side.index, r);
      const position = Number(symbol.value + addend);
      if (entity) {
        const id = pairedId(side.pairing, side.side, entity);
        return { kind: 'entity', key: `${id}${signed(BigInt(position - entity.start))}`, display: entity.name };
      }
      const name = symbol.type === STT_SECTION ? targetSection.name : symbol.name;
      return { kind: 'section', key: `sec:${normalizeSymbolName(name)}${signed(BigInt(position))}`, display: name };
    }
  }
}

function signed(n: bigint): string {
  return n < 0n ? `-${-n}` : `+${n}`;
}

/** The string starting at `offset` of a mergeable string section (characters of entsize bytes). */
function readString(section: ElfSection, offset: number): string {
  const width = Math.max(1, section.entsize);
  const d = section.data;
  if (offset < 0 || offset >= d.length) return `<outside ${section.name} at ${offset}>`;
  let end = offset;
  while (end + width <= d.length && !d.subarray(end, end + width).every((b) => b === 0)) end += width;
  return width === 1 ? d.toString('latin1', offset, end) : d.subarray(offset, end).toString('hex');
}

/** Printable text ending in a NUL inside [offset, end), or undefined. */
function cString(section: ElfSection, offset: number, end: number): string | undefined {
  if (section.type === SHT_NOBITS || offset < 0) return undefined;
  const d = section.data;
  for (let i = offset; i < Math.min(end, d.length); i++) {
    if (d[i] === 0) return d.toString('latin1', offset, i);
    if (d[i] < 0x20 && (d[i] < 0x09 || d[i] > 0x0d)) return undefined;
  }
  return undefined;
}

interface Region {
  start: number;
  end: number;
  name: string;
  /** No symbol gives its extent: it runs to the next place something points at. */
  anonymous: boolean;
}

/**
 * The read-only object holding `offset`: the variable whose symbol covers it,
 * or, where no symbol does (`.rodata` at -O0 holds every string literal;
 * jump tables have no symbol), the bytes up to the next offset that any
 * relocation of the object points at.
 */
function rodataRegion(index: ObjectIndex, section: ElfSection, offset: number): Region {
  const named = entityAt(index, section, offset);
  if (named) return { start: named.start, end: named.end, name: named.name, anonymous: false };
  const bounds = new Set<number>([0, section.size, ...(index.referencedOffsets.get(section.index) ?? [])]);
  for (const e of index.bySection.get(section.index) ?? []) {
    bounds.add(e.start);
    bounds.add(e.end);
  }
  let start = 0;
  let end = section.size;
  for (const b of bounds) {
    if (b <= offset && b > start) start = b;
    if (b > offset && b < end) end = b;
  }
  if (offset >= section.size) start = end = offset;
  return { start, end, name: section.name, anonymous: true };
}

/** Bytes of a section range (zeros for .bss-like sections). */
function rangeBytes(section: ElfSection, start: number, end: number): Buffer {
  if (section.type === SHT_NOBITS) return Buffer.alloc(Math.max(0, end - start));
  return section.data.subarray(start, end);
}

function maskedBytes(section: ElfSection, start: number, end: number, relocs: ResolvedReloc[]): Buffer {
  const bytes = Buffer.from(rangeBytes(section, start, end));
  for (const r of relocs) {
    const from = Math.max(0, r.offset - start);
    const to = Math.min(end, r.offset + r.size) - start;
    if (to > from) bytes.fill(0, from, to);
  }
  return bytes;
}

function regionFingerprint(side: Side, section: ElfSection, region: Region): string {
  const memoKey = `${section.index}:${region.start}:${region.end}`;
  const known = side.fingerprints.get(memoKey);
  if (known !== undefined) return known;
  // A table that points back at itself: compare the back edge by position only.
  side.fingerprints.set(memoKey, `cycle:${normalizeSymbolName(section.name)}:${region.start}`);
  const relocs = relocsIn(side.index, section, region.start, region.end);
  let bytes = maskedBytes(section, region.start, region.end, relocs);
  if (region.anonymous && region.end < section.size) bytes = trimPadding(bytes, section.addralign, relocs, region);
  const parts = [bytes.toString('hex')];
  for (const r of relocs) {
    parts.push(`${r.offset - region.start}:${r.rela.type}:${describeTarget(side, r).key}`);
  }
  const print = parts.join('|');
  side.fingerprints.set(memoKey, print);
  return print;
}

/**
 * Alignment padding before the next object is not part of an anonymous
 * region: a string followed by an 8-aligned constant in pre may be followed
 * by 7 bytes of padding in post. Strip up to `align` trailing zero bytes (the
 * padding plus a string's terminator, never into a relocated field) and keep
 * one terminator.
 */
function trimPadding(bytes: Buffer, align: number, relocs: ResolvedReloc[], region: Region): Buffer {
  const floor = Math.max(0, ...relocs.map((r) => r.offset + r.size - region.start));
  let end = bytes.length;
  while (end > floor && bytes.length - end < Math.max(1, align) && bytes[end - 1] === 0) end--;
  if (end < bytes.length) end++;
  return bytes.subarray(0, end);
}

/** A range of bytes to compare: a function, one of its cold parts, or a variable. */
interface Span {
  entity: Entity;
  relocs: ResolvedReloc[];
}

function span(side: Side, e: Entity): Span {
  return { entity: e, relocs: relocsIn(side.index, e.section, e.start, e.end) };
}

/** The first difference between two spans, as a short sentence, or undefined when they are the same. */
function compareSpans(pre: Side, a: Span, post: Side, b: Span, what: 'code' | 'data', label: string): string | undefined {
  const ea = a.entity;
  const eb = b.entity;
  const bytesA = maskedBytes(ea.section, ea.start, ea.end, [...a.relocs, ...shifted(b.relocs, eb.start - ea.start)]);
  const bytesB = maskedBytes(eb.section, eb.start, eb.end, [...b.relocs, ...shifted(a.relocs, ea.start - eb.start)]);
  let byteDiff = -1;
  const common = Math.min(bytesA.length, bytesB.length);
  for (let i = 0; i < common; i++) {
    if (bytesA[i] !== bytesB[i]) {
      byteDiff = i;
      break;
    }
  }
  if (byteDiff < 0 && bytesA.length !== bytesB.length) byteDiff = common;

  const relocDiff = firstRelocDifference(pre, a, post, b);
  const sizeNote = bytesA.length !== bytesB.length ? ` (size ${bytesA.length} → ${bytesB.length} bytes)` : '';
  if (relocDiff && (byteDiff < 0 || relocDiff.at <= byteDiff)) return `${relocDiff.text}${sizeNote}`;
  if (byteDiff < 0) return undefined;
  if (what === 'data') {
    return bytesA.length !== bytesB.length
      ? `size changed from ${bytesA.length} to ${bytesB.length} bytes`
      : `initial value differs at ${label}+${hex(byteDiff)}`;
  }
  return `code differs at ${label}+${hex(byteDiff)}${sizeNote}`;
}

/** Relocations of one span re-based onto the other span's start, to mask the same fields on both sides. */
function shifted(relocs: ResolvedReloc[], delta: number): ResolvedReloc[] {
  return relocs.map((r) => ({ ...r, offset: r.offset - delta }));
}

function firstRelocDifference(pre: Side, a: Span, post: Side, b: Span): { at: number; text: string } | undefined {
  const label = b.entity.name;
  let i = 0;
  let j = 0;
  while (i < a.relocs.length || j < b.relocs.length) {
    const ra = a.relocs[i];
    const rb = b.relocs[j];
    const offA = ra ? ra.offset - a.entity.start : Infinity;
    const offB = rb ? rb.offset - b.entity.start : Infinity;
    if (offA < offB) {
      return { at: offA, text: `no longer references ${describeTarget(pre, ra).display} at ${label}+${hex(offA)}` };
    }
    if (offB < offA) {
      return { at: offB, text: `${verb(rb, 'now')} ${describeTarget(post, rb).display} at ${label}+${hex(offB)}` };
    }
    const ta = describeTarget(pre, ra);
    const tb = describeTarget(post, rb);
    if (ra.rela.type !== rb.rela.type || ta.key !== tb.key) {
      return { at: offA, text: explainTargetChange(ra, ta, rb, tb, `${label}+${hex(offA)}`) };
    }
    i++;
    j++;
  }
  return undefined;
}

function verb(r: ResolvedReloc, prefix: 'now' | ''): string {
  const insn = r.insn;
  const base = insn && isCall(insn) ? 'calls' : insn && isUnconditionalJump(insn) ? 'jumps to' : 'references';
  return prefix ? `${prefix} ${base}` : base;
}

function explainTargetChange(ra: ResolvedReloc, ta: Target, rb: ResolvedReloc, tb: Target, where: string): string {
  if (ta.literal !== undefined && tb.literal !== undefined && ta.literal !== tb.literal) {
    return `string literal changed: ${ta.display} → ${tb.display} (used at ${where})`;
  }
  if (ta.kind === 'constant' && tb.kind === 'constant') return `constant changed at ${where}`;
  if (ta.kind === 'rodata' && tb.kind === 'rodata' && ta.display === tb.display) {
    return `read-only data ${tb.display} changed (used at ${where})`;
  }
  if (ta.display === tb.display) {
    return ra.rela.type !== rb.rela.type
      ? `relocation type of ${tb.display} changed at ${where}`
      : `${verb(rb, '')} a different part of ${tb.display} at ${where}`;
  }
  return `${verb(rb, '')} ${tb.display} instead of ${ta.display} at ${where}`;
}

/** Why a function differs between pre and post (its `.cold` parts included), or undefined when it does not. */
export function compareFunctions(pre: Side, a: Entity, post: Side, b: Entity): string | undefined {
  const main = compareSpans(pre, span(pre, a), post, span(post, b), 'code', b.name);
  if (main) return main;
  const coldA = [...a.coldParts].sort((x, y) => x.normalized.localeCompare(y.normalized));
  const coldB = [...b.coldParts].sort((x, y) => x.normalized.localeCompare(y.normalized));
  if (coldA.length !== coldB.length) {
    return coldB.length > coldA.length ? 'gcc now splits off a cold part' : 'gcc no longer splits off a cold part';
  }
  for (let k = 0; k < coldA.length; k++) {
    const diff = compareSpans(pre, span(pre, coldA[k]), post, span(post, coldB[k]), 'code', coldB[k].name);
    if (diff) return diff;
  }
  return undefined;
}

/** Why a variable's size or initial value differs between pre and post, or undefined. */
export function compareData(pre: Side, a: Entity, post: Side, b: Entity): string | undefined {
  return compareSpans(pre, span(pre, a), post, span(post, b), 'data', b.name);
}
