// Bulk reads and writes of a process's memory through /proc/PID/mem. As root
// (or as its tracer) writes reach read-only code pages too: the kernel breaks
// copy-on-write the way a debugger's breakpoint does.
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { TspliceError } from '../../errors.js';
import { procError } from './maps.js';

export class ProcessMemory {
  readonly pid: number;
  private fd: number;

  /** Keeps /proc/PID/mem open until close(): one open, many reads. */
  constructor(pid: number, mode: 'read' | 'readwrite' = 'readwrite') {
    this.pid = pid;
    try {
      this.fd = openSync(`/proc/${pid}/mem`, mode === 'read' ? 'r' : 'r+');
    } catch (e) {
      throw procError(pid, e);
    }
  }

  read(addr: bigint, length: number): Buffer {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = readSync(this.fd, out, done, length - done, addr + BigInt(done));
      } catch (e) {
        throw this.accessError('read', addr + BigInt(done), length - done, e);
      }
      if (n === 0) throw this.goneOrUnmapped('read', addr + BigInt(done), length - done);
      done += n;
    }
    return out;
  }

  write(addr: bigint, bytes: Uint8Array): void {
    // fs.writeSync takes a number position: exact for every user-space address.
    if (addr + BigInt(bytes.length) > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new TspliceError('internal', `address 0x${addr.toString(16)} is outside user space of process ${this.pid}`);
    }
    let done = 0;
    while (done < bytes.length) {
      let n: number;
      try {
        n = writeSync(this.fd, bytes, done, bytes.length - done, Number(addr + BigInt(done)));
      } catch (e) {
        throw this.accessError('write', addr + BigInt(done), bytes.length - done, e);
      }
      if (n === 0) throw this.goneOrUnmapped('write', addr + BigInt(done), bytes.length - done);
      done += n;
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private accessError(what: string, addr: bigint, length: number, e: unknown): TspliceError {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EIO' || code === 'EFAULT') {
      return new TspliceError(
        'internal',
        `cannot ${what} ${length} bytes at 0x${addr.toString(16)} in process ${this.pid}: not mapped`,
        { pid: this.pid, address: '0x' + addr.toString(16) },
      );
    }
    if (code === 'ESRCH') return this.goneOrUnmapped(what, addr, length);
    if (code === 'EPERM' || code === 'EACCES') {
      return new TspliceError('permission', `not allowed to ${what} memory of process ${this.pid}: run tsplice as root`, {
        pid: this.pid,
      });
    }
    return new TspliceError('internal', `${what} of process ${this.pid} memory failed: ${(e as Error).message}`, {
      pid: this.pid,
    });
  }

  /** /proc/PID/mem gives EOF once the process has exited (its memory is gone). */
  private goneOrUnmapped(what: string, addr: bigint, length: number): TspliceError {
    return new TspliceError(
      'target_gone',
      `process ${this.pid} is gone (it exited or replaced its program) while tsplice tried to ${what} ${length} bytes at 0x${addr.toString(16)}`,
      { pid: this.pid },
    );
  }
}
