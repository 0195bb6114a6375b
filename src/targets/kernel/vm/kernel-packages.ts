// The one distribution kernel the kernel tests run, and how its Debian
// packages are fetched: `apt-get download` into a cache directory, unpacked
// with `dpkg-deb -x` (nothing is installed on the host), reused on later runs.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TspliceError } from '../../../errors.js';
import type { ProgressSink } from './progress.js';

const execFileAsync = promisify(execFile);

/** One Debian kernel build: its ABI name, flavour and the Debian version of its source. */
export interface KernelPin {
  /** The ABI part of the package names, e.g. "6.1.0-50". */
  abi: string;
  /** The build flavour, e.g. "cloud-amd64". */
  flavour: string;
  /** The Debian version of the linux source package that built it, e.g. "6.1.176-1". */
  version: string;
}

/**
 * The pinned kernel: Debian 12's 6.1.0-50-cloud-amd64, built from linux 6.1.176-1.
 * Why this one: it is the version in the bookworm point release (main), and the
 * same version is also in bookworm-security, so it is the one most likely to stay
 * downloadable; linux-source-6.1, linux-headers-6.1.0-50-*, linux-kbuild-6.1 and
 * linux-image-6.1.0-50-cloud-amd64(-dbg) all exist at exactly 6.1.176-1 (the
 * security-only versions 6.1.177 .. 6.1.190 have no matching linux-source in the
 * archive). Being older than the newest security update is intended: the fixes
 * released since then are real patches to test live patching with.
 * To move to another kernel, change this constant only (keep it on one line:
 * scripts/kernel-deps.sh reads it).
 */
export const KERNEL_PIN: KernelPin = { abi: '6.1.0-50', flavour: 'cloud-amd64', version: '6.1.176-1' };

/** The `uname -r` of the pinned kernel, e.g. "6.1.0-50-cloud-amd64". */
export function kernelRelease(pin: KernelPin = KERNEL_PIN): string {
  return `${pin.abi}-${pin.flavour}`;
}

/** Debian package names (at pin.version) of the pieces a kernel test may need. */
export function kernelPackageNames(pin: KernelPin = KERNEL_PIN): {
  /** vmlinuz, config, modules; the signed build, as installed on real machines. */
  image: string;
  /** Flavour-specific headers: .config, Module.symvers, generated headers. */
  headers: string;
  headersCommon: string;
  /** Host tools of kbuild (fixdep, modpost, objtool...), versioned by the source package. */
  kbuild: string;
  /** The full source tree as one tar.xz, Debian patches applied. */
  source: string;
  /** The unstripped vmlinux, System.map and debug info of every module (large). */
  debug: string;
} {
  const release = kernelRelease(pin);
  const series = pin.abi.split('.').slice(0, 2).join('.');
  return {
    image: `linux-image-${release}`,
    headers: `linux-headers-${release}`,
    headersCommon: `linux-headers-${pin.abi}-common`,
    kbuild: `linux-kbuild-${series}`,
    source: `linux-source-${series}`,
    debug: `linux-image-${release}-dbg`,
  };
}

export interface KernelCacheOptions {
  pin?: KernelPin;
  /** Where downloads are kept; default $TSPLICE_CACHE, else $XDG_CACHE_HOME/tsplice, else ~/.cache/tsplice. */
  cacheDir?: string;
  progress?: ProgressSink;
}

/** The cache root: $TSPLICE_CACHE, else $XDG_CACHE_HOME/tsplice, else ~/.cache/tsplice. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSPLICE_CACHE) return env.TSPLICE_CACHE;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'tsplice');
  return join(homedir(), '.cache', 'tsplice');
}

/**
 * Download the named packages at the pinned version and unpack them together
 * into one directory (so relative symlinks between them resolve), once; later
 * calls return the cached directory. Safe against concurrent callers: the tree
 * is made in a private directory and renamed into place.
 */
