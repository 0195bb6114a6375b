// The process as a SwitchTarget for the target-independent engine in apply/.
import type { FrozenThread, SwitchTarget } from '../../apply/target.js';
import { findMapping, readMaps, type MapEntry } from './maps.js';
import type { ProcessSession } from './session.js';

/**
 * Adapt a session. Stack extents come from a maps snapshot taken in prepare()
 * (outside the freeze); a thread whose stack is not in the snapshot (created
 * since) makes the freeze read maps once more.
 */
export function processSwitchTarget(session: ProcessSession): SwitchTarget {
  let maps: MapEntry[] = [];
  return {
    label: `process ${session.pid}`,
    read: (addr, length) => session.memory.read(addr, length),
    write: (addr, bytes) => session.memory.write(addr, bytes),
    prepare: () => {
      maps = readMaps(session.pid);
    },
    freeze: (): FrozenThread[] => {
      const stopped = session.freeze();
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
        return { tid: t.tid, name: t.name, ip: t.regs.rip, stack };
      });
    },
    readStack: (thread) => (thread.stack ? session.memory.read(thread.stack.start, Number(thread.stack.end - thread.stack.start)) : Buffer.alloc(0)),
    resume: () => session.resume(),
  };
}
