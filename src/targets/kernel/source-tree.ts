// The pinned kernel's source, prepared for building single objects: Debian's
// linux-source tarball extracted, the image's /boot/config installed,
// `olddefconfig` + `prepare` + `modules_prepare` run with the distribution's
// compiler. Made once per pin in the cache and never written to afterwards:
// builds happen in hard-linked copies (see work-tree.ts).

import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TspliceError } from '../../errors.js';
import {
  defaultCacheDir, ensureKernelImage, ensureKernelSourceTarball, KERNEL_PIN, kernelRelease, type KernelCacheOptions,
} from './vm/kernel-packages.js';

/** The compiler Debian 12 built its 6.1 kernels with: objects must be made by the same one to match. */
export const KERNEL_CC = 'gcc-12';

export interface PreparedTree {
  /** Root of the prepared source tree (read-only by convention). */
  dir: string;
  /** `uname -r` of the kernel it builds for. */
  release: string;
  /** The .config the tree was prepared with (the image's /boot/config). */
  config: string;
  /** Seconds the preparation took when it was done by this call; 0 when it came from the cache. */
  preparedSeconds: number;
}

/** Arguments every kbuild invocation in a prepared tree gets. */
export function kbuildArgs(release: string): string[] {
  // KERNELRELEASE as Debian's build sets it: it ends up in utsrelease.h and vermagic.
  // KCFLAGS here too, not only for the objects: what `prepare` made with them
  // (asm-offsets) then stays up to date in the hard-linked work trees and is
  // never rewritten in place.
  return [`CC=${KERNEL_CC}`, `KERNELRELEASE=${release}`, `KCFLAGS=${OBJECT_CFLAGS.join(' ')}`];
}

/** One section per function and per variable, so the diff and the module generator can pick them out. */
export const OBJECT_CFLAGS = ['-ffunction-sections', '-fdata-sections'];

/**
 * The prepared tree for the pinned kernel, made on first use (about 30 s on two
 * cores: extract, olddefconfig, prepare). A `config` other than the image's
 * gets its own tree, keyed by the file name it was given.
 */
export async function ensurePreparedTree(options: KernelCacheOptions & { config?: string } = {}): Promise<PreparedTree> {
  const pin = options.pin ?? KERNEL_PIN;
  const release = kernelRelease(pin);
  const versionDir = join(options.cacheDir ?? defaultCacheDir(), 'kernel', pin.version);
  const key = options.config ? `tree-custom-${Buffer.from(options.config).toString('hex').slice(-24)}` : 'tree';
  const root = join(versionDir, key);
  const dir = join(root, 'linux');
  const complete = join(root, '.complete');
  const image = await ensureKernelImage(options);
  const config = options.config ?? image.config;
  if (existsSync(complete)) return { dir, release, config, preparedSeconds: 0 };

  const started = Date.now();
  const tarball = await ensureKernelSourceTarball(options);
  mkdirSync(versionDir, { recursive: true });
  const work = mkdtempSync(join(versionDir, `.${key}-`));
  try {
    options.progress?.(`extracting ${tarball}`);
    await runTool('tar', ['xf', tarball, '-C', work], work, 'extracting the kernel source');
    const top = readdirSync(work).find((name) => name.startsWith('linux-source'));
    if (!top) throw new TspliceError('bad_input', `${tarball} holds no linux-source-* directory`);
    const src = join(work, top);
    if (!existsSync(config)) throw new TspliceError('bad_input', `kernel config ${config} does not exist`);
    copyFileSync(config, join(src, '.config'));
    const args = kbuildArgs(release);
    options.progress?.('make olddefconfig');
    await runTool('make', [...args, 'olddefconfig'], src, 'configuring the kernel source');
    options.progress?.('make prepare modules_prepare (about 20 s)');
    await runTool('make', [...args, '-j2', 'prepare', 'modules_prepare'], src, 'preparing the kernel source');
    const staged = join(work, 'staged');
    mkdirSync(staged);
    renameSync(src, join(staged, 'linux'));
    const preparedSeconds = (Date.now() - started) / 1000;
    writeFileSync(join(staged, '.complete'), JSON.stringify({ release, config, preparedSeconds }) + '\n');
    try {
      renameSync(staged, root);
    } catch (e) {
      if (!existsSync(complete)) throw e; // another process finished first: use its tree
    }
    options.progress?.(`prepared the source tree in ${preparedSeconds.toFixed(1)} s`);
    return { dir, release, config, preparedSeconds };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface ToolResult {
  stdout: string;
  stderr: string;
}

/**
 * Run a build tool; on failure a TspliceError with the end of its output.
 * `code` is bad_input by default (a patch that does not compile is the input's fault).
 */
export function runTool(command: string, args: string[], cwd: string, what: string,
  options: { env?: NodeJS.ProcessEnv; code?: 'bad_input' | 'internal' } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(new TspliceError('bad_input', `${what}: ${command} could not be run (${e.code ?? e.message}); ` +
        'install the kernel build dependencies (scripts/kernel-deps.sh)', { command }));
    });
    child.on('close', (status) => {
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      if (status === 0) {
        resolve({ stdout, stderr });
        return;
      }
      const tail = (stderr + stdout).trim().split('\n').slice(-25).join('\n');
      reject(new TspliceError(options.code ?? 'bad_input',
        `${what} failed (${command} ${args.join(' ')} in ${cwd} exited with ${status}):\n${tail}`, { command, args, cwd }));
    });
  });
}
