// Host files placed in the guest at the same path they have on the host. Each
// symlinked component of a path is reproduced as a symlink (so /lib64 →
// usr/lib64 on a merged-/usr host stays one), and dynamically linked
// programs bring the shared libraries ldd says they load.

import { execFileSync } from 'node:child_process';
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { TspliceError } from '../../../errors.js';
import type { CpioWriter } from './cpio.js';

/** Made in every guest, mirroring the host where it has them. */
const TOP_LEVEL_DIRECTORIES = ['usr/bin', 'usr/sbin', 'usr/lib', 'bin', 'sbin', 'lib', 'lib64'];

/** As the kernel's ELOOP limit. */
const MAX_SYMLINKS = 40;

/** Decides whether to leave out a host path met while copying a directory. */
export type SkipFilter = (hostPath: string, stats: Stats) => boolean;

export class GuestTree {
  private readonly librariesDone = new Set<string>();

  /**
   * Starts with the top-level directories as the host has them: on a
   * merged-/usr host /bin, /sbin, /lib and /lib64 are symlinks into /usr, and
   * every archive must agree, because the kernel replaces a symlink by a
   * directory when a later archive lists the same name as a directory.
   */
  constructor(private readonly cpio: CpioWriter) {
    for (const name of TOP_LEVEL_DIRECTORIES) {
      const path = `/${name}`;
      if (cpio.has(path)) continue;
      let stats: Stats | undefined;
      try {
        stats = lstatSync(path);
      } catch {
        stats = undefined;
      }
      if (stats?.isSymbolicLink()) {
        const target = readlinkSync(path);
        cpio.directory(resolve('/', target));
        cpio.symlink(path, target);
      } else {
        cpio.directory(path);
      }
    }
  }

  /**
   * Put a host path in the guest at the same path. A directory brings its
   * contents (symlinks inside it are kept as symlinks, not followed); a
   * symlink brings its target too. ELF programs and libraries found on the way
   * bring the shared libraries they need.
   */
  addHostPath(hostPath: string, skip?: SkipFilter, symlinksFollowed = 0): void {
    if (!isAbsolute(hostPath)) throw new TspliceError('bad_input', `not an absolute path: ${hostPath}`);
    if (symlinksFollowed > MAX_SYMLINKS) {
      throw new TspliceError('bad_input', `too many levels of symbolic links in ${hostPath}`, { path: hostPath });
    }
    const parts = resolve(hostPath).split('/').filter(Boolean);
    let current = '';
    for (let i = 0; i < parts.length; i++) {
      current = `${current}/${parts[i]}`;
      const stats = statOrThrow(current);
      const last = i === parts.length - 1;
      if (stats.isSymbolicLink()) {
        const target = readlinkSync(current);
        if (!this.cpio.has(current)) this.cpio.symlink(current, target);
        const rest = parts.slice(i + 1).join('/');
        const followed = resolve(dirname(current), target, rest);
        if (followed !== current) this.addHostPath(followed, skip, symlinksFollowed + 1);
        return;
      }
      if (!last) {
        if (!stats.isDirectory()) throw new TspliceError('bad_input', `${current} is not a directory (in ${hostPath})`);
        if (!this.cpio.has(current)) this.cpio.directory(current, stats.mode);
        continue;
      }
      this.addEntry(current, stats, skip);
    }
  }

  /** The shared libraries (and the dynamic loader) a program needs, as ldd reports them. */
  addSharedLibraries(elfPath: string): void {
    if (this.librariesDone.has(elfPath)) return;
    this.librariesDone.add(elfPath);
    for (const library of sharedLibraries(elfPath)) this.addHostPath(library);
  }

  private addEntry(path: string, stats: Stats, skip?: SkipFilter): void {
    if (skip?.(path, stats)) return;
    if (stats.isDirectory()) {
      if (!this.cpio.has(path)) this.cpio.directory(path, stats.mode);
      for (const name of readdirSync(path).sort()) {
        const child = join(path, name);
        const childStats = lstatSync(child);
        if (childStats.isSymbolicLink()) {
          if (!skip?.(child, childStats) && !this.cpio.has(child)) this.cpio.symlink(child, readlinkSync(child));
        } else {
          this.addEntry(child, childStats, skip);
        }
      }
    } else if (stats.isFile()) {
      if (this.cpio.has(path)) return;
      this.cpio.hostFile(path, { hostPath: path, size: stats.size }, stats.mode);
      if (isDynamicElf(path, stats)) this.addSharedLibraries(path);
    }
    // Sockets, FIFOs and device nodes are not copied: devtmpfs provides devices.
  }
}

function statOrThrow(path: string): Stats {
  try {
    return lstatSync(path);
  } catch {
    throw new TspliceError('bad_input', `${path} does not exist on this machine, so it cannot be copied into the VM`, {
      path,
    });
  }
}

/** An ELF file that is executable or a shared object: worth asking ldd about. */
function isDynamicElf(path: string, stats: Stats): boolean {
  if (stats.size < 64) return false;
  const looksLoadable = (stats.mode & 0o111) !== 0 || /\.so(\.|$)|\.node$/.test(path);
  if (!looksLoadable) return false;
  const header = Buffer.alloc(18);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  const isElf = header.readUInt32BE(0) === 0x7f454c46;
  const type = header.readUInt16LE(16); // ET_EXEC 2, ET_DYN 3
  return isElf && (type === 2 || type === 3);
}

/**
 * Absolute paths of the shared objects ldd lists for an ELF file (none when
 * static). Libraries the host lacks are left out: the file cannot be loaded on
 * the host either (such as a musl build shipped beside a glibc one).
 */
export function sharedLibraries(elfPath: string): string[] {
  let output: string;
  try {
    output = execFileSync('ldd', [elfPath], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: string };
    if (err.code === 'ENOENT') throw new TspliceError('bad_input', 'ldd was not found: install libc-bin');
    const said = `${err.stdout ?? ''}${err.stderr ?? ''}`;
    // Static programs, and ELF files for another machine, need no libraries from us.
    if (/not a dynamic executable|statically linked/.test(said)) return [];
    return [];
  }
  const libraries: string[] = [];
  for (const line of output.split('\n')) {
    const arrow = /=> (\/\S+)/.exec(line);
    const loader = /^\s*(\/\S+) \(0x/.exec(line);
    const path = arrow?.[1] ?? loader?.[1];
    if (path) libraries.push(path);
  }
  return libraries;
}
