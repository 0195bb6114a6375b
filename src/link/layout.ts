// Layout of the block of new memory, decided before its address is known: the
// caller needs the size to allocate memory near the target, then links there.
// What goes in follows the relocations from the installed functions: code that
// is installed, new or a cold part of placed code is placed; read-only data is
// copied; writable data is placed only when it is new (existing variables keep
// their state in the running program); everything else is the running
// program's. Code comes first, then read-only data with the local GOT, then
// writable data, each part on its own pages so it can be protected apart.

import { relocationsFor, symbolSection, type ElfFile, type ElfSection } from '../elf/reader.js';
import {
  R_X86_64_GOTPCREL, R_X86_64_GOTPCRELX, R_X86_64_GOTTPOFF, R_X86_64_PC32, R_X86_64_PLT32,
  R_X86_64_REX_GOTPCRELX,
} from '../elf/x86_64.js';
import { TspliceError } from '../errors.js';
import { classifySection, isColdFragment, symbolsBySection, type SectionClass } from './sections.js';
import { relocationTarget, type RelocationTarget } from './targets.js';

export type Protection = 'rx' | 'r' | 'rw';

export interface LinkRequest {
  /** The post object of the translation unit. */
  elf: ElfFile;
  /** Name of the unit for the resolver and messages; defaults to elf.name. */
  unit?: string;
  /** Function sections to install (changed and new functions), e.g. `.text.foo`. */
  install: readonly string[];
  /** Names of sections present only in the post object (new functions and variables). */
  newSections?: Iterable<string>;
  /** Page size of the target (default 4096). */
  pageSize?: number;
}

/** Why a section is in the block. */
export type PlacementReason = 'installed' | 'new' | 'cold' | 'copied';

export interface PlacedSection {
  section: ElfSection;
  sectionClass: SectionClass;
  reason: PlacementReason;
  /** Offset from the block's start. */
  offset: number;
}

export interface LayoutRange {
  start: number;
  end: number;
  prot: Protection;
}

/** A call stub (`jmp *slot(%rip)`) for a branch whose target may lie beyond ±2 GiB. */
export interface StubReservation {
  code: number;
  slot: number;
}

export interface BlockLayout {
  elf: ElfFile;
  unit: string;
  pageSize: number;
  sections: PlacedSection[];
  bySection: Map<number, PlacedSection>;
  /** Stubs by branch target key (`<target key>|<addend>`). */
  stubs: Map<string, StubReservation>;
  /** Local GOT slots by key (`address:<target key>` or `tpoff:<target key>`), offsets in the block. */
  gotSlots: Map<string, number>;
  ranges: LayoutRange[];
  /** Bytes to allocate: a whole number of pages. */
  size: number;
  /** The block's address must be a multiple of this (the page size, or a larger section alignment). */
  alignment: number;
}

const STUB_SIZE = 8; // ff 25 <rel32> + 2 bytes of int3 padding
const SLOT_SIZE = 8;

/** A call or jump whose rel32 field is at `offset`: e8/e9 or 0f 80..8f right before the field. */
export function isBranchField(code: Buffer, offset: number): boolean {
  if (offset < 1 || offset + 4 > code.length) return false;
  const op = code[offset - 1];
  if (op === 0xe8 || op === 0xe9) return true;
  return offset >= 2 && code[offset - 2] === 0x0f && (op & 0xf0) === 0x80;
}

export function isGotAddressRelocation(type: number): boolean {
  return type === R_X86_64_GOTPCREL || type === R_X86_64_GOTPCRELX || type === R_X86_64_REX_GOTPCRELX;
}

/** The key of the stub for a branch to `target` with addend `addend`, or undefined when none is needed. */
export function stubKey(
  section: ElfSection, type: number, fieldOffset: number, addend: bigint, target: RelocationTarget,
): string | undefined {
  if (target.kind === 'placed' || classifySection(section) !== 'code') return undefined;
  const branch = type === R_X86_64_PLT32 || (type === R_X86_64_PC32 && isBranchField(section.data, fieldOffset));
  return branch ? `${target.key}|${addend}` : undefined;
}

function alignUp(n: number, align: number): number {
  const a = Math.max(align, 1);
  return Math.ceil(n / a) * a;
}

function bad(elf: ElfFile, message: string, details: Record<string, unknown> = {}): TspliceError {
  return new TspliceError('bad_input', `${elf.name}: ${message}`, { object: elf.name, ...details });
}

/** Follow relocations from the installed sections and decide which sections go into the block. */
function chooseSections(
  elf: ElfFile, unit: string, install: readonly string[], isNew: (name: string) => boolean,
): Map<number, PlacementReason> {
  const bySection = symbolsBySection(elf);
  const chosen = new Map<number, PlacementReason>();
  const queue: ElfSection[] = [];
  for (const name of install) {
    const section = elf.sections.find((s) => s.name === name);
    if (!section) throw bad(elf, `section ${name} to install does not exist in the post object`, { section: name });
    if (classifySection(section) !== 'code') {
      throw bad(elf, `section ${name} to install is not a code section`, { section: name });
    }
    if (!chosen.has(section.index)) queue.push(section);
    chosen.set(section.index, 'installed');
  }
  while (queue.length > 0) {
    const from = queue.shift() as ElfSection;
    for (const rela of relocationsFor(elf, from)) {
      if (rela.symbolIndex === 0) continue;
      const to = symbolSection(elf, elf.symbols[rela.symbolIndex]);
      if (!to || chosen.has(to.index)) continue;
      const reason = placementOf(elf, unit, to, from, isNew(to.name), isColdFragment(bySection.get(to.index)));
      if (!reason) continue;
      chosen.set(to.index, reason);
      queue.push(to);
    }
  }
  return chosen;
}

