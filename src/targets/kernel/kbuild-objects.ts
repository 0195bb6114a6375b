// Pre, post and "lines" objects of only the files a kernel patch changes,
// built with kbuild in a hard-linked copy of the prepared tree (so the cached
// tree stays pristine: GNU patch and our own writes replace files instead of
// writing through the links, and kbuild writes new objects).

import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { promisify } from 'node:util';
import { insertLineDirectives } from '../../build/lines.js';
import { applyPatch, checkPatch } from '../../build/patch.js';
import { TspliceError } from '../../errors.js';
import type { Progress } from '../../progress.js';
import { kbuildArgs, type PreparedTree, runTool } from './source-tree.js';

const execFileAsync = promisify(execFile);

/** The linked object a translation unit ends up in: the kernel image or a loadable module. */
export type KernelObjectName = 'vmlinux' | string;

export interface KernelUnit {
  /** Source path in the tree, e.g. "fs/proc/cmdline.c". */
  source: string;
  /** Object path in the tree, e.g. "fs/proc/cmdline.o". */
  object: string;
  /** "vmlinux", or the module (KBUILD_MODNAME, e.g. "nfs") the object is linked into. */
  target: KernelObjectName;
  /** Copies of the objects, outside the tree; pre is absent for a file the patch creates. */
  preObject?: string;
  postObject: string;
  /** Post source with pre line numbers (#line), for telling __LINE__ moves from real changes. */
  linesObject: string;
}

export interface KernelObjects {
  /** The work tree (patched). */
  treeDir: string;
  units: KernelUnit[];
  /** Paths the patch touches, relative to the tree. */
  patchedFiles: string[];
}

export interface BuildKernelObjectsOptions {
  tree: PreparedTree;
  patchFile: string;
  /** An empty directory for the work tree and the object copies. */
  workDir: string;
  progress: Progress;
}

/** Files a patch may touch without changing any object: documentation and the like. */
const NO_CODE = /^(Documentation\/|LICENSES\/|.*\.(rst|txt|md)$|MAINTAINERS$|CREDITS$)/;

/** Build pre/post/lines objects of every C file the patch changes. */
export async function buildKernelObjects(options: BuildKernelObjectsOptions): Promise<KernelObjects> {
  const { tree, patchFile, workDir, progress } = options;
  const treeDir = join(workDir, 'linux');
  progress.step('copying the prepared kernel tree (hard links)');
  await execFileAsync('cp', ['-al', tree.dir, treeDir], { maxBuffer: 16 << 20 });
  // Dependency files are rewritten in place (`>`), unlike objects: give the work tree its own copies.
  const { stdout } = await execFileAsync('find', [treeDir, '-type', 'f', '(', '-name', '*.cmd', '-o', '-name', '*.d', ')'],
    { maxBuffer: 64 << 20 });
  for (const path of stdout.split('\n').filter(Boolean)) breakLink(path);

  const plan = await checkPatch(treeDir, patchFile);
  const sources = checkPatchedFiles(plan.files.map((f) => ({ path: f.path, created: f.created, deleted: f.deleted })));
  const objects = sources.map((s) => s.path.replace(/\.c$/, '.o'));
  const args = kbuildArgs(tree.release);

  const existing = sources.filter((s) => !s.created).map((s) => s.path.replace(/\.c$/, '.o'));
  if (existing.length > 0) {
    progress.step(`building the pre objects (${existing.join(', ')})`);
    await make(treeDir, args, existing, 'building the unpatched kernel objects');
  }
  const preCopies = new Map<string, string>();
  for (const object of existing) preCopies.set(object, keepCopy(treeDir, object, join(workDir, 'pre')));

  progress.step('applying the patch');
  for (const f of plan.files) breakLink(join(treeDir, f.path));
  const applied = await applyPatch(treeDir, patchFile, { strip: plan.strip });

  progress.step(`building the post objects (${objects.join(', ')})`);
  await make(treeDir, args, objects, 'building the patched kernel objects');
  const postCopies = new Map<string, string>();
  const targets = new Map<string, KernelObjectName>();
  for (const object of objects) {
    postCopies.set(object, keepCopy(treeDir, object, join(workDir, 'post')));
    targets.set(object, linkedInto(treeDir, object));
  }

  // The lines build: only files whose line numbers moved need one; the others reuse post.
  const linesCopies = new Map<string, string>();
  const renumbered: string[] = [];
  for (const f of applied.files) {
    if (!f.lineMap || !f.path.endsWith('.c')) continue;
    const path = join(treeDir, f.path);
    const post = readFileSync(path, 'latin1');
    const lines = insertLineDirectives(post, f.lineMap);
    if (lines === post) continue;
    breakLink(path);
    writeFileSync(path, lines, 'latin1');
    renumbered.push(f.path.replace(/\.c$/, '.o'));
  }
  if (renumbered.length > 0) {
    progress.step(`building with the old line numbers (${renumbered.join(', ')})`);
    await make(treeDir, args, renumbered, 'building the patched objects with the old line numbers');
    for (const object of renumbered) linesCopies.set(object, keepCopy(treeDir, object, join(workDir, 'lines')));
  }
  progress.done();

  const units = sources.map((s, i): KernelUnit => {
    const object = objects[i];
    const post = postCopies.get(object) as string;
    return {
      source: s.path,
      object,
      target: targets.get(object) as string,
      ...(preCopies.has(object) ? { preObject: preCopies.get(object) } : {}),
      postObject: post,
      linesObject: linesCopies.get(object) ?? post,
    };
  });
  return { treeDir, units, patchedFiles: plan.files.map((f) => f.path) };
}

