// /proc/PID/maps: what is mapped where in a process.
import { readFileSync } from 'node:fs';
import { TspliceError } from '../../errors.js';

export interface MapEntry {
  start: bigint;
  /** Exclusive. */
  end: bigint;
  /** As printed: "r-xp", "rw-s", ... */
  perms: string;
  offset: bigint;
  /** Device "major:minor" as printed. */
  dev: string;
  inode: number;
  /** File path, "[heap]", "[stack]", "[vdso]", "[anon:NAME]", or "" for anonymous memory. */
  path: string;
}

const MAPS_LINE = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+([0-9a-f]+)\s+(\S+)\s+(\d+)\s*(.*)$/;

export function parseMaps(text: string): MapEntry[] {
  const entries: MapEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = MAPS_LINE.exec(line);
    if (!m) throw new TspliceError('internal', `cannot parse a /proc/PID/maps line: ${JSON.stringify(line)}`);
    entries.push({
      start: BigInt('0x' + m[1]),
      end: BigInt('0x' + m[2]),
      perms: m[3],
      offset: BigInt('0x' + m[4]),
      dev: m[5],
      inode: Number(m[6]),
      path: m[7],
    });
  }
  return entries;
}

/** Read a process's maps; a process that does not exist is `target_gone`. */
export function readMaps(pid: number): MapEntry[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch (e) {
    throw procError(pid, e);
  }
  return parseMaps(text);
}

/** The mapping that contains addr, if any (maps are sorted by address). */
export function findMapping(maps: readonly MapEntry[], addr: bigint): MapEntry | undefined {
  let lo = 0;
  let hi = maps.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const entry = maps[mid];
    if (addr < entry.start) hi = mid - 1;
    else if (addr >= entry.end) lo = mid + 1;
    else return entry;
  }
  return undefined;
}

export const isExecutable = (entry: MapEntry): boolean => entry.perms[2] === 'x';

/** Turn a failed read under /proc/PID into the error a user can act on. */
export function procError(pid: number, e: unknown): TspliceError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ESRCH') {
    return new TspliceError('target_gone', `no process with id ${pid} (it is not running, or it has exited); check the pid with ps`, {
      pid,
    });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new TspliceError('permission', `not allowed to inspect process ${pid}: run tsplice as root`, { pid });
  }
  return new TspliceError('internal', `reading /proc/${pid} failed: ${(e as Error).message}`, { pid });
}
