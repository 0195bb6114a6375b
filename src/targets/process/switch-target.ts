// The process as a SwitchTarget for the target-independent engine in apply/.
import { loadObjectCfi, LoadedCfi, type ObjectCfi } from '../../apply/unwind/loaded-cfi.js';
import { unwindStack } from '../../apply/unwind/unwinder.js';
import type { FrozenThread, SwitchTarget } from '../../apply/target.js';
import { mappedFiles } from './loaded-objects.js';
import { findMapping, isExecutable, readMaps, type MapEntry } from './maps.js';
import type { ProcessSession } from './session.js';

/**
 * Adapt a session. Stack extents and unwind tables come from a maps snapshot
 * taken in prepare() (outside the freeze); a thread whose stack is not in the
 * snapshot (created since) makes the freeze read maps once more. In the
 * freeze each thread's stack is read once and unwound with the tables; when
 * that fails the stack check scans the same bytes conservatively.
 */
export function processSwitchTarget(session: ProcessSession): SwitchTarget {
  let maps: MapEntry[] = [];
  let cfi = new LoadedCfi([]);
  /** Unwind tables by object identity, kept across prepares (retries). */
  const cfiCache = new Map<string, ObjectCfi | undefined>();
  /** Stack bytes read during the current freeze, by tid. */
  const stacks = new Map<number, Buffer>();
  const readStack = (stack: { start: bigint; end: bigint } | undefined): Buffer =>
    stack ? session.memory.read(stack.start, Number(stack.end - stack.start)) : Buffer.alloc(0);
  return {
    label: `process ${session.pid}`,
    read: (addr, length) => session.memory.read(addr, length),
    write: (addr, bytes) => session.memory.write(addr, bytes),
    prepare: () => {
      maps = readMaps(session.pid);
      cfi = loadProcessCfi(session, maps, cfiCache);
    },
    freeze: (): FrozenThread[] => {
      const stopped = session.freeze();
      stacks.clear();
      let refreshed = false;
      return stopped.map((t) => {
        const sp = t.regs.rsp;
        let mapping = findMapping(maps, sp);
        if (!mapping && !refreshed) {
          maps = readMaps(session.pid);
          refreshed = true;
          mapping = findMapping(maps, sp);
        }
        const stack = mapping ? { start: sp & ~7n, end: mapping.end } : undefined;
        const thread: FrozenThread = { tid: t.tid, name: t.name, ip: t.regs.rip, stack };
        if (!stack) {
          thread.unwindFailure = `stack pointer 0x${sp.toString(16)} is in no mapping`;
          return thread;
        }
        const bytes = readStack(stack);
        stacks.set(t.tid, bytes);
        const unwound = unwindStack(cfi, t.regs, { start: stack.start, bytes });
        if (unwound.ok) thread.returnAddresses = unwound.returnAddresses;
        else thread.unwindFailure = unwound.reason;
        return thread;
      });
    },
    readStack: (thread) => stacks.get(thread.tid) ?? readStack(thread.stack),
    resume: () => {
      stacks.clear();
      session.resume();
    },
  };
}

/**
 * Unwind tables of every mapped object with code (and the vdso). An object
 * without usable CFI simply has no table: a pc in it makes that thread's
 * check conservative.
 */
function loadProcessCfi(session: ProcessSession, maps: readonly MapEntry[], cache: Map<string, ObjectCfi | undefined>): LoadedCfi {
  const bases: Array<{ key: string; base: bigint; name: string }> = [];
  for (const [path, mappings] of mappedFiles(maps)) {
    if (!mappings.some(isExecutable)) continue;
    const first = mappings.find((m) => m.offset === 0n);
    if (first) bases.push({ key: `${path}@${first.start.toString(16)}:${first.inode}`, base: first.start, name: path });
  }
  const vdso = maps.find((m) => m.path === '[vdso]');
  if (vdso) bases.push({ key: `[vdso]@${vdso.start.toString(16)}`, base: vdso.start, name: '[vdso]' });
  const live = new Set(bases.map((b) => b.key));
  for (const key of cache.keys()) if (!live.has(key)) cache.delete(key);
  const objects: ObjectCfi[] = [];
  for (const { key, base, name } of bases) {
    if (!cache.has(key)) {
      let loaded: ObjectCfi | undefined;
      try {
        loaded = loadObjectCfi((addr, length) => session.memory.read(addr, length), base, name);
      } catch {
        // No usable CFI (or unreadable): threads in this object get the conservative scan.
        loaded = undefined;
      }
      cache.set(key, loaded);
    }
    const cached = cache.get(key);
    if (cached) objects.push(cached);
  }
  return new LoadedCfi(objects);
}
