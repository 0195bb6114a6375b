// Run system calls inside the target, in one of its own threads.
//
// The thread is stopped (by PTRACE_INTERRUPT, so possibly in the middle of a
// blocking system call that the kernel will restart), its registers saved, its
// instruction pointer moved to an existing `syscall` instruction (bytes 0f 05
// in an executable mapping: the vDSO or libc), and one instruction is
// single-stepped. orig_rax = -1 tells the kernel this stop is not inside a
// system call, so its restart logic leaves our registers alone. Afterwards the
// saved registers are put back exactly, and the thread's own interrupted call
// restarts as if nothing had happened.
import { TspliceError } from '../../errors.js';
import { readFileSync } from 'node:fs';
import { isExecutable, readMaps, type MapEntry } from './maps.js';
import type { Registers } from './regs.js';
import type { ProcessSession } from './session.js';
import { statusField } from './threads.js';

export const SYS_CLOSE = 3n;
export const SYS_MMAP = 9n;
export const SYS_MPROTECT = 10n;
export const SYS_MUNMAP = 11n;
export const SYS_FTRUNCATE = 77n;
export const SYS_PRCTL = 157n;
export const SYS_MEMFD_CREATE = 319n;

const SYSCALL_INSTRUCTION = Buffer.from([0x0f, 0x05]);
const SCAN_CHUNK = 64 * 1024;

/** Runs one system call in the stopped thread; returns the raw (signed) result. */
export type RemoteCall = (nr: bigint, ...args: bigint[]) => bigint;

/** Find bytes 0f 05 in an executable mapping, trying the small vDSO first. */
export function findSyscallInstruction(session: ProcessSession, maps: readonly MapEntry[]): bigint {
  const candidates = maps
    .filter((m) => isExecutable(m) && m.path !== '[vsyscall]' && m.end <= 1n << 47n)
    .sort((a, b) => rank(a) - rank(b));
  for (const mapping of candidates) {
    for (let at = mapping.start; at < mapping.end; at += BigInt(SCAN_CHUNK)) {
      const length = Number(mapping.end - at < BigInt(SCAN_CHUNK + 1) ? mapping.end - at : BigInt(SCAN_CHUNK + 1));
      let bytes: Buffer;
      try {
        bytes = session.memory.read(at, length);
      } catch {
        break; // unreadable mapping: try the next one
      }
      const hit = bytes.indexOf(SYSCALL_INSTRUCTION);
      if (hit >= 0) return at + BigInt(hit);
    }
  }
  throw new TspliceError('internal', `found no syscall instruction in the executable memory of process ${session.pid}`, {
    pid: session.pid,
  });
}

function rank(mapping: MapEntry): number {
  if (mapping.path === '[vdso]') return 0;
  if (/\/libc[.-]/.test(mapping.path)) return 1;
  return 2;
}

/**
 * Stop one thread of the session (or use a frozen one), let `work` run
 * system calls in it, then put the thread back exactly as it was.
 */
export function withRemoteCalls<T>(session: ProcessSession, work: (call: RemoteCall) => T): T {
  refuseStrictSeccomp(session.pid);
  const wasFrozen = session.isFrozen;
  // Stopping first also turns a process that is gone into target_gone.
  const thread = session.stopOneThread();
  const saved: Registers = { ...thread.regs };
  try {
    const gadget = findSyscallInstruction(session, readMaps(session.pid));
    const call: RemoteCall = (nr, ...args) => {
      const [rdi = 0n, rsi = 0n, rdx = 0n, r10 = 0n, r8 = 0n, r9 = 0n] = args;
      const regs: Registers = { ...saved, rax: nr, rdi, rsi, rdx, r10, r8, r9, rip: gadget, orig_rax: -1n };
      session.setRegisters(thread.tid, regs);
      session.singleStep(thread.tid);
      const after = session.registers(thread.tid);
      if (after.rip !== gadget + 2n) {
        throw new TspliceError('internal', `remote system call ${nr} in thread ${thread.tid} of process ${session.pid} did not complete`, {
          pid: session.pid,
          tid: thread.tid,
        });
      }
      return BigInt.asIntN(64, after.rax);
    };
    return work(call);
  } finally {
    try {
      session.setRegisters(thread.tid, saved);
    } finally {
      if (!wasFrozen) session.resume();
    }
  }
}

/** Seccomp strict mode kills a process on any call but read/write/exit. */
function refuseStrictSeccomp(pid: number): void {
  if (statusField(`/proc/${pid}`, 'Seccomp') === '1') {
    throw new TspliceError(
      'unsupported_change',
      `process ${pid} runs in seccomp strict mode, which would kill it for the memory calls tsplice needs; it cannot be patched live`,
      { pid },
    );
  }
}

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
const MAP_PRIVATE = 0x02n;
const MAP_FIXED = 0x10n;
const MAP_ANONYMOUS = 0x20n;
const MAP_FIXED_NOREPLACE = 0x100000n;
const PR_SET_VMA = 0x53564d41n;
const PR_SET_VMA_ANON_NAME = 0n;
const MFD_CLOEXEC = 1n;
const EEXIST = 17n;
const ENOMEM = 12n;