/** Whether a section referred to by placed code goes into the block, and why; undefined: it stays outside. */
function placementOf(
  elf: ElfFile, unit: string, to: ElfSection, from: ElfSection, isNew: boolean, cold: boolean,
): PlacementReason | undefined {
  switch (classifySection(to)) {
    case 'code':
      if (isNew) return 'new';
      return cold ? 'cold' : undefined;
    case 'const':
      return 'copied';
    case 'data':
      return isNew ? 'new' : undefined;
    case 'tls':
      if (isNew) {
        throw new TspliceError(
          'unsupported_change',
          `${unit}: ${from.name} uses the new thread-local variable section ${to.name}; thread-local storage ` +
            'cannot be added to running threads: keep the variable out of the patch or make it a normal global',
          { unit, section: to.name, function: from.name },
        );
      }
      return undefined;
    case 'other':
      throw bad(elf, `${from.name} refers to ${to.name}, which is not loaded at run time`, { section: to.name });
  }
}

/** Compute what the block holds and where, and its size; no address is needed yet. */
export function layoutBlock(request: LinkRequest): BlockLayout {
  const { elf } = request;
  const unit = request.unit ?? elf.name;
  const pageSize = request.pageSize ?? 4096;
  if (!Number.isInteger(pageSize) || pageSize <= 0 || (pageSize & (pageSize - 1)) !== 0) {
    throw new TspliceError('internal', `page size ${pageSize} is not a power of two`);
  }
  const newNames = new Set(request.newSections ?? []);
  const chosen = chooseSections(elf, unit, request.install, (name) => newNames.has(name));

  const entries = [...chosen.entries()].map(([index, reason]) => ({
    section: elf.sections[index], reason, sectionClass: classifySection(elf.sections[index]),
  }));
  // Installed order first among code, then the object's order, so the layout is the same on every run.
  const installOrder = new Map(request.install.map((name, i) => [name, i]));
  const order = (e: (typeof entries)[number]): number => installOrder.get(e.section.name) ?? request.install.length;
  const group = (cls: SectionClass[]): typeof entries =>
    entries
      .filter((e) => cls.includes(e.sectionClass))
      .sort((a, b) => order(a) - order(b) || a.section.index - b.section.index);

  const sections: PlacedSection[] = [];
  const bySection = new Map<number, PlacedSection>();
  let at = 0;
  const place = (e: (typeof entries)[number]): void => {
    at = alignUp(at, e.section.addralign);
    const placed: PlacedSection = { section: e.section, sectionClass: e.sectionClass, reason: e.reason, offset: at };
    sections.push(placed);
    bySection.set(e.section.index, placed);
    at += e.section.size;
  };

  // Stubs and GOT slots depend only on which sections are placed, so they are reserved now
  // for every branch out of the block and every GOT access; unused ones cost a few bytes.
  const codeSections = group(['code']);
  codeSections.forEach(place);
  const placedIndexes = new Set(chosen.keys());
  const sectionSymbols = symbolsBySection(elf);
  const stubKeys: string[] = [];
  const slotKeys: string[] = [];
  const addOnce = (list: string[], key: string): void => {
    if (!list.includes(key)) list.push(key);
  };
  for (const index of placedIndexes) {
    const section = elf.sections[index];
    for (const rela of relocationsFor(elf, section)) {
      if (rela.symbolIndex === 0) continue;
      const target = relocationTarget(elf, unit, elf.symbols[rela.symbolIndex], placedIndexes, sectionSymbols);
      const stub = stubKey(section, rela.type, Number(rela.offset), rela.addend, target);
      if (stub) addOnce(stubKeys, stub);
      if (isGotAddressRelocation(rela.type)) addOnce(slotKeys, `address:${target.key}`);
      if (rela.type === R_X86_64_GOTTPOFF) addOnce(slotKeys, `tpoff:${target.key}`);
    }
  }
  const stubCode: number[] = [];
  if (stubKeys.length > 0) at = alignUp(at, 16);
  for (let i = 0; i < stubKeys.length; i++, at += STUB_SIZE) stubCode.push(at);
  const codeEnd = at;

  at = alignUp(at, pageSize);
  const constStart = at;
  group(['const']).forEach(place);
  at = alignUp(at, SLOT_SIZE);
  const gotSlots = new Map<string, number>();
  for (const key of slotKeys) {
    gotSlots.set(key, at);
    at += SLOT_SIZE;
  }
  const stubs = new Map<string, StubReservation>();
  stubKeys.forEach((key, i) => {
    stubs.set(key, { code: stubCode[i], slot: at });
    at += SLOT_SIZE;
  });
  const constEnd = at;

  at = alignUp(at, pageSize);
  const dataStart = at;
  group(['data']).forEach(place);
  const dataEnd = at;

  const ranges: LayoutRange[] = [];
  if (codeEnd > 0) ranges.push({ start: 0, end: alignUp(codeEnd, pageSize), prot: 'rx' });
  if (constEnd > constStart) ranges.push({ start: constStart, end: alignUp(constEnd, pageSize), prot: 'r' });
  if (dataEnd > dataStart) ranges.push({ start: dataStart, end: alignUp(dataEnd, pageSize), prot: 'rw' });
  const size = alignUp(Math.max(dataEnd, constEnd, codeEnd), pageSize);
  const alignment = Math.max(pageSize, ...sections.map((p) => p.section.addralign));
  return { elf, unit, pageSize, sections, bySection, stubs, gotSlots, ranges, size, alignment };
}
