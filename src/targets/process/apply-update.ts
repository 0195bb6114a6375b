// Apply an update to a running process:
//   match   every changed function against the code in memory (run-pre)
//   link    the post code into memory made within ±2 GiB of each patched file
//   record  the update in the target (so list/undo work from any shell)
//   switch  freeze, stack check, 5-byte jumps at the old entries, resume
// A function an earlier update replaced runs as that update's post build,
// which reaches external data through GOT slots: it is matched with the
// unit's pre object built the same way (preShipped), the original code with
// the normal pre object.
// Everything slow happens before the freeze; any failure undoes what was
// done so far and leaves the process running as it was.

import { basename } from 'node:path';
import { switchCode } from '../../apply/switch.js';
import { JMP_REL32_SIZE, decodeJmpRel32, paddingAfter, trampolineFor } from '../../apply/trampoline.js';
import { SHF_ALLOC, SHN_LORESERVE, SHN_UNDEF, STT_FILE, STT_FUNC, STT_SECTION, STT_TLS } from '../../elf/constants.js';
import { parseElf, type ElfFile } from '../../elf/reader.js';
import { TspliceError, asTspliceError } from '../../errors.js';
import { layoutBlock, type BlockLayout } from '../../link/layout.js';
import { linkBlock, type LinkedBlock } from '../../link/link.js';
import {
  createRunningImage, installedCopy, withInstalledCode, type InstalledCode, type RunningImage,
} from '../../match/image.js';
import { CachedReader, ProcessMemoryReader } from '../../match/memory.js';
import { preFunction, type PreFunction } from '../../match/pre.js';
import { ResolutionSet } from '../../match/resolution.js';
import type { MatchOk } from '../../match/runpre.js';
import { matchUnit, type UnitMatch } from '../../match/unit.js';
import { type Progress, silentProgress } from '../../progress.js';
import type { FunctionRecord, PatchedObject, UnitRecord } from '../../update/manifest.js';
import type { UpdatePackage } from '../../update/package.js';
import { loadObject, mainExecutablePath, mappedFiles, type LoadedObject } from './loaded-objects.js';
import { readMaps } from './maps.js';
import {
  encodeRecord, readRecords, removeRecord, writeRecord, type InstalledFunctionRecord, type RedirectRecord, type SlotRecord,
  type StoredRecord,
} from './record.js';
import { remoteFunctionCall } from './remote-call.js';
import { PROT_EXEC, PROT_READ, PROT_WRITE, type Region, remoteMmap, remoteMprotect, remoteMunmap } from './remote-syscall.js';
import { createResolver } from './resolver.js';
import { ProcessSession } from './session.js';
import { processSwitchTarget } from './switch-target.js';
import { goneInstead, threadName } from './threads.js';

export interface ProcessApplyOptions {
  pid: number;
  /** Freeze attempts while a function is busy (default 5). */
  retries?: number;
  retryDelayMs?: number;
  progress?: Progress;
}

export interface AppliedFunction {
  object: string;
  function: string;
  /** Old entry point (where the jump is). */
  from: bigint;
  /** New code. */
  to: bigint;
}

export interface ProcessApplyResult {
  id: string;
  pid: number;
  functions: AppliedFunction[];
  /** Files the update patches that this process does not map. */
  skippedObjects: string[];
  freezeMs: number;
  tries: number;
  /** From start to finish of the whole apply. */
  totalMs: number;
}

/** One unit's part of the apply, prepared before any memory is touched. */
interface UnitPlan {
  unit: UnitRecord;
  post: ElfFile;
  functions: FunctionRecord[];
  match: UnitMatch;
  layout: BlockLayout;
  /** Changed functions: where each runs now, its size, and the padding after it the jump may cover. */
  redirects: Array<{ record: FunctionRecord; address: bigint; size: number; spare?: number }>;
  /** Ranges no thread may be in: the old functions and their cold parts. */
  busy: Array<{ name: string; start: bigint; end: bigint }>;
  pre?: ElfFile;
}

interface ObjectPlan {
  object: PatchedObject;
  loaded: LoadedObject;
  image: RunningImage;
  units: UnitPlan[];
}

const PROTECTIONS = { rx: PROT_READ | PROT_EXEC, r: PROT_READ, rw: PROT_READ | PROT_WRITE } as const;

export async function applyToProcess(pkg: UpdatePackage, options: ProcessApplyOptions): Promise<ProcessApplyResult> {
  try {
    return await applyInner(pkg, options);
  } catch (e) {
    throw goneInstead(options.pid, e, `the apply of update ${pkg.manifest.id}`);
  }
}