export const PAGE_SIZE = 4096n;
/** Largest distance a rel32 jump or call reaches, with a little room to spare. */
export const REL32_REACH = (1n << 31n) - (1n << 20n);
/** Top of x86-64 user space with 4-level paging (the vsyscall page is above it). */
const TASK_SIZE = 0x7ffffffff000n;

export interface Region {
  start: bigint;
  size: bigint;
}

export interface RemoteMmapOptions {
  /** The new memory must be within rel32 reach of this address or range; omitted: anywhere. */
  near?: bigint | { start: bigint; end: bigint };
  size: bigint | number;
  /** PROT_* bits; code can be mapped PROT_READ|PROT_EXEC and written through /proc/PID/mem. */
  prot: number;
  /** Shows in /proc/PID/maps (as "[anon:NAME]", or "/memfd:NAME" where the kernel cannot name anonymous memory). */
  name?: string;
}

export const roundUpToPage = (n: bigint): bigint => (n + PAGE_SIZE - 1n) & ~(PAGE_SIZE - 1n);

/** Allocate memory in the target within ±2 GiB of `near`; out_of_memory if there is no room. */
export function remoteMmap(session: ProcessSession, options: RemoteMmapOptions): Region {
  const size = roundUpToPage(BigInt(options.size));
  if (options.near === undefined) return remoteMmapAnywhere(session, size, options);
  const near = typeof options.near === 'bigint' ? { start: options.near, end: options.near + 1n } : options.near;
  return withRemoteCalls(session, (call) => {
    const tried = new Set<bigint>();
    for (let round = 0; round < 8; round++) {
      const maps = readMaps(session.pid);
      const candidates = candidateAddresses(maps, near, size, readBrk(session.pid)).filter((a) => !tried.has(a));
      if (candidates.length === 0) break;
      for (const addr of candidates.slice(0, 4)) {
        tried.add(addr);
        const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
        const result = call(SYS_MMAP, addr, size, BigInt(options.prot), flags, -1n, 0n);
        if (result === addr) {
          const region = { start: addr, size };
          if (options.name !== undefined) nameRegion(session, call, region, options.name, options.prot);
          return region;
        }
        if (result >= 0n) call(SYS_MUNMAP, result, size); // a kernel that ignored NOREPLACE
        else if (result !== -EEXIST && result !== -ENOMEM) throw mmapError(session.pid, size, result);
        if (result === -EEXIST) break; // the maps changed under us: read them again
      }
    }
    throw new TspliceError(
      'out_of_memory',
      `no free address range of ${size} bytes within 2 GiB of 0x${near.start.toString(16)} in process ${session.pid}; ` +
        'the process address space is too crowded there',
      { pid: session.pid, size: size.toString(), near: '0x' + near.start.toString(16) },
    );
  });
}

function remoteMmapAnywhere(session: ProcessSession, size: bigint, options: RemoteMmapOptions): Region {
  return withRemoteCalls(session, (call) => {
    const result = call(SYS_MMAP, 0n, size, BigInt(options.prot), MAP_PRIVATE | MAP_ANONYMOUS, -1n, 0n);
    if (result < 0n) throw mmapError(session.pid, size, result);
    const region = { start: result, size };
    if (options.name !== undefined) nameRegion(session, call, region, options.name, options.prot);
    return region;
  });
}

function mmapError(pid: number, size: bigint, result: bigint): TspliceError {
  return new TspliceError('out_of_memory', `mmap of ${size} bytes in process ${pid} failed (errno ${-result})`, {
    pid,
    errno: Number(-result),
  });
}

export function remoteMprotect(session: ProcessSession, region: Region, prot: number): void {
  const result = withRemoteCalls(session, (call) => call(SYS_MPROTECT, region.start, region.size, BigInt(prot)));
  if (result < 0n) {
    throw new TspliceError('internal', `mprotect in process ${session.pid} failed (errno ${-result})`, { pid: session.pid });
  }
}

export function remoteMunmap(session: ProcessSession, region: Region): void {
  const result = withRemoteCalls(session, (call) => call(SYS_MUNMAP, region.start, region.size));
  if (result < 0n) {
    throw new TspliceError('internal', `munmap in process ${session.pid} failed (errno ${-result})`, { pid: session.pid });
  }
}

/**
 * Give a fresh region a name that shows in /proc/PID/maps. The name string is
 * put into the region itself for the call (the kernel copies it): the region
 * is new, its content not yet written.
 */
