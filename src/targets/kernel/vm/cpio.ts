// A writer for the "newc" cpio format (SVR4 without CRC), the one format the
// kernel's initramfs unpacker reads (init/initramfs.c). Written here rather than
// by the cpio tool so that building a guest needs nothing beyond QEMU.
//
// Each entry is a 110-byte ASCII header ("070701" + 13 fields of 8 hex digits),
// the NUL-terminated name padded to 4 bytes, then the data padded to 4 bytes.
// The archive ends with an entry named "TRAILER!!!". Several archives can be
// concatenated: the kernel unpacks them one after the other, later entries
// replacing earlier ones, which lets a cached part be reused unchanged.

import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { TspliceError } from '../../../errors.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/** The newc format stores sizes in 8 hex digits. */
const MAX_ENTRY_SIZE = 0xffffffff;

export interface CpioFileSource {
  /** A file on the host to copy the bytes from. */
  hostPath: string;
  size: number;
}

export class CpioWriter {
  private readonly fd: number;
  private nextInode = 1;
  private written = 0;
  private closed = false;
  /** Guest paths already in this archive, so a directory is only emitted once. */
  private readonly present = new Set<string>();

  /**
   * append: add an archive after the ones already in the file. Alignment
   * counts from the file's start, as the kernel reads concatenated archives.
   */
  constructor(outputPath: string, options: { append?: boolean } = {}) {
    this.fd = openSync(outputPath, options.append ? 'a' : 'w', 0o600);
    this.written = options.append ? fstatSync(this.fd).size : 0;
    if (this.written % 4) {
      closeSync(this.fd);
      throw new TspliceError('internal', `${outputPath} does not end on a 4-byte boundary; it is not a cpio archive`);
    }
  }

  /** Bytes in the file so far. */
  get size(): number {
    return this.written;
  }

  has(guestPath: string): boolean {
    return this.present.has(normalise(guestPath));
  }

  /** A directory and, first, every missing parent of it. */
  directory(guestPath: string, mode = 0o755): void {
    const path = normalise(guestPath);
    if (path === '' || this.present.has(path)) return;
    const slash = path.lastIndexOf('/');
    if (slash > 0) this.directory(path.slice(0, slash));
    this.entry(path, S_IFDIR | (mode & 0o7777), 2, 0, 0, Buffer.alloc(0));
  }

  /** A regular file with the given contents. */
  file(guestPath: string, contents: Buffer | string, mode = 0o644): void {
    const data = typeof contents === 'string' ? Buffer.from(contents) : contents;
    this.parents(guestPath);
    this.entry(normalise(guestPath), S_IFREG | (mode & 0o7777), 1, 0, 0, data);
  }

  /** A regular file whose bytes are streamed from a host file (for large binaries). */
  hostFile(guestPath: string, source: CpioFileSource, mode: number): void {
    if (source.size > MAX_ENTRY_SIZE) {
      throw new TspliceError('bad_input', `${source.hostPath} is too large for an initramfs (${source.size} bytes)`, {
        path: source.hostPath,
      });
    }
    this.parents(guestPath);
    const path = normalise(guestPath);
    this.header(path, S_IFREG | (mode & 0o7777), 1, 0, 0, source.size);
    this.copyFrom(source.hostPath, source.size);
    this.pad();
    this.present.add(path);
  }

  symlink(guestPath: string, target: string): void {
    this.parents(guestPath);
    this.entry(normalise(guestPath), S_IFLNK | 0o777, 1, 0, 0, Buffer.from(target));
  }

  /** A character device node, such as /dev/console (5, 1). */
  charDevice(guestPath: string, major: number, minor: number, mode = 0o600): void {
    this.parents(guestPath);
    this.entry(normalise(guestPath), S_IFCHR | (mode & 0o7777), 1, major, minor, Buffer.alloc(0));
  }

  /** Write the trailer and close the file. */
  finish(): void {
    if (this.closed) return;
    this.header('TRAILER!!!', 0, 1, 0, 0, 0);
    // Pad to 512 bytes, as cpio(1) does; this also keeps an appended archive aligned.
    const tail = (512 - (this.written % 512)) % 512;
    if (tail) this.write(Buffer.alloc(tail));
    closeSync(this.fd);
    this.closed = true;
  }

  /** Close without a trailer (on failure; the caller removes the file). */
  abandon(): void {
    if (this.closed) return;
    closeSync(this.fd);
    this.closed = true;
  }

  private parents(guestPath: string): void {
    const path = normalise(guestPath);
    const slash = path.lastIndexOf('/');
    if (slash > 0) this.directory(path.slice(0, slash));
  }

  private entry(path: string, mode: number, nlink: number, rdevMajor: number, rdevMinor: number, data: Buffer): void {
    this.header(path, mode, nlink, rdevMajor, rdevMinor, data.length);
    this.write(data);
    this.pad();
    this.present.add(path);
  }

  private header(name: string, mode: number, nlink: number, rdevMajor: number, rdevMinor: number, size: number): void {
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [
      name === 'TRAILER!!!' ? 0 : this.nextInode++,
      mode,
      0, // uid: root
      0, // gid: root
      nlink,
      0, // mtime: fixed, so identical inputs give identical archives
      size,
      0, // devmajor
      0, // devminor
      rdevMajor,
      rdevMinor,
      nameBytes.length,
      0, // check
    ];
    const header = '070701' + fields.map((v) => v.toString(16).padStart(8, '0')).join('');
    this.write(Buffer.from(header, 'ascii'));
    this.write(nameBytes);
    this.pad();
  }

  private copyFrom(hostPath: string, size: number): void {
    const input = openSync(hostPath, 'r');
    try {
      const chunk = Buffer.allocUnsafe(1 << 20);
      let copied = 0;
      while (copied < size) {
        const n = readSync(input, chunk, 0, Math.min(chunk.length, size - copied), copied);
        if (n === 0) {
          throw new TspliceError('internal', `${hostPath} shrank while it was being copied into the initramfs`, {
            path: hostPath,
          });
        }
        this.write(chunk.subarray(0, n));
        copied += n;
      }
    } finally {
      closeSync(input);
    }
  }

  private pad(): void {
    const extra = (4 - (this.written % 4)) % 4;
    if (extra) this.write(Buffer.alloc(extra));
  }

  private write(data: Buffer): void {
    let offset = 0;
    while (offset < data.length) offset += writeSync(this.fd, data, offset);
    this.written += data.length;
  }
}

/** Archive names are relative ("bin/sh"), without "./" or a leading "/". */
function normalise(guestPath: string): string {
  return guestPath.replace(/^\/+/, '').replace(/\/+$/, '').replace(/\/{2,}/g, '/');
}