async function applyInner(pkg: UpdatePackage, options: ProcessApplyOptions): Promise<ProcessApplyResult> {
  const started = process.hrtime.bigint();
  const progress = options.progress ?? silentProgress;
  const { manifest } = pkg;
  const { pid } = options;

  const earlier = readRecords(pid);
  if (earlier.some((r) => r.id === manifest.id)) {
    throw new TspliceError('already_applied', `update ${manifest.id} is already applied to process ${pid}; ` +
      `tsplice list --pid ${pid} shows what is applied`, { pid, id: manifest.id });
  }

  progress.step(`matching the running code of process ${pid}`);
  const reader = new CachedReader(new ProcessMemoryReader(pid));
  const { plans, skipped, objects } = planObjects(pkg, pid, reader, earlier);
  progress.done();

  const session = ProcessSession.attach(pid);
  const regions: Region[] = [];
  let record: StoredRecord | undefined;
  try {
    progress.step('linking the new code into the process');
    const resolveIfunc = (fn: bigint): bigint => remoteFunctionCall(session, fn);
    const redirects: RedirectRecord[] = [];
    const writes: Array<{ addr: bigint; bytes: Buffer }> = [];
    const busy: Array<{ name: string; start: bigint; end: bigint }> = [];
    const applied: AppliedFunction[] = [];
    const installed: InstalledFunctionRecord[] = [];
    const slots: SlotRecord[] = [];
    for (const plan of plans) {
      const size = plan.units.reduce((n, u) => n + u.layout.size, 0);
      const region = remoteMmap(session, {
        near: { start: plan.loaded.start, end: plan.loaded.end }, size, prot: PROT_READ | PROT_WRITE,
        name: `tsplice:${manifest.id}:code`,
      });
      regions.push(region);
      let offset = 0n;
      for (const unit of plan.units) {
        const base = region.start + offset;
        offset += BigInt(unit.layout.size);
        const resolver = createResolver({
          pre: unit.pre, image: plan.image, reader, matched: unit.match.symbols, objects: objectsFor(plan, objects),
          resolveIfunc,
        });
        const linked = linkBlock(unit.layout, base, resolver);
        session.memory.write(base, linked.bytes);
        slots.push(...slotsOf(linked, plan.object.name));
        for (const range of linked.ranges) {
          remoteMprotect(session, { start: range.start, size: range.end - range.start }, PROTECTIONS[range.prot]);
        }
        for (const r of unit.redirects) {
          const post = r.record.post;
          const to = post && (linked.functions.get(post.section) ?? linked.functions.get(post.symbol));
          if (to === undefined) {
            throw new TspliceError('internal', `the linker did not place ${r.record.function} of ${r.record.unit}`);
          }
          const jump = trampolineFor({ name: r.record.function, address: r.address, size: r.size, spare: r.spare }, to);
          writes.push(jump);
          redirects.push({
            name: r.record.function, object: plan.object.name, from: r.address, to,
            original: session.memory.read(r.address, jump.bytes.length).toString('hex'),
          });
          applied.push({ object: plan.object.name, function: r.record.function, from: r.address, to });
        }
        installed.push(...installedFunctions(unit, linked, plan.object.name, redirects));
        busy.push(...unit.busy);
      }
    }
    progress.done();

    // Recorded before the switch, so a process never runs patched code without a record saying so.
    record = writeRecord(session, {
      id: manifest.id, objects: plans.map((p) => p.object.name), appliedAt: new Date().toISOString(),
      codeRegions: regions, redirects, installed, slots, freezeMs: 0,
    });

    progress.step('switching (freeze, stack check, jumps)');
    const switched = await switchCode(processSwitchTarget(session), {
      writes, busy, retries: options.retries, retryDelayMs: options.retryDelayMs,
    });
    progress.done();
    rewriteRecord(session, { ...record, freezeMs: switched.freezeMs });
    return {
      id: manifest.id, pid, functions: applied, skippedObjects: skipped, freezeMs: switched.freezeMs,
      tries: switched.tries, totalMs: Number(process.hrtime.bigint() - started) / 1e6,
    };
  } catch (e) {
    progress.fail();
    rollBack(session, record, regions, e);
    throw e;
  } finally {
    session.detach();
  }
}