function nameRegion(session: ProcessSession, call: RemoteCall, region: Region, name: string, prot: number): void {
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  if (BigInt(nameBytes.length) > region.size || nameBytes.length > 80) {
    throw new TspliceError('internal', `region name too long: ${name}`);
  }
  session.memory.write(region.start, nameBytes);
  try {
    const named = call(SYS_PRCTL, PR_SET_VMA, PR_SET_VMA_ANON_NAME, region.start, region.size, region.start);
    if (named === 0n) return;
    // Kernel without CONFIG_ANON_VMA_NAME: map a memfd of that name in place.
    const fd = call(SYS_MEMFD_CREATE, region.start, MFD_CLOEXEC);
    if (fd < 0n) throw namingError(session.pid, fd);
    try {
      const truncated = call(SYS_FTRUNCATE, fd, region.size);
      if (truncated < 0n) throw namingError(session.pid, truncated);
      // Private: /proc/PID/mem writes reach a read-only private mapping (copy on write), not a shared one.
      const mapped = call(SYS_MMAP, region.start, region.size, BigInt(prot), MAP_PRIVATE | MAP_FIXED, fd, 0n);
      if (mapped !== region.start) throw namingError(session.pid, mapped);
    } finally {
      call(SYS_CLOSE, fd);
    }
  } finally {
    session.memory.write(region.start, Buffer.alloc(nameBytes.length));
  }
}

function namingError(pid: number, result: bigint): TspliceError {
  return new TspliceError('out_of_memory', `naming new memory in process ${pid} failed (errno ${-result})`, { pid });
}

// ---- choosing where ----

interface BrkRange {
  start: bigint;
  end: bigint;
}

/** The heap (brk) range from /proc/PID/stat: new memory must not block its growth. */
function readBrk(pid: number): BrkRange | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 47 (start_brk) and 48 (brk), counted from 1; fields[0] is field 3.
    const start = BigInt(fields[47 - 3]);
    const end = BigInt(fields[48 - 3]);
    return { start, end };
  } catch {
    return undefined;
  }
}

const HEAP_GROWTH_RESERVE = 256n << 20n;
const STACK_GROWTH_RESERVE = 64n << 20n;

/**
 * Page-aligned start addresses for `size` bytes in free gaps of the address
 * space, within rel32 reach of all of `near`, best first: away from room the
 * heap and the main stack grow into, then closest to `near`.
 */
export function candidateAddresses(
  maps: readonly MapEntry[],
  near: { start: bigint; end: bigint },
  size: bigint,
  brk: BrkRange | undefined,
  minAddress = 0x10000n,
): bigint[] {
  const user = maps.filter((m) => m.end <= TASK_SIZE);
  const reserved: BrkRange[] = [];
  if (brk) reserved.push({ start: brk.start, end: (brk.end > brk.start ? brk.end : brk.start) + HEAP_GROWTH_RESERVE });
  for (const m of user) {
    if (m.path === '[stack]') reserved.push({ start: m.start - STACK_GROWTH_RESERVE, end: m.start });
  }
  const gaps: BrkRange[] = [];
  let previousEnd = minAddress;
  for (const m of user) {
    if (m.start > previousEnd) gaps.push({ start: previousEnd, end: m.start });
    if (m.end > previousEnd) previousEnd = m.end;
  }
  if (TASK_SIZE > previousEnd) gaps.push({ start: previousEnd, end: TASK_SIZE });

  const lowest = near.end - REL32_REACH;
  const highest = near.start + REL32_REACH - size; // highest allowed start
  const centre = (near.start + near.end) / 2n - size / 2n;
  const scored: { addr: bigint; penalty: number; distance: bigint }[] = [];
  const alignDown = (a: bigint): bigint => a & ~(PAGE_SIZE - 1n);
  const alignUp = (a: bigint): bigint => roundUpToPage(a);
  for (const gap of gaps) {
    const lo = alignUp(gap.start > lowest ? gap.start : lowest);
    const hiRaw = gap.end - size < highest ? gap.end - size : highest;
    const hi = alignDown(hiRaw);
    if (lo > hi) continue;
    const options = new Set<bigint>([clamp(alignDown(centre), lo, hi), lo, hi]);
    for (const zone of reserved) {
      if (zone.end >= lo && zone.end <= hi) options.add(alignUp(zone.end));
      if (zone.start - size >= lo && zone.start - size <= hi) options.add(alignDown(zone.start - size));
    }
    for (const addr of options) {
      if (addr < lo || addr > hi) continue;
      const penalty = reserved.some((z) => addr < z.end && addr + size > z.start) ? 1 : 0;
      const distance = addr > centre ? addr - centre : centre - addr;
      scored.push({ addr, penalty, distance });
    }
  }
  scored.sort((a, b) => a.penalty - b.penalty || (a.distance < b.distance ? -1 : a.distance > b.distance ? 1 : 0));
  return [...new Set(scored.map((s) => s.addr))];
}

function clamp(value: bigint, lo: bigint, hi: bigint): bigint {
  return value < lo ? lo : value > hi ? hi : value;
}
