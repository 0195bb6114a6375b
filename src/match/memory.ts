// What matching reads: any memory image — a live process, an ELF file laid out
// at its link addresses, kernel memory. Matching never writes.

import { closeSync, openSync, readSync } from 'node:fs';
import { PT_LOAD } from '../elf/constants.js';
import type { ElfFile } from '../elf/reader.js';
import { TspliceError } from '../errors.js';

export interface CodeReader {
  /** Exactly `length` bytes at `addr`; throws a TspliceError when any of them is not mapped. */
  read(addr: bigint, length: number): Buffer;
}

/** The error readers throw for addresses that hold nothing; `details.unmapped` tells callers apart. */
export function unmappedError(where: string, addr: bigint, length: number): TspliceError {
  return new TspliceError(
    'no_match',
    `${where}: nothing is mapped at 0x${addr.toString(16)} (${length} bytes)`,
    { address: `0x${addr.toString(16)}`, length, unmapped: true },
  );
}

export function isUnmappedError(e: unknown): boolean {
  return e instanceof TspliceError && e.details.unmapped === true;
}

/**
 * An ELF file as the loader would map it, at link address + `bias`: file bytes
 * of each PT_LOAD segment, zeros for its .bss part. Dynamic relocations are not
 * applied, so GOT slots hold their link-time contents.
 */
export class ElfFileReader implements CodeReader {
  constructor(
    private readonly elf: ElfFile,
    private readonly file: Buffer,
    private readonly bias: bigint = 0n,
  ) {}

  read(addr: bigint, length: number): Buffer {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const at = addr + BigInt(done) - this.bias;
      const seg = this.elf.segments.find(
        (p) => p.type === PT_LOAD && at >= p.vaddr && at < p.vaddr + BigInt(p.memsz),
      );
      if (!seg) throw unmappedError(this.elf.name, addr + BigInt(done), length - done);
      const inSeg = Number(at - seg.vaddr);
      const chunk = Math.min(length - done, seg.memsz - inSeg);
      const fromFile = Math.max(0, Math.min(chunk, seg.filesz - inSeg));
      if (fromFile > 0) this.file.copy(out, done, seg.offset + inSeg, seg.offset + inSeg + fromFile);
      done += chunk;
    }
    return out;
  }
}

/** A live process's memory through /proc/PID/mem (needs ptrace access: root or same user + ptrace scope). */
export class ProcessMemoryReader implements CodeReader {
  private fd: number | undefined;

  constructor(readonly pid: number) {
    try {
      this.fd = openSync(`/proc/${pid}/mem`, 'r');
    } catch (e) {
      throw processError(pid, e);
    }
  }

  read(addr: bigint, length: number): Buffer {
    if (this.fd === undefined) throw new TspliceError('internal', `memory of process ${this.pid} read after close`);
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = readSync(this.fd, out, done, length - done, addr + BigInt(done));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EIO') throw unmappedError(`process ${this.pid}`, addr, length);
        throw processError(this.pid, e);
      }
      if (n === 0) throw unmappedError(`process ${this.pid}`, addr + BigInt(done), length - done);
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function processError(pid: number, e: unknown): TspliceError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ESRCH') {
    return new TspliceError('target_gone', `process ${pid} no longer exists`, { pid });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new TspliceError(
      'permission',
      `cannot read the memory of process ${pid}: permission denied (run as root or as the process owner with ptrace allowed)`,
      { pid },
    );
  }
  const message = e instanceof Error ? e.message : String(e);
  return new TspliceError('internal', `reading the memory of process ${pid} failed: ${message}`, { pid });
}

/**
 * A page cache in front of a reader: matching decodes one instruction at a
 * time, and a syscall per instruction would dominate. Pages that cannot be
 * read whole (the edge of a mapping) are read through uncached.
 */
export class CachedReader implements CodeReader {
  private readonly pages = new Map<bigint, Buffer | null>();

  constructor(private readonly inner: CodeReader, private readonly pageSize = 4096n) {}

  read(addr: bigint, length: number): Buffer {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const at = addr + BigInt(done);
      const base = at - (at % this.pageSize);
      const page = this.page(base);
      const inPage = Number(at - base);
      const chunk = Math.min(length - done, Number(this.pageSize) - inPage);
      if (page) page.copy(out, done, inPage, inPage + chunk);
      else this.inner.read(at, chunk).copy(out, done);
      done += chunk;
    }
    return out;
  }

  /** As many bytes as are readable at `addr`, up to `max` (fewer at the end of a mapping). */
  readUpTo(addr: bigint, max: number): Buffer {
    try {
      return this.read(addr, max);
    } catch (e) {
      if (!isUnmappedError(e)) throw e;
    }
    let lo = 0;
    let hi = max;
    while (lo + 1 < hi) {
      const mid = (lo + hi) >> 1;
      try {
        this.read(addr, mid);
        lo = mid;
      } catch (e) {
        if (!isUnmappedError(e)) throw e;
        hi = mid;
      }
    }
    return lo === 0 ? Buffer.alloc(0) : this.read(addr, lo);
  }

  private page(base: bigint): Buffer | null {
    let page = this.pages.get(base);
    if (page === undefined) {
      try {
        page = this.inner.read(base, Number(this.pageSize));
      } catch (e) {
        if (!isUnmappedError(e)) throw e;
        page = null;
      }
      this.pages.set(base, page);
    }
    return page;
  }
}
