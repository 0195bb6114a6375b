// Matching a set of functions of one unit together. Each function is tried at
// each of its candidates; the choice must be unique, and the symbols all the
// chosen matches resolve must agree. A local function whose name exists in
// several files is settled, in order, by: only one candidate matching; only
// one agreeing with what the other functions resolved; only one in a file of
// the same source name.

import { SHF_EXECINSTR, STT_FILE, STT_SECTION, STT_TLS, SHN_UNDEF, SHN_LORESERVE, STB_LOCAL, PT_TLS } from '../elf/constants.js';
import type { ElfFile, ElfSymbol } from '../elf/reader.js';
import { TspliceError } from '../errors.js';
import { findCandidates, type Candidate } from './candidates.js';
import { definedGlobalAddress, installedCopy, type InstalledCode, type RunningImage } from './image.js';
import type { CodeReader } from './memory.js';
import { CachedReader } from './memory.js';
import { preFunctions, sourceFileName, type PreFunction } from './pre.js';
import { ResolutionSet, type Resolution } from './resolution.js';
import { describeFailure, matchFunction, type MatchFail, type MatchOk, type MatchOptions } from './runpre.js';

export interface UnitMatch {
  /** Each pre function's match, by function name. */
  functions: Map<string, MatchOk>;
  /** All resolved symbols, merged. */
  symbols: Map<string, Resolution>;
}

export type UnitMatchOptions = Omit<MatchOptions, 'runSize'>;

