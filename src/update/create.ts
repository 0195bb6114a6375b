// tsplice create: patch + source → update package.
//
// Build pre/post/lines (build/), diff every changed translation unit
// (analysis/), refuse what a code-only update cannot carry, and pack the pre
// and post objects with a manifest (update/package). The pre object is also
// packed as built with the post objects' flags, for matching code an earlier
// update installed.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { checkSupportedChanges } from '../analysis/check.js';
import { diffUnit, type UnitDiff } from '../analysis/diff.js';
import { type ChangedObject, buildPrePost } from '../build/builder.js';
import { readPatchFile } from '../build/patch.js';
import { parseElf } from '../elf/reader.js';
import { TspliceError } from '../errors.js';
import { type Progress, silentProgress } from '../progress.js';
import { TOOL_VERSION } from '../version.js';
import {
  type DataRecord, type FunctionRecord, MANIFEST_FORMAT, type Manifest, type PatchedObject, type UnitRecord,
  checkUpdateId,
} from './manifest.js';
import { sha256, writeUpdate } from './package.js';

export interface CreateOptions {
  srcDir: string;
  patchFile: string;
  buildCommand?: string;
  id?: string;
  outDir: string;
  progress?: Progress;
  /** Keep the build trees (for debugging); they are removed by default. */
  keepWorkDir?: boolean;
  jobs?: number;
}

export interface CreateResult {
  path: string;
  manifest: Omit<Manifest, 'hashes'>;
  /** Changed translation units that no executable or library contains (nothing to patch). */
  unlinkedUnits: string[];
  seconds: number;
}

export async function createUpdate(given: CreateOptions): Promise<CreateResult> {
  const started = process.hrtime.bigint();
  // The build runs in copies of the tree: paths the user gave relative to their shell must not follow it there.
  const options = { ...given, srcDir: resolve(given.srcDir), patchFile: resolve(given.patchFile), outDir: resolve(given.outDir) };
  const progress = options.progress ?? silentProgress;
  if (options.id !== undefined) checkUpdateId(options.id);
  const patchText = readPatchFile(options.patchFile);
  const workDir = mkdtempSync(join(tmpdir(), 'tsplice-create-'));
  try {
    const build = await buildPrePost({
      srcDir: options.srcDir, patchFile: options.patchFile, buildCommand: options.buildCommand, workDir,
      progress, jobs: options.jobs,
    });
    progress.step('comparing object code');
    const units: Array<{ changed: ChangedObject; diff: UnitDiff }> = [];
    for (const changed of build.changed) {
      const post = parseElf(readFileSync(changed.postObject), changed.object);
      const lines = parseElf(readFileSync(changed.linesObject), `${changed.object} (lines)`);
      const pre = changed.preObject ? parseElf(readFileSync(changed.preObject), changed.object) : undefined;
      const diff = diffUnit({ unit: changed.object, pre, post, lines });
      if (diff.functions.length > 0 || diff.data.length > 0) units.push({ changed, diff });
    }
    checkSupportedChanges(units.map((u) => u.diff));
    progress.done();

    const linked = units.filter((u) => u.changed.linkedInto.length > 0);
    const unlinkedUnits = units.filter((u) => u.changed.linkedInto.length === 0).map((u) => u.changed.object);
    if (!linked.some((u) => u.diff.functions.length > 0)) {
      throw new TspliceError('bad_input',
        unlinkedUnits.length > 0
          ? `the patch changes code only in ${unlinkedUnits.join(', ')}, which no executable or shared library ` +
            'built by this source contains: there is nothing to patch in a running program'
          : 'the patch changes no function\'s machine code (only comments, unused code or build files?): there ' +
            'is nothing to apply');
    }

    const objects = new Map<string, PatchedObject>();
    const unitRecords: UnitRecord[] = [];
    const functions: FunctionRecord[] = [];
    const data: DataRecord[] = [];
    const files = new Map<string, Buffer>();
    linked.forEach(({ changed, diff }, i) => {
      const names: string[] = [];
      for (const out of changed.linkedInto) {
        const name = basename(out.path);
        names.push(name);
        const object = objects.get(name) ?? {
          name, path: out.path, kind: out.kind, units: [], ...sonameOf(join(build.post.dir, out.path)),
        };
        object.units.push(changed.object);
        objects.set(name, object);
      }
      const record: UnitRecord = { unit: changed.object, source: changed.source, objects: names, post: `units/${i}/post.o` };
      files.set(record.post, readFileSync(changed.postObject));
      if (changed.preObject) {
        record.pre = `units/${i}/pre.o`;
        files.set(record.pre, readFileSync(changed.preObject));
      }
      if (changed.preShippedObject) {
        record.preShipped = `units/${i}/pre-shipped.o`;
        files.set(record.preShipped, readFileSync(changed.preShippedObject));
      }
      unitRecords.push(record);
      for (const name of names) {
        for (const f of diff.functions) {
          functions.push({
            object: name, unit: changed.object, function: f.function, section: f.section, kind: f.kind,
            reason: f.reason, local: f.local,
            ...(f.pre ? { pre: { symbol: f.pre.symbol, section: f.pre.section } } : {}),
            ...(f.post ? { post: { symbol: f.post.symbol, section: f.post.section } } : {}),
          });
        }
        for (const d of diff.data) {
          data.push({
            object: name, unit: changed.object, symbol: d.symbol, section: d.section, kind: d.kind,
            writable: d.writable, reason: d.reason,
          });
        }
      }
    });

    const patchHash = sha256(patchText);
    const id = options.id ?? defaultId(patchHash, files);
    const manifest: Omit<Manifest, 'hashes'> = {
      format: MANIFEST_FORMAT,
      id,
      tool: { name: 'tsplice', version: TOOL_VERSION },
      createdAt: new Date().toISOString(),
      target: { kind: 'process' },
      patch: { file: basename(options.patchFile), sha256: patchHash, files: build.patchedFiles },
      objects: [...objects.values()],
      units: unitRecords,
      functions,
      data,
    };
    progress.step('writing the update');
    const path = writeUpdate(options.outDir, manifest, files);
    progress.done();
    return { path, manifest, unlinkedUnits, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
  } finally {
    if (!options.keepWorkDir) rmSync(workDir, { recursive: true, force: true });
  }
}

/** Same patch and same objects give the same id, so rebuilding an update does not make a "new" one. */
function defaultId(patchHash: string, files: Map<string, Buffer>): string {
  const h = [patchHash, ...[...files.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => k + sha256(v))];
  return sha256(h.join('\n')).slice(0, 12);
}

function sonameOf(path: string): { soname?: string } {
  try {
    const soname = parseElf(readFileSync(path), path).soname;
    return soname ? { soname } : {};
  } catch {
    return {};
  }
}