/** Update the record's contents in place (its region is read-only in the target, but /proc/PID/mem writes it). */
function rewriteRecord(session: ProcessSession, record: StoredRecord): void {
  const { recordRegion, ...rest } = record;
  const bytes = encodeRecord(rest);
  if (BigInt(bytes.length) <= recordRegion.size) session.memory.write(recordRegion.start, bytes);
}

function rollBack(session: ProcessSession, record: StoredRecord | undefined, regions: Region[], cause: unknown): void {
  const err = asTspliceError(cause);
  // target_gone: nothing left to clean up in a process that no longer exists.
  if (err.code === 'target_gone') return;
  try {
    if (record) removeRecord(session, record);
    for (const region of regions) remoteMunmap(session, region);
  } catch {
    // The original error is what the user needs; a failed cleanup of a dying process adds nothing.
  }
}

/** The loaded objects for symbol lookup: the patched file first, then the rest in address order. */
function objectsFor(plan: ObjectPlan, all: LoadedObject[]): LoadedObject[] {
  return [plan.loaded, ...all.filter((o) => o !== plan.loaded)];
}

/** Every function the unit's block placed, where, and (for a changed one) the entry that jumps to it. */
function installedFunctions(
  unit: UnitPlan, linked: LinkedBlock, object: string, redirects: readonly RedirectRecord[],
): InstalledFunctionRecord[] {
  const out: InstalledFunctionRecord[] = [];
  for (const placed of unit.layout.sections) {
    if (placed.sectionClass !== 'code') continue;
    const start = linked.base + BigInt(placed.offset);
    for (const sym of unit.post.symbols) {
      if (sym.shndx !== placed.section.index || sym.type !== STT_FUNC || sym.name === '') continue;
      const address = start + sym.value;
      const entry = redirects.find((r) => r.object === object && r.to === address)?.from;
      out.push({
        object, unit: unit.unit.unit, name: sym.name, address, size: sym.size > 0 ? sym.size : placed.section.size - Number(sym.value),
        ...(entry !== undefined ? { entry } : {}),
      });
    }
  }
  return out;
}

/** The call stubs and local GOT slots of a linked block, with the symbols they reach. */
function slotsOf(linked: LinkedBlock, object: string): SlotRecord[] {
  const out: SlotRecord[] = linked.stubs.map((s) => ({ object, kind: 'stub', address: s.address, slot: s.slot, symbol: s.symbol }));
  for (const g of linked.gotSlots) {
    if (g.holds !== 'stub') out.push({ object, kind: g.holds, address: g.address, symbol: g.symbol });
  }
  return out;
}

/**
 * The running image of a patched file as earlier updates left it: each
 * function they placed, the latest copy of each counting only while its
 * entry still jumps to it.
 */
function imageAfterUpdates(image: RunningImage, object: string, records: readonly StoredRecord[], reader: CachedReader): RunningImage {
  const latest = new Map<string, InstalledCode>();
  const stubs: Array<{ address: bigint; slot: bigint; symbol: string }> = [];
  const slots: Array<{ address: bigint; symbol: string; holds: 'address' | 'tpoff' }> = [];
  for (const record of records) {
    for (const f of record.installed ?? []) {
      if (f.object !== object) continue;
      latest.set(`${f.unit}\0${f.name}`, {
        update: record.id, unit: f.unit, name: f.name, address: f.address, size: f.size, ...(f.entry !== undefined ? { entry: f.entry } : {}),
      });
    }
    for (const x of record.slots ?? []) {
      if (x.object !== object) continue;
      if (x.kind === 'stub' && x.slot !== undefined) stubs.push({ address: x.address, slot: x.slot, symbol: x.symbol });
      if (x.kind !== 'stub') slots.push({ address: x.address, symbol: x.symbol, holds: x.kind });
    }
  }
  const live = [...latest.values()].filter((f) => f.entry === undefined || decodeJmpRel32(f.entry, reader.read(f.entry, JMP_REL32_SIZE)) === f.address);
  if (live.length === 0 && stubs.length === 0 && slots.length === 0) return image;
  return withInstalledCode(image, live, stubs, slots);
}