interface Tried {
  pre: PreFunction;
  matches: Array<{ candidate: Candidate; ok: MatchOk }>;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

const NOT_THE_SAME_BINARY =
  'The running binary is not the one this update was built from (different source, compiler or flags): ' +
  'build the update from the exact source tree and build configuration of the running program.';

function noMatch(message: string, details: Record<string, unknown>): TspliceError {
  return new TspliceError('no_match', `${message} ${NOT_THE_SAME_BINARY}`, details);
}

/** Match every function of `preFunctions` (all from one pre object) and merge what they resolve. */
export function matchUnit(
  preFunctions: PreFunction[], image: RunningImage, reader: CodeReader, options: UnitMatchOptions = {},
): UnitMatch {
  const [first] = preFunctions;
  if (!first) return { functions: new Map(), symbols: new Map() };
  if (preFunctions.some((f) => f.elf !== first.elf)) {
    throw new TspliceError('internal', 'matchUnit: functions of several pre objects given at once; match each unit on its own');
  }
  const memory = reader instanceof CachedReader ? reader : new CachedReader(reader);
  const tried = preFunctions.map((pre) => tryCandidates(pre, image, memory, options));

  const merged = new ResolutionSet(image);
  const functions = new Map<string, MatchOk>();
  const choose = (t: Tried, ok: MatchOk) => {
    const conflict = merged.addAll(ok.resolutions);
    if (conflict) {
      throw noMatch(`${t.pre.name} (${t.pre.unit}) matches at ${hex(ok.address)}, but ${conflict}.`, {
        function: t.pre.name, unit: t.pre.unit, address: hex(ok.address),
      });
    }
    functions.set(t.pre.name, ok);
  };

  let open = tried;
  while (open.length > 0) {
    const viable = new Map(open.map((t) => [t, t.matches.filter((m) => merged.agreesWith(m.ok.resolutions))]));
    for (const [t, v] of viable) {
      if (v.length === 0) {
        const m = t.matches[0];
        const trial = new ResolutionSet(image);
        const conflict = trial.addAll(merged) ?? trial.addAll(m.ok.resolutions) ?? 'conflicting symbols';
        throw noMatch(`${t.pre.name} (${t.pre.unit}) matches at ${hex(m.ok.address)}, but ${conflict}.`, {
          function: t.pre.name, unit: t.pre.unit, address: hex(m.ok.address),
        });
      }
    }
    const unique = open.find((t) => viable.get(t)!.length === 1);
    if (unique) {
      choose(unique, viable.get(unique)![0].ok);
      open = open.filter((t) => t !== unique);
      continue;
    }
    // Every remaining function has several equally good places: prefer the one from the same source file.
    const t = open[0];
    const file = sourceFileName(t.pre.elf);
    const sameFile = viable.get(t)!.filter((m) => file !== undefined && m.candidate.file === file);
    if (sameFile.length !== 1) {
      const where = viable.get(t)!.map((m) => `${hex(m.ok.address)}${m.candidate.file ? ` (${m.candidate.file})` : ''}`);
      throw new TspliceError(
        'no_match',
        `${t.pre.name} (${t.pre.unit}) matches the running code at ${where.length} places (${where.join(', ')}) ` +
          'and nothing tells which one the update is for; tsplice cannot patch it safely. ' +
          'Include a caller or a callee of this function in the update, or keep the symbol table (.symtab with file symbols) in the running binary.',
        { function: t.pre.name, unit: t.pre.unit, candidates: where },
      );
    }
    choose(t, sameFile[0].ok);
    open = open.slice(1);
  }
  return { functions, symbols: merged.toMap(first.elf) };
}

function tryCandidates(pre: PreFunction, image: RunningImage, reader: CodeReader, options: UnitMatchOptions): Tried {
  const copy = installedCopy(image, pre.unit, pre.name);
  if (copy) return tryInstalledCopy(pre, copy, image, reader, options);
  const candidates = findCandidates(pre, image, reader);
  if (candidates.length === 0) {
    const how = image.elf.symbols.length > 1 ? 'no function of that name in its symbol table' : 'the image is stripped and no code looks like it';
    throw noMatch(`${pre.name} (${pre.unit}) was not found in ${image.name}: ${how}.`, { function: pre.name, unit: pre.unit });
  }
  const matches: Tried['matches'] = [];
  const failures: Array<{ candidate: Candidate; fail: MatchFail }> = [];
  for (const candidate of candidates) {
    const result = matchFunction(pre, candidate.address, reader, image, { ...options, runSize: candidate.size });
    if (result.ok) matches.push({ candidate, ok: result });
    else failures.push({ candidate, fail: result });
  }
  if (matches.length === 0) {
    // Report the candidate that got furthest: the most likely to be "the" function, changed.
    const best = failures.reduce((a, b) => (b.fail.offset > a.fail.offset ? b : a));
    throw noMatch(`${describeFailure(pre, best.fail)} [in ${image.name}${candidates.length > 1 ? `, best of ${candidates.length} candidates` : ''}].`, {
      function: pre.name, unit: pre.unit, offset: best.fail.offset, address: hex(best.fail.address),
    });
  }
  return { pre, matches };
}

/**
 * A function an applied update replaced (or added) runs as that update's
 * copy: the pre code (built from the source with that update applied) must
 * be that copy, nothing else.
 */
function tryInstalledCopy(
  pre: PreFunction, copy: InstalledCode, image: RunningImage, reader: CodeReader, options: UnitMatchOptions,
): Tried {
  const result = matchFunction(pre, copy.address, reader, image, { ...options, runSize: copy.size });
  if (!result.ok) {
    throw new TspliceError('no_match',
      `${describeFailure(pre, result)} [in the code update ${copy.update} installed for it]. ${pre.name} runs as ` +
        `update ${copy.update} made it: build this update from the source with ${copy.update}'s patch applied ` +
        '(and no other change to that function), or undo that update first.',
      { function: pre.name, unit: pre.unit, offset: result.offset, address: hex(result.address), update: copy.update });
  }
  return { pre, matches: [{ candidate: { address: copy.address, size: copy.size, source: 'update', symbol: pre.name }, ok: result }] };
}

/**
 * Where is symbol `name` of the unit whose pre object is `unitPreElf`? A
 * function of the unit is found by matching its pre code (so static
 * functions resolve even with duplicate names); data and symbols from
 * elsewhere come from the image's symbol tables.
 */
export function resolveSymbol(
  name: string, unitPreElf: ElfFile, image: RunningImage, reader: CodeReader, options: UnitMatchOptions = {},
): Resolution {
  const sym = unitPreElf.symbols.find((s) => s.name === name && s.type !== STT_SECTION && s.type !== STT_FILE);
  const defined = sym && sym.shndx !== SHN_UNDEF && sym.shndx < SHN_LORESERVE;
  if (sym && defined && (unitPreElf.sections[sym.shndx].flags & SHF_EXECINSTR) !== 0n) {
    const fn = preFunctions(unitPreElf).find((f) => f.section.index === sym.shndx);
    if (fn) {
      const found = matchUnit([fn], image, reader, options).symbols.get(name);
      if (found) return found;
    }
  }
  const fromTable = lookUpSymbol(name, unitPreElf, image, sym !== undefined && defined === true && sym.bind === STB_LOCAL);
  if (fromTable) return fromTable;
  const address = definedGlobalAddress(image, name);
  if (address !== undefined) return { address };
  throw new TspliceError(
    'no_match',
    `${name} is not defined in ${image.name}${sym && !defined ? '; it comes from another object, resolve it there' : ''}.`,
    { symbol: name, image: image.name },
  );
}

/** A data (or other non-matched) symbol by name in the image's .symtab, locals narrowed to the unit's source file. */
function lookUpSymbol(name: string, preElf: ElfFile, image: RunningImage, local: boolean): Resolution | undefined {
  const file = sourceFileName(preElf);
  const hits: Array<{ sym: ElfSymbol; file?: string }> = [];
  let current: string | undefined;
  for (const s of image.elf.symbols) {
    if (s.type === STT_FILE) current = s.name;
    if (s.bind !== STB_LOCAL) current = undefined;
    if (s.name !== name || s.shndx === SHN_UNDEF || s.type === STT_FILE) continue;
    if (local !== (s.bind === STB_LOCAL)) continue;
    hits.push({ sym: s, ...(current !== undefined ? { file: current } : {}) });
  }
  let chosen = hits.length === 1 ? hits[0] : undefined;
  if (hits.length > 1) {
    const sameFile = hits.filter((h) => h.file !== undefined && h.file === file);
    if (sameFile.length !== 1) {
      throw new TspliceError(
        'no_match',
        `${name} is defined ${hits.length} times in ${image.name} and nothing tells which one belongs to ${preElf.name}.`,
        { symbol: name, image: image.name },
      );
    }
    chosen = sameFile[0];
  }
  if (!chosen) return undefined;
  if (chosen.sym.type === STT_TLS) return { tls: tlsLocation(image, chosen.sym.value) };
  return { address: chosen.sym.value + image.bias };
}

/** A TLS symbol's offset: from the thread pointer in an executable (x86-64 variant II), in the module block otherwise. */
function tlsLocation(image: RunningImage, value: bigint): Resolution['tls'] {
  if (!image.executable) return { dtpoff: value };
  const tls = image.elf.segments.find((p) => p.type === PT_TLS);
  if (!tls) return { dtpoff: value };
  const align = BigInt(Math.max(1, tls.align));
  const size = ((BigInt(tls.memsz) + align - 1n) / align) * align;
  return { tpoff: value - size };
}
