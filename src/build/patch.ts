// Apply a unified diff to a source tree with GNU patch.
//
// The patch is first tried with --dry-run, so one that does not apply leaves
// the tree as it was; the error then names each file and hunk that failed.
// Hunks must apply exactly (no fuzz) unless the caller allows fuzz: a security
// fix applied at the wrong place must not become an update silently.

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import { TspliceError } from '../errors.js';
import {
  type FileDiff,
  type Hunk,
  type LineMap,
  lineMapFromHunks,
  parseUnifiedDiff,
  splitLines,
  stripPath,
  validateLineMap,
} from './unidiff.js';

/** One file the patch touches, with paths relative to the tree. */
export interface PatchedFile {
  /** Path after the patch (for a deleted file: the path it had). */
  path: string;
  /** Path before the patch; undefined for a file the patch creates. */
  oldPath: string | undefined;
  created: boolean;
  deleted: boolean;
  hunks: Hunk[];
}

/** A patch that applies to a tree (checked with --dry-run). */
export interface PatchPlan {
  patchFile: string;
  /** The -p level used. */
  strip: number;
  files: PatchedFile[];
  /** GNU patch's remarks on hunks that applied at an offset or with fuzz. */
  notes: string[];
}

/** A patched file after application: its post→pre line mapping (undefined for created/deleted files). */
export interface AppliedFile extends PatchedFile {
  lineMap: LineMap | undefined;
}

export interface AppliedPatch extends Omit<PatchPlan, 'files'> {
  files: AppliedFile[];
}

export interface PatchOptions {
  /** -p level; detected from the tree when not given. */
  strip?: number;
  /** Fuzz factor allowed to GNU patch (default 0: context must match exactly). */
  fuzz?: number;
}

/** One failure reported by GNU patch. */
export interface PatchFailure {
  file: string | undefined;
  /** Hunk numbers (1-based, in the file's section of the patch) that failed. */
  hunks: number[];
  reason: 'hunk_failed' | 'missing_file' | 'already_applied' | 'other';
}

/** Read and parse a patch file; bad_input if it holds no unified diff hunk. */
/** The patch file's bytes; an unreadable file is bad_input naming it. */
export function readPatchFile(patchFile: string): Buffer {
  try {
    return readFileSync(patchFile);
  } catch (e) {
    throw new TspliceError('bad_input', `cannot read the patch ${patchFile}: ${(e as Error).message}`, {
      patchFile,
    });
  }
}

export function readPatch(patchFile: string): FileDiff[] {
  const text = readPatchFile(patchFile).toString('utf8');
  const files = parseUnifiedDiff(text);
  if (files.length === 0) {
    throw new TspliceError(
      'bad_input',
      `${patchFile} contains no unified diff hunks: give a patch made by "diff -u" or "git diff"`,
      { patchFile },
    );
  }
  return files;
}

/**
 * The -p level at which the patch names files of the tree: every file the patch
 * modifies or deletes must exist. Prefers 1 (git style), then 0, then deeper.
 */
