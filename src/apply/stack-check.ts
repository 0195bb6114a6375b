// The stack check. Precise when the target unwound a thread's whole stack
// (FrozenThread.returnAddresses): the thread is busy in a range if its
// instruction pointer or one of its return addresses is in it. Otherwise
// conservative, as Ksplice's: its instruction pointer or any aligned word on
// its stack. A word that only looks like an address makes the conservative
// check fail safe (a retry), never unsafe.
import type { FrozenThread } from './target.js';

export interface BusyRange {
  /** Function name, for messages. */
  name: string;
  start: bigint;
  /** Exclusive. */
  end: bigint;
}

export interface BusyHit {
  tid: number;
  threadName: string;
  function: string;
  /**
   * "ip": executing it now; "return-address": an unwound caller frame returns
   * into it; "stack": some word of its stack points into it (the thread's
   * stack could not be unwound, so every word counts).
   */
  where: 'ip' | 'stack' | 'return-address';
  /** The address that lies in the function. */
  address: bigint;
}

/**
 * Ranges sorted by start, with lookups in numbers when every address fits a
 * double exactly (user space does): the scan runs inside the freeze.
 */
class RangeIndex {
  private readonly ranges: BusyRange[];
  private readonly starts: number[];
  private readonly ends: number[];
  private readonly exact: boolean;

  constructor(ranges: readonly BusyRange[]) {
    this.ranges = [...ranges].filter((r) => r.end > r.start).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    this.exact = this.ranges.every((r) => r.end <= BigInt(Number.MAX_SAFE_INTEGER));
    this.starts = this.ranges.map((r) => Number(r.start));
    this.ends = this.ranges.map((r) => Number(r.end));
  }

  /** The range holding addr (as a number), if any; ranges may overlap, any hit counts. */
  findNumber(addr: number): BusyRange | undefined {
    // Last range starting at or below addr, then walk back over overlapping ones.
    let lo = 0;
    let hi = this.starts.length - 1;
    let last = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid] <= addr) {
        last = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    for (let i = last; i >= 0; i--) if (addr < this.ends[i]) return this.ranges[i];
    return undefined;
  }

  find(addr: bigint): BusyRange | undefined {
    if (this.exact) return addr <= BigInt(Number.MAX_SAFE_INTEGER) ? this.findNumber(Number(addr)) : undefined;
    return this.ranges.find((r) => addr >= r.start && addr < r.end);
  }

  get isExact(): boolean {
    return this.exact;
  }
}

/**
 * Every busy function per thread (first hit each). `stacks` gives each
 * thread's stack bytes, starting at thread.stack.start (8-byte aligned).
 */
export function findBusy(
  threads: readonly FrozenThread[],
  ranges: readonly BusyRange[],
  readStack: (thread: FrozenThread) => Buffer,
): BusyHit[] {
  const index = new RangeIndex(ranges);
  const hits: BusyHit[] = [];
  if (ranges.length === 0) return hits;
  for (const thread of threads) {
    const seen = new Set<string>();
    const add = (range: BusyRange, where: BusyHit['where'], address: bigint): void => {
      if (seen.has(range.name)) return;
      seen.add(range.name);
      hits.push({ tid: thread.tid, threadName: thread.name, function: range.name, where, address });
    };
    const atIp = index.find(thread.ip);
    if (atIp) add(atIp, 'ip', thread.ip);
    if (thread.returnAddresses) {
      for (const ra of thread.returnAddresses) {
        const range = index.find(ra);
        if (range) add(range, 'return-address', ra);
      }
      continue;
    }
    if (!thread.stack) continue;
    const bytes = readStack(thread);
    const offset = Number(thread.stack.start & 7n) === 0 ? 0 : 8 - Number(thread.stack.start & 7n);
    for (let i = offset; i + 8 <= bytes.length; i += 8) {
      let range: BusyRange | undefined;
      if (index.isExact) {
        const high = bytes.readUInt32LE(i + 4);
        if (high > 0x1fffff) continue; // above 2^53: no user-space range holds it
        range = index.findNumber(high * 0x100000000 + bytes.readUInt32LE(i));
      } else {
        range = index.find(bytes.readBigUInt64LE(i));
      }
      if (range) add(range, 'stack', bytes.readBigUInt64LE(i));
    }
  }
  return hits;
}