/** Find the update's files in the process and match every changed function. */
function planObjects(pkg: UpdatePackage, pid: number, reader: CachedReader, records: readonly StoredRecord[]): {
  plans: ObjectPlan[]; skipped: string[]; objects: LoadedObject[];
} {
  const { manifest } = pkg;
  const maps = readMaps(pid);
  const files = mappedFiles(maps);
  const mainPath = mainExecutablePath(pid);
  const objects: LoadedObject[] = [];
  const loadedByPath = new Map<string, LoadedObject>();
  const load = (path: string): LoadedObject => {
    let o = loadedByPath.get(path);
    if (!o) {
      o = loadObject(pid, path, files.get(path) ?? [], path === mainPath);
      loadedByPath.set(path, o);
    }
    return o;
  };
  for (const path of files.keys()) {
    try {
      objects.push(load(path));
    } catch (e) {
      // Not every mapped file is ELF (locale archives, fonts): only ELF files can define symbols.
      if (asTspliceError(e).code !== 'bad_input') throw e;
    }
  }
  objects.sort((a, b) => Number(!a.isMain) - Number(!b.isMain));

  const plans: ObjectPlan[] = [];
  const skipped: string[] = [];
  for (const object of manifest.objects) {
    const loaded = objects.find((o) => o.name === object.name || (object.soname !== undefined && o.name === object.soname) ||
      (object.soname !== undefined && o.elf.soname === object.soname) ||
      (object.kind === 'executable' && o.isMain && basename(object.path) === o.name));
    if (!loaded) {
      skipped.push(object.name);
      continue;
    }
    const image = imageAfterUpdates(createRunningImage(loaded.elf, loaded.bias, loaded.path), object.name, records, reader);
    const units = manifest.units.filter((u) => object.units.includes(u.unit))
      .map((unit) => planUnit(pkg, object, unit, image, reader));
    plans.push({ object, loaded, image, units });
  }
  if (plans.length === 0) {
    const comm = commOf(pid);
    throw new TspliceError('no_match',
      `process ${pid}${comm ? ` (${comm})` : ''} does not map ${manifest.objects.map((o) => o.name).join(' or ')}, ` +
      `which update ${manifest.id} patches: check the pid, or that this is the program the update was built for`,
      { pid, objects: manifest.objects.map((o) => o.name) });
  }
  return { plans, skipped, objects };
}

function planUnit(pkg: UpdatePackage, object: PatchedObject, unit: UnitRecord, image: RunningImage,
  reader: CachedReader): UnitPlan {
  const post = parseElf(packageFile(pkg, unit, unit.post), `${unit.unit} (post)`);
  const pre = unit.pre ? parseElf(packageFile(pkg, unit, unit.pre), `${unit.unit} (pre)`) : undefined;
  const preShipped = unit.preShipped ? parseElf(packageFile(pkg, unit, unit.preShipped), `${unit.unit} (pre, as shipped)`) : undefined;
  const functions = pkg.manifest.functions.filter((f) => f.object === object.name && f.unit === unit.unit);
  const changed = functions.filter((f) => f.kind === 'changed');
  const preFns: PreFunction[] = [];
  const coldParts: PreFunction[] = [];
  if (pre) {
    // An earlier update's copy was built as updates ship code; the original code was not.
    const preOf = (name: string): PreFunction => {
      const asShipped = preShipped !== undefined && installedCopy(image, unit.unit, name) !== undefined &&
        preShipped.symbols.some((s) => s.name === name && s.type === STT_FUNC);
      return preFunction(asShipped ? preShipped : pre, name, unit.unit);
    };
    for (const f of changed) {
      if (!f.pre) continue;
      preFns.push(preOf(f.pre.symbol));
      // A cold part may hold a thread (an error path that blocks): it must be checked too.
      const cold = pre.symbols.find((s) => s.name === `${f.pre?.symbol}.cold`);
      if (cold) coldParts.push(preOf(cold.name));
    }
  }
  const match = matchVariants([...preFns, ...coldParts], pre, image, reader);
  // A function an earlier update replaced runs as that update's copy: the jump goes at its old entry again
  // (undo then restores the earlier jump), and no thread may be in the copy or on the entry's jump.
  const entryOf = (ok: { address: bigint }): bigint | undefined => image.aliases?.get(ok.address);
  const redirects = changed.map((record) => {
    const ok = match.functions.get(record.pre?.symbol ?? record.function);
    if (!ok) throw new TspliceError('internal', `no match result for ${record.function}`);
    const entry = entryOf(ok);
    if (entry !== undefined) return { record, address: entry, size: JMP_REL32_SIZE };
    if (ok.size >= JMP_REL32_SIZE) return { record, address: ok.address, size: ok.size };
    return { record, address: ok.address, size: ok.size, spare: sparePadding(image, reader, ok.address + BigInt(ok.size), JMP_REL32_SIZE - ok.size) };
  });
  // A short function's jump covers the padding after it too: no thread may be there either.
  const covered = new Map(redirects.map((r) => [r.address, r.address + BigInt(Math.max(r.size, JMP_REL32_SIZE))]));
  const busy = [...match.functions.entries()].flatMap(([name, ok]) => {
    const end = ok.address + BigInt(ok.size);
    const ranges = [{ name, start: ok.address, end: covered.get(ok.address) ?? end }];
    const entry = entryOf(ok);
    if (entry !== undefined) ranges.push({ name, start: entry, end: entry + BigInt(JMP_REL32_SIZE) });
    return ranges;
  });

  const install = functions.filter((f) => f.kind !== 'deleted' && f.post).map((f) => f.post?.section as string);
  const newSections = [
    ...functions.filter((f) => f.kind === 'new' && f.post).map((f) => f.post?.section as string),
    ...pkg.manifest.data.filter((d) => d.object === object.name && d.unit === unit.unit && d.kind === 'new').map((d) => d.section),
  ];
  const layout = layoutBlock({ elf: post, unit: unit.unit, install, newSections });
  if (layout.alignment > 4096) {
    throw new TspliceError('unsupported_change', `${unit.unit}: the new code needs ${layout.alignment}-byte alignment`);
  }
  return { unit, post, pre, functions, match, layout, redirects, busy };
}