export function detectStrip(treeDir: string, diffs: readonly FileDiff[], patchFile = 'the patch'): number {
  const candidates = [1, 0, 2, 3, 4];
  let best: { strip: number; found: number } | undefined;
  for (const strip of candidates) {
    let found = 0;
    let ok = true;
    for (const d of diffs) {
      if (d.created || d.oldName === undefined) {
        // A created file need not exist; its name must still have enough components.
        const name = d.newName ?? d.oldName;
        if (name === undefined || stripPath(name, strip) === undefined) ok = false;
        continue;
      }
      const rel = stripPath(d.oldName, strip);
      if (rel !== undefined && isFile(join(treeDir, rel))) found++;
      else ok = false;
    }
    if (ok) return strip;
    if (!best || found > best.found) best = { strip, found };
  }
  const names = diffs.map((d) => d.oldName ?? d.newName).filter((n): n is string => n !== undefined);
  throw new TspliceError(
    'bad_input',
    `${patchFile} names files that are not in ${treeDir} at any -p level (${names.slice(0, 5).join(', ')}): ` +
      'check that the patch is for this source tree, or give the strip level',
    { patchFile, files: names, bestStrip: best?.strip },
  );
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function filesOf(diffs: readonly FileDiff[], strip: number): PatchedFile[] {
  return diffs.map((d) => {
    const oldPath = d.oldName === undefined || d.created ? undefined : stripPath(d.oldName, strip);
    const newPath = d.newName === undefined || d.deleted ? undefined : stripPath(d.newName, strip);
    const path = newPath ?? oldPath;
    if (path === undefined) {
      throw new TspliceError('bad_input', `a file section of the patch has no usable name at -p${strip}`, { strip });
    }
    return {
      path: normalize(path),
      oldPath: oldPath === undefined ? undefined : normalize(oldPath),
      created: d.created,
      deleted: d.deleted,
      hunks: d.hunks,
    };
  });
}

interface RunResult {
  status: number;
  output: string;
}

function runPatch(treeDir: string, patchFile: string, strip: number, fuzz: number, dryRun: boolean): Promise<RunResult> {
  const args = [
    `-p${strip}`,
    `--fuzz=${fuzz}`,
    '--batch',
    '--forward',
    '--no-backup-if-mismatch',
    '--reject-file=-',
    '--quoting-style=literal',
    '-d',
    treeDir,
    '-i',
    patchFile,
  ];
  if (dryRun) args.unshift('--dry-run');
  return new Promise((resolve, reject) => {
    execFile('patch', args, { env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      if (err && typeof err.code !== 'number') {
        reject(
          new TspliceError('bad_input', `cannot run GNU patch (${err.message}): install the "patch" package`, {}),
        );
        return;
      }
      resolve({ status: err ? (err.code as number) : 0, output });
    });
  });
}

/** Failures from GNU patch's output (LC_ALL=C). */
export function parsePatchFailures(output: string): PatchFailure[] {
  const failures: PatchFailure[] = [];
  let current: string | undefined;
  let failed: PatchFailure | undefined;
  for (const line of output.split('\n')) {
    const file = /^(?:checking|patching) file (.+?)(?: \(renamed from .*\)| \(copied from .*\))?$/.exec(line);
    if (file) {
      current = file[1];
      failed = undefined;
      continue;
    }
    const hunk = /^Hunk #(\d+) FAILED at/.exec(line);
    if (hunk) {
      if (!failed) {
        failed = { file: current, hunks: [], reason: 'hunk_failed' };
        failures.push(failed);
      }
      failed.hunks.push(Number(hunk[1]));
      continue;
    }
    if (/^can't find file to patch/.test(line)) {
      failures.push({ file: undefined, hunks: [], reason: 'missing_file' });
      continue;
    }
    if (/^Reversed \(or previously applied\) patch detected/.test(line)) {
      failures.push({ file: current, hunks: [], reason: 'already_applied' });
    }
  }
  return failures;
}

function describeFailure(f: PatchFailure): string {
  const file = f.file ?? 'a file';
  switch (f.reason) {
    case 'hunk_failed':
      return `${file}: hunk${f.hunks.length > 1 ? 's' : ''} #${f.hunks.join(', #')} FAILED`;
    case 'missing_file':
      return 'a file to patch is missing';
    case 'already_applied':
      return `${file}: the patch seems already applied (or reversed)`;
    default:
      return `${file}: failed`;
  }
}

/**
 * Check that the patch applies to treeDir (GNU patch --dry-run): the tree is
 * not modified. Throws bad_input naming each failed file and hunk.
 */
export async function checkPatch(treeDir: string, patchFile: string, options: PatchOptions = {}): Promise<PatchPlan> {
  const diffs = readPatch(patchFile);
  const strip = options.strip ?? detectStrip(treeDir, diffs, patchFile);
  const fuzz = options.fuzz ?? 0;
  const files = filesOf(diffs, strip);
  const run = await runPatch(treeDir, patchFile, strip, fuzz, true);
  if (run.status !== 0) {
    const failures = parsePatchFailures(run.output);
    const what = failures.length > 0 ? failures.map(describeFailure).join('; ') : lastLines(run.output, 5);
    throw new TspliceError(
      'bad_input',
      `the patch ${patchFile} does not apply to ${treeDir} (-p${strip}): ${what}. ` +
        'Refresh the patch against this source version.',
      { patchFile, strip, failures, output: lastLines(run.output, 40) },
    );
  }
  const notes = run.output.split('\n').filter((l) => /^Hunk #\d+ succeeded/.test(l));
  return { patchFile, strip, files, notes };
}

/**
 * Apply the patch to treeDir: dry run first (tree untouched on failure), then
 * for real. Returns the files touched, each with its post→pre line mapping.
 */
export async function applyPatch(treeDir: string, patchFile: string, options: PatchOptions = {}): Promise<AppliedPatch> {
  const plan = await checkPatch(treeDir, patchFile, options);
  const before = new Map<string, string>();
  for (const f of plan.files) {
    if (f.oldPath !== undefined && existsSync(join(treeDir, f.oldPath))) {
      before.set(f.path, readFileSync(join(treeDir, f.oldPath), 'latin1'));
    }
  }
  const run = await runPatch(treeDir, patchFile, plan.strip, options.fuzz ?? 0, false);
  if (run.status !== 0) {
    // The dry run passed, so this is not the patch's fault (disk full, permissions...).
    throw new TspliceError('internal', `GNU patch failed after a successful dry run: ${lastLines(run.output, 10)}`, {
      patchFile,
      treeDir,
    });
  }
  const files: AppliedFile[] = [];
  for (const f of plan.files) {
    const pre = before.get(f.path);
    let lineMap: LineMap | undefined;
    if (!f.created && !f.deleted && pre !== undefined && existsSync(join(treeDir, f.path))) {
      const post = readFileSync(join(treeDir, f.path), 'latin1');
      lineMap = await lineMapOf(f.hunks, pre, post);
    }
    files.push({ ...f, lineMap });
  }
  return { patchFile, strip: plan.strip, notes: plan.notes, files };
}

/**
 * The post→pre mapping of one file: from its hunks when they describe the two
 * texts exactly, otherwise (hunks applied at an offset) from `diff` on the texts.
 */
export async function lineMapOf(hunks: readonly Hunk[], preText: string, postText: string): Promise<LineMap> {
  const preLines = splitLines(preText);
  const postLines = splitLines(postText);
  const fromHunks = lineMapFromHunks(hunks, postLines.length);
  if (validateLineMap(fromHunks, preLines, postLines)) return fromHunks;
  const fromDiff = lineMapFromHunks(await diffHunks(preText, postText), postLines.length);
  if (validateLineMap(fromDiff, preLines, postLines)) return fromDiff;
  throw new TspliceError('internal', 'could not relate the patched file to the original line by line', {});
}

async function diffHunks(preText: string, postText: string): Promise<Hunk[]> {
  const dir = mkdtempSync(join(tmpdir(), 'tsplice-diff-'));
  try {
    writeFileSync(join(dir, 'pre'), preText, 'latin1');
    writeFileSync(join(dir, 'post'), postText, 'latin1');
    const out = await new Promise<string>((resolve, reject) => {
      execFile('diff', ['-U0', join(dir, 'pre'), join(dir, 'post')], { maxBuffer: 256 << 20 }, (err, stdout) => {
        // diff exits 1 when the files differ.
        if (err && err.code !== 1) reject(new TspliceError('internal', `diff failed: ${err.message}`, {}));
        else resolve(stdout);
      });
    });
    return parseUnifiedDiff(out)[0]?.hunks ?? [];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function lastLines(text: string, n: number): string {
  const lines = text.trimEnd().split('\n');
  return lines.slice(-n).join('\n');
}