export async function ensureKernelPackages(key: string, packages: string[], options: KernelCacheOptions = {}): Promise<string> {
  const pin = options.pin ?? KERNEL_PIN;
  const versionDir = join(options.cacheDir ?? defaultCacheDir(), 'kernel', pin.version);
  const root = join(versionDir, key);
  if (existsSync(join(root, '.complete'))) return root;

  mkdirSync(versionDir, { recursive: true });
  const work = mkdtempSync(join(versionDir, `.${key}-`));
  try {
    const debs = join(work, 'debs');
    const tree = join(work, 'tree');
    mkdirSync(debs);
    mkdirSync(tree);
    const started = Date.now();
    options.progress?.(`downloading ${packages.join(', ')} (Debian ${pin.version})`);
    await run('apt-get', ['download', ...packages.map((p) => `${p}=${pin.version}`)], debs, downloadHint(packages, pin));
    let bytes = 0;
    for (const deb of readdirSync(debs).filter((f) => f.endsWith('.deb'))) {
      bytes += statSync(join(debs, deb)).size;
      await run('dpkg-deb', ['-x', join(debs, deb), tree], debs, 'dpkg-deb is part of dpkg; is this a Debian system?');
    }
    options.progress?.(`downloaded ${(bytes / 1e6).toFixed(1)} MB in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    writeFileSync(join(tree, '.complete'), JSON.stringify({ packages, version: pin.version, bytes }) + '\n');
    try {
      renameSync(tree, root);
    } catch (e) {
      // Another process finished first: use its tree.
      if (!existsSync(join(root, '.complete'))) throw e;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return root;
}

/** The pinned kernel image, unpacked. */
export interface KernelImage {
  pin: KernelPin;
  /** `uname -r` inside the guest. */
  release: string;
  /** The unpacked package tree. */
  root: string;
  /** bzImage to boot. */
  vmlinuz: string;
  /** The build configuration (/boot/config-RELEASE). */
  config: string;
  /** /lib/modules/RELEASE inside root. */
  modulesDir: string;
}

/**
 * Fetch the pinned linux-image package (about 26 MB): kernel, config and modules.
 * Its /boot/System.map is a placeholder in Debian: the real one is in the -dbg
 * package (about 280 MB), which only kernelDebugSymbols() downloads.
 */
export async function ensureKernelImage(options: KernelCacheOptions = {}): Promise<KernelImage> {
  const pin = options.pin ?? KERNEL_PIN;
  const release = kernelRelease(pin);
  const root = await ensureKernelPackages('image', [kernelPackageNames(pin).image], options);
  const image: KernelImage = {
    pin,
    release,
    root,
    vmlinuz: join(root, 'boot', `vmlinuz-${release}`),
    config: join(root, 'boot', `config-${release}`),
    modulesDir: join(root, 'lib', 'modules', release),
  };
  for (const path of [image.vmlinuz, image.config, image.modulesDir]) {
    if (!existsSync(path)) {
      throw new TspliceError('bad_input', `the kernel package for ${release} has no ${path}; remove ${root} and try again`, {
        path,
      });
    }
  }
  return image;
}

/** Headers to build out-of-tree modules (livepatch modules) for the pinned kernel. */
export interface KernelHeaders {
  /** Pass as `make -C buildDir M=...`. */
  buildDir: string;
  release: string;
}

/**
 * Fetch linux-headers-RELEASE, its -common part and linux-kbuild (about 13 MB)
 * and make the tree usable where it was unpacked: Debian's flavour Makefile
 * includes the -common Makefile by its absolute /usr/src path.
 */
export async function ensureKernelHeaders(options: KernelCacheOptions = {}): Promise<KernelHeaders> {
  const pin = options.pin ?? KERNEL_PIN;
  const names = kernelPackageNames(pin);
  const release = kernelRelease(pin);
  const root = await ensureKernelPackages('headers', [names.headers, names.headersCommon, names.kbuild], options);
  const buildDir = join(root, 'usr', 'src', `linux-headers-${release}`);
  const makefile = join(buildDir, 'Makefile');
  const text = readFileSync(makefile, 'utf8');
  // Whole paths up to their last /usr/src/, so running this again (or on a tree an older version rewrote
  // more than once) leaves exactly one cache prefix.
  const relocated = text.replace(/(^|[\s'"=:])[^\s'"=:]*\/usr\/src\//gm, `$1${join(root, 'usr', 'src')}/`);
  if (relocated !== text) writeFileSync(makefile, relocated);
  return { buildDir, release };
}

/** The pinned kernel's source, as Debian ships it (a tar.xz of the patched tree, about 139 MB). */
export async function ensureKernelSourceTarball(options: KernelCacheOptions = {}): Promise<string> {
  const pin = options.pin ?? KERNEL_PIN;
  const names = kernelPackageNames(pin);
  const root = await ensureKernelPackages('source', [names.source], options);
  const dir = join(root, 'usr', 'src');
  const tarball = readdirSync(dir).find((f) => /^linux-source-.*\.tar\.xz$/.test(f));
  if (!tarball) throw new TspliceError('bad_input', `${names.source} ${pin.version} has no source tarball in ${dir}`);
  return join(dir, tarball);
}

/**
 * The real System.map and unstripped vmlinux of the pinned kernel, from the -dbg
 * package (about 280 MB download, 1.7 GB unpacked): only for callers that need
 * symbols without booting the kernel.
 */
export async function kernelDebugSymbols(options: KernelCacheOptions = {}): Promise<{ systemMap: string; vmlinux: string }> {
  const pin = options.pin ?? KERNEL_PIN;
  const release = kernelRelease(pin);
  const root = await ensureKernelPackages('debug', [kernelPackageNames(pin).debug], options);
  return {
    systemMap: join(root, 'usr', 'lib', 'debug', 'boot', `System.map-${release}`),
    vmlinux: join(root, 'usr', 'lib', 'debug', 'boot', `vmlinux-${release}`),
  };
}

function downloadHint(packages: string[], pin: KernelPin): string {
  return (
    `could not download ${packages.join(', ')} at version ${pin.version}. ` +
    `Run "apt-get update" (the package lists may be missing or old); if the version is gone from the Debian archive, ` +
    `change KERNEL_PIN in src/targets/kernel/vm/kernel-packages.ts to one that "apt-cache policy ${packages[0]}" lists`
  );
}

async function run(command: string, args: string[], cwd: string, hint: string): Promise<void> {
  try {
    await execFileAsync(command, args, { cwd, maxBuffer: 16 << 20 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') {
      throw new TspliceError('bad_input', `${command} was not found: ${hint}`, { command });
    }
    const stderr = (err.stderr ?? '').trim().split('\n').filter((l) => !l.includes('unsandboxed')).slice(-5).join('\n');
    throw new TspliceError('bad_input', `${hint}\n${command} said: ${stderr}`, { command, args });
  }
}