/** A file the manifest names for a unit; bad_input if the package lacks it. */
function packageFile(pkg: UpdatePackage, unit: UnitRecord, path: string): Buffer {
  const data = pkg.files.get(path);
  if (!data) {
    throw new TspliceError('bad_input', `${pkg.path}: corrupt or foreign update: unit ${unit.unit} refers to missing ${path}; ` +
      'rebuild it with tsplice create', { file: pkg.path, unit: unit.unit, missing: path });
  }
  return data;
}

/**
 * Match functions whose pre code comes from the unit's pre object and from
 * its shipped-flags twin: each object's functions together (matchUnit), then
 * everything they resolved must agree.
 */
function matchVariants(fns: PreFunction[], pre: ElfFile | undefined, image: RunningImage, reader: CachedReader): UnitMatch {
  const groups = new Map<ElfFile, PreFunction[]>();
  for (const f of fns) groups.set(f.elf, [...(groups.get(f.elf) ?? []), f]);
  if (groups.size <= 1 || !pre) return matchUnit(fns, image, reader);
  const merged = new ResolutionSet(image);
  const functions = new Map<string, MatchOk>();
  for (const group of groups.values()) {
    for (const [name, ok] of matchUnit(group, image, reader).functions) {
      const conflict = merged.addAll(ok.resolutions);
      if (conflict) {
        throw new TspliceError('no_match',
          `${name} (${group[0].unit}) matches at 0x${ok.address.toString(16)}, but ${conflict}. The running code is not ` +
            'what this update was built from: build it from the exact source of the running program with the earlier ' +
            'updates\' patches applied.',
          { function: name, unit: group[0].unit, address: `0x${ok.address.toString(16)}` });
      }
      functions.set(name, ok);
    }
  }
  return { functions, symbols: merged.toMap(pre) };
}

/**
 * Bytes after a function's end that its jump may cover: padding in the
 * running memory, up to the first symbol that starts there.
 */
function sparePadding(image: RunningImage, reader: CachedReader, end: bigint, wanted: number): number {
  // A padding NOP can be long (up to 15 bytes): read enough to decode the last one whole.
  const bytes = reader.readUpTo(end, wanted + 15);
  const padding = paddingAfter(end, bytes, wanted);
  const limit = end + BigInt(padding);
  let spare = padding;
  for (const sym of [...image.elf.symbols, ...image.elf.dynamicSymbols]) {
    if (sym.shndx === SHN_UNDEF || sym.shndx >= SHN_LORESERVE || sym.name === '') continue;
    if (sym.type === STT_FILE || sym.type === STT_SECTION || sym.type === STT_TLS) continue;
    // Only symbols of loaded sections have run-time addresses.
    const section = image.elf.sections[sym.shndx];
    if (section && (section.flags & SHF_ALLOC) === 0n) continue;
    const at = sym.value + image.bias;
    if (at >= end && at < limit) spare = Math.min(spare, Number(at - end));
  }
  return spare;
}

function commOf(pid: number): string | undefined {
  try {
    return threadName(pid, pid);
  } catch {
    return undefined;
  }
}
