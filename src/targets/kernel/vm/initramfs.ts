// The guest's root filesystem, as two concatenated newc cpio archives:
//
//  - a static part, cached: busybox, /init, the kernel modules the guest always
//    loads, node and its shared libraries (about 100 MB, almost all node);
//  - a per-run part: the tsplice project (package.json, bin/, dist/, production
//    node_modules) at its host path, the --copy paths at theirs, the command.
//
// The kernel unpacks both into its rootfs, so the guest needs no disk and no
// filesystem driver. The archives are not compressed: decompressing ~100 MB in
// an emulated CPU costs more boot time than copying the bytes does.

import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TspliceError } from '../../../errors.js';
import { CpioWriter } from './cpio.js';
import { GUEST_CONFIG_DIR, initScript, runScript } from './guest-init.js';
import { GuestTree, type SkipFilter } from './guest-tree.js';
import type { KernelImage } from './kernel-packages.js';
import { moduleLoadOrder } from './module-deps.js';

/** Bump when the layout of the static part changes, so cached archives are rebuilt. */
const STATIC_LAYOUT_VERSION = 2;

/** Modules every guest loads: virtio PCI transport and virtio-serial for the command's output. */
export const BASE_MODULES = ['virtio_pci', 'virtio_console'];

/** Where busybox-static puts its binary. */
const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];

export interface StaticInitramfsOptions {
  image: KernelImage;
  /** The node binary to run in the guest (default: the one running now). */
  node?: string;
  /** Directory where built archives are cached. */
  cacheDir: string;
}

/** PATH inside the guest: the usual directories, plus the one node is in on the host. */
export function guestPath(node: string): string {
  const dirs = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  const nodeDir = dirname(node);
  if (!dirs.includes(nodeDir)) dirs.push(nodeDir);
  return dirs.join(':');
}

/**
 * The static part, built once per (kernel, busybox, node, layout) and cached
 * under cacheDir/vm/. Returns the archive's path.
 */
export function ensureStaticInitramfs(options: StaticInitramfsOptions): string {
  const node = options.node ?? process.execPath;
  const busybox = findBusybox();
  const modules = moduleLoadOrder(options.image.modulesDir, BASE_MODULES);
  const init = initScript({ release: options.image.release, path: guestPath(node) });
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        layout: STATIC_LAYOUT_VERSION,
        kernel: options.image.release,
        kernelVersion: options.image.pin.version,
        modules,
        init,
        busybox: fileIdentity(busybox),
        node: fileIdentity(node),
      }),
    )
    .digest('hex')
    .slice(0, 16);
  const dir = join(options.cacheDir, 'vm');
  const archive = join(dir, `static-${key}.cpio`);
  if (existsSync(archive)) return archive;

  mkdirSync(dir, { recursive: true });
  const partial = `${archive}.${process.pid}.partial`;
  const cpio = new CpioWriter(partial);
  try {
    const tree = new GuestTree(cpio);
    for (const d of ['dev', 'proc', 'sys', 'run', 'root', 'etc', 'usr/local/bin']) cpio.directory(d);
    cpio.directory('tmp', 0o1777);
    cpio.charDevice('dev/console', 5, 1);
    cpio.charDevice('dev/null', 1, 3, 0o666);
    cpio.file('init', init, 0o755);
    cpio.file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
    cpio.file('etc/group', 'root:x:0:\n');
    cpio.file(`${GUEST_CONFIG_DIR.slice(1)}/modules`, modules.join('\n') + '\n');
    tree.addHostPath(busybox);
    if (busybox !== '/bin/busybox') cpio.symlink('bin/busybox', busybox);
    for (const ko of modules) {
      cpio.hostFile(join('lib/modules', options.image.release, ko), fileSource(join(options.image.modulesDir, ko)), 0o644);
    }
    tree.addHostPath(node);
    tree.addSharedLibraries(realpathSync(node));
    cpio.finish();
    renameSync(partial, archive);
  } catch (e) {
    cpio.abandon();
    rmSync(partial, { force: true });
    throw e;
  }
  removeStaleArchives(dir, basename(archive));
  return archive;
}

export interface RunInitramfsOptions {
  /** The cached static part, copied first. */
  staticArchive: string;
  /** The archive to write (static part + this run's part). */
  output: string;
  image: KernelImage;
  command: string[];
  /** Working directory of the command in the guest. */
  cwd: string;
  env: Record<string, string>;
  /** Host paths (files or directories) to put at the same path in the guest. */
  copy: string[];
  /** The tsplice project to put in the guest, if any (see findProjectFiles). */
  project?: ProjectFiles;
  /** More kernel modules to load before the command (names, dependencies resolved). */
  modules: string[];
}

