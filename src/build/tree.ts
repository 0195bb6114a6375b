// Source tree copies and build runs.

import { spawn } from 'node:child_process';
import { closeSync, lstatSync, mkdirSync, openSync, readSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { TspliceError } from '../errors.js';
import type { Progress } from '../progress.js';

/** Entries of a tree's top level that are never copied (version control). */
const SKIPPED_TOP_LEVEL = new Set(['.git', '.hg', '.svn']);

function run(cmd: string, args: string[]): Promise<{ status: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ status: code ?? (signal ? 128 : 1), output }));
  });
}

/**
 * Copy a tree (without its .git) to dst with `cp -a`: modes, symlinks and
 * nanosecond mtimes are kept, which is what lets make in a copy of a built tree
 * rebuild only what a patch touched.
 */
export async function copyTree(src: string, dst: string): Promise<void> {
  mkdirSync(dst, { recursive: true });
  const entries = readdirSync(src).filter((e) => !SKIPPED_TOP_LEVEL.has(e));
  if (entries.length === 0) return;
  const result = await run('cp', ['-a', '--reflink=auto', '--', ...entries.map((e) => join(src, e)), `${dst}/`]);
  if (result.status !== 0) {
    throw new TspliceError('bad_input', `cannot copy ${src} to ${dst}: ${result.output.trim()}`, { src, dst });
  }
}

/** True for an ELF file or an ar archive: something a build makes. */
function isBuildProduct(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const head = Buffer.alloc(8);
    const n = readSync(fd, head, 0, 8, 0);
    if (n >= 4 && head.readUInt32BE(0) === 0x7f454c46) return true;
    const magic = head.toString('latin1');
    return n === 8 && (magic === '!<arch>\n' || magic === '!<thin>\n');
  } finally {
    closeSync(fd);
  }
}

/**
 * In a fresh copy of a source dir that may already have been built, date every
 * build product (ELF files, archives) back to 1970, so that its build remakes
 * (and so records) every one it has a rule for. Products are not deleted: a
 * prebuilt library shipped with the source must stay usable. Returns how many
 * files were aged.
 */
export function ageBuildProducts(dir: string): number {
  let aged = 0;
  const old = new Date(1000);
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) {
        if (!SKIPPED_TOP_LEVEL.has(entry.name)) walk(path);
      } else if (entry.isFile() && isBuildProduct(path)) {
        utimesSync(path, old, old);
        aged++;
      }
    }
  };
  walk(dir);
  return aged;
}

/**
 * Make sure each file is newer than `than` (ms since the epoch), so make sees
 * it as changed even on a file system with coarse timestamps.
 */
export function ensureNewer(paths: readonly string[], than: number): void {
  for (const path of paths) {
    let mtime: number;
    try {
      if (lstatSync(path).isSymbolicLink()) continue;
      mtime = statSync(path).mtimeMs;
    } catch {
      continue;
    }
    if (mtime <= than) {
      const t = new Date(Math.ceil(than) + 1000);
      utimesSync(path, t, t);
    }
  }
}

export interface BuildRun {
  status: number;
  /** The end of the build's combined stdout/stderr. */
  tail: string;
}

const TAIL_BYTES = 64 * 1024;

/** Run a build command with sh in dir; output is kept (the tail) for error messages. */
export function runBuild(
  command: string,
  dir: string,
  env: NodeJS.ProcessEnv,
  progress: Progress,
): Promise<BuildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const take = (d: Buffer): void => {
      tail += d.toString();
      if (tail.length > 2 * TAIL_BYTES) tail = tail.slice(-TAIL_BYTES);
      const lines = tail.trimEnd().split('\n');
      progress.detail(lines[lines.length - 1] ?? '');
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (e) =>
      reject(new TspliceError('bad_input', `cannot run the build command "${command}": ${e.message}`, { command })),
    );
    child.on('close', (code, signal) => resolve({ status: code ?? (signal ? 128 : 1), tail: tail.slice(-TAIL_BYTES) }));
  });
}