interface PatchedPath {
  path: string;
  created: boolean;
  deleted: boolean;
}

/** The C files to rebuild; refuse what a livepatch cannot carry, before anything is built. */
export function checkPatchedFiles(files: PatchedPath[]): PatchedPath[] {
  const sources: PatchedPath[] = [];
  for (const f of files) {
    if (NO_CODE.test(f.path)) continue;
    const ext = extname(f.path);
    if (ext === '.S' || ext === '.s') {
      throw new TspliceError('unsupported_change',
        `the patch changes the assembly file ${f.path}: assembly code has no function sections or ftrace entry a ` +
        'livepatch can redirect; such a fix needs a reboot (or a C wrapper that replaces its callers)', { file: f.path });
    }
    if (ext === '.h') {
      throw new TspliceError('unsupported_change',
        `the patch changes the header ${f.path}: every file that includes it would have to be rebuilt and ` +
        'compared, which tsplice does not do yet; move the change into the .c files that need it', { file: f.path });
    }
    if (ext !== '.c') {
      throw new TspliceError('unsupported_change',
        `the patch changes ${f.path}, which is not C source: build files and configuration cannot change in a ` +
        'running kernel', { file: f.path });
    }
    if (f.deleted) {
      throw new TspliceError('unsupported_change', `the patch deletes ${f.path}: removing a whole file cannot be ` +
        'done in a running kernel', { file: f.path });
    }
    sources.push(f);
  }
  if (sources.length === 0) {
    throw new TspliceError('bad_input', 'the patch changes no C source file of the kernel: there is nothing to apply');
  }
  return sources;
}

async function make(treeDir: string, args: string[], objects: string[], what: string): Promise<void> {
  await runTool('make', [...args, '-j2', ...objects], treeDir, what);
  for (const object of objects) {
    if (!existsSync(join(treeDir, object))) {
      throw new TspliceError('bad_input', `${what}: kbuild made no ${object}; is its source file part of the kernel ` +
        'build (a Makefile entry for it)?', { object });
    }
  }
}

function keepCopy(treeDir: string, object: string, into: string): string {
  const to = join(into, object);
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(join(treeDir, object), to);
  return to;
}

/** Replace a hard link by a private copy, so writing to it leaves the cached tree alone. */
function breakLink(path: string): void {
  if (!existsSync(path)) return;
  const data = readFileSync(path);
  unlinkSync(path);
  writeFileSync(path, data);
}

/**
 * Where kbuild put the object: its command line (.file.o.cmd) has -DMODULE and
 * KBUILD_MODNAME for objects of a loadable module.
 */
export function linkedInto(treeDir: string, object: string): KernelObjectName {
  const cmd = join(treeDir, dirname(object), `.${object.split('/').pop() as string}.cmd`);
  if (!existsSync(cmd)) throw new TspliceError('internal', `kbuild left no command file ${cmd} for ${object}`);
  const line = readFileSync(cmd, 'utf8').split('\n')[0] ?? '';
  if (!/\s-DMODULE(\s|$)/.test(line)) return 'vmlinux';
  const name = /-DKBUILD_MODNAME='"([^"]+)"'/.exec(line)?.[1];
  if (!name) throw new TspliceError('internal', `${cmd}: a module object without KBUILD_MODNAME`);
  return name;
}