/** Write the initramfs for one run. Returns its size in bytes. */
export function writeRunInitramfs(options: RunInitramfsOptions): number {
  copyFileSync(options.staticArchive, options.output);
  const cpio = new CpioWriter(options.output, { append: true });
  try {
    const tree = new GuestTree(cpio);
    if (options.project) {
      for (const path of options.project.paths) tree.addHostPath(path, options.project.skip);
      if (options.project.bin) cpio.symlink('usr/local/bin/tsplice', options.project.bin);
    }
    for (const path of options.copy) tree.addHostPath(path);
    const extra = moduleLoadOrder(options.image.modulesDir, options.modules);
    for (const ko of extra) {
      cpio.hostFile(join('lib/modules', options.image.release, ko), fileSource(join(options.image.modulesDir, ko)), 0o644);
    }
    cpio.file(`${GUEST_CONFIG_DIR.slice(1)}/modules.extra`, extra.map((ko) => `${ko}\n`).join(''));
    cpio.file(`${GUEST_CONFIG_DIR.slice(1)}/run.sh`, runScript(options), 0o755);
    cpio.finish();
  } catch (e) {
    cpio.abandon();
    throw e;
  }
  return statSync(options.output).size;
}

/** The parts of the tsplice project a guest needs to run `tsplice` or `node dist/...`. */
export interface ProjectFiles {
  root: string;
  /** Host paths to copy. */
  paths: string[];
  /** Leaves out development-only packages under node_modules. */
  skip: SkipFilter;
  /** The CLI entry point, when present. */
  bin?: string;
}

/**
 * The project that contains this file: package.json, bin/, dist/ (when built)
 * and node_modules without the packages package-lock.json marks as dev-only.
 */
export function findProjectFiles(startDir: string, includeDevDependencies = false): ProjectFiles | undefined {
  let root = startDir;
  while (!existsSync(join(root, 'package.json')) || !isTsplice(join(root, 'package.json'))) {
    const parent = dirname(root);
    if (parent === root) return undefined;
    root = parent;
  }
  const paths = ['package.json', 'bin', 'dist', 'node_modules']
    .map((name) => join(root, name))
    .filter((path) => existsSync(path));
  const devOnly = includeDevDependencies ? new Set<string>() : devOnlyPackages(root);
  const skip: SkipFilter = (hostPath) => devOnly.has(hostPath) || basename(hostPath) === '.cache';
  const bin = join(root, 'bin', 'tsplice.mjs');
  return { root, paths, skip, bin: existsSync(bin) ? bin : undefined };
}

function isTsplice(packageJson: string): boolean {
  try {
    return (JSON.parse(readFileSync(packageJson, 'utf8')) as { name?: string }).name === 'tsplice';
  } catch {
    return false;
  }
}

/** Absolute paths of installed packages that only development needs, from package-lock.json. */
function devOnlyPackages(root: string): Set<string> {
  const result = new Set<string>();
  let lock: { packages?: Record<string, { dev?: boolean; devOptional?: boolean }> };
  try {
    lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as typeof lock;
  } catch {
    return result; // no lock file: copy everything installed
  }
  for (const [path, info] of Object.entries(lock.packages ?? {})) {
    if (path && (info.dev || info.devOptional)) result.add(join(root, path));
  }
  // Links npm makes for dev tools (tsc, eslint) would only dangle.
  result.add(join(root, 'node_modules', '.bin'));
  return result;
}

function findBusybox(): string {
  for (const path of BUSYBOX_CANDIDATES) if (existsSync(path)) return path;
  throw new TspliceError('bad_input', 'busybox was not found: install it with "apt-get install busybox-static"', {
    missing: 'busybox',
  });
}

function fileIdentity(path: string): { path: string; size: number; mtimeMs: number } {
  const real = realpathSync(path);
  const stats = statSync(real);
  return { path: real, size: stats.size, mtimeMs: stats.mtimeMs };
}

function fileSource(hostPath: string): { hostPath: string; size: number } {
  return { hostPath, size: statSync(hostPath).size };
}

/** Remove cached static archives of other keys (an old node or kernel). */
function removeStaleArchives(dir: string, keep: string): void {
  for (const name of readdirSync(dir)) {
    if (name !== keep && /^static-[0-9a-f]+\.cpio$/.test(name)) rmSync(join(dir, name), { force: true });
  }
}
