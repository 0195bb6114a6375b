// Kernel memory through /proc/kcore: an ELF core file whose PT_LOAD segments
// map kernel virtual addresses (text, direct map, vmalloc and module space)
// to file offsets. Read-only; root only.

import { closeSync, openSync, readSync } from 'node:fs';
import { PT_LOAD } from '../../../elf/constants.js';
import { TspliceError } from '../../../errors.js';
import { type CodeReader, unmappedError } from '../../../match/memory.js';

interface KcoreSegment {
  vaddr: bigint;
  size: bigint;
  offset: bigint;
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const ELFCLASS64 = 2;

export class KcoreReader implements CodeReader {
  private fd: number | undefined;
  private readonly segments: KcoreSegment[];

  constructor(readonly path = '/proc/kcore') {
    try {
      this.fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'EACCES' || code === 'EPERM'
        ? 'permission denied (run tsplice as root; kernel lockdown in confidentiality mode also hides it)'
        : (e as Error).message;
      throw new TspliceError(code === 'ENOENT' ? 'bad_input' : 'permission', `cannot open ${path}: ${why}`, { path });
    }
    try {
      this.segments = this.readSegments();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  read(addr: bigint, length: number): Buffer {
    if (this.fd === undefined) throw new TspliceError('internal', `${this.path} read after close`);
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const at = addr + BigInt(done);
      const seg = this.segments.find((s) => at >= s.vaddr && at < s.vaddr + s.size);
      if (!seg) throw unmappedError('kernel memory', at, length - done);
      const chunk = Number(BigInt(length - done) < seg.vaddr + seg.size - at ? BigInt(length - done) : seg.vaddr + seg.size - at);
      const n = this.readAt(out, done, chunk, seg.offset + (at - seg.vaddr));
      if (n === 0) throw unmappedError('kernel memory', at, length - done);
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private readAt(out: Buffer, at: number, length: number, position: bigint): number {
    try {
      return readSync(this.fd!, out, at, length, position);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EFAULT' || code === 'EIO') return 0;
      throw new TspliceError('internal', `reading ${this.path} failed: ${(e as Error).message}`);
    }
  }

  private readSegments(): KcoreSegment[] {
    const header = Buffer.alloc(64);
    this.readAt(header, 0, 64, 0n);
    if (!header.subarray(0, 4).equals(ELF_MAGIC) || header[4] !== ELFCLASS64) {
      throw new TspliceError('bad_input', `${this.path} is not a 64-bit ELF core file`);
    }
    const phoff = header.readBigUInt64LE(0x20);
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    const table = Buffer.alloc(phentsize * phnum);
    this.readAt(table, 0, table.length, phoff);
    const segments: KcoreSegment[] = [];
    for (let i = 0; i < phnum; i++) {
      const p = table.subarray(i * phentsize);
      if (p.readUInt32LE(0) !== PT_LOAD) continue;
      segments.push({ offset: p.readBigUInt64LE(8), vaddr: p.readBigUInt64LE(16), size: p.readBigUInt64LE(32) });
    }
    if (segments.length === 0) throw new TspliceError('bad_input', `${this.path} maps no kernel memory`);
    return segments;
  }
}
