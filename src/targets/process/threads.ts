// The threads of a process, from /proc/PID/task.
import { readdirSync, readFileSync } from 'node:fs';
import { procError } from './maps.js';

/** Thread ids of a process, ascending; `target_gone` if it does not exist. */
export function listThreadIds(pid: number): number[] {
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/task`);
  } catch (e) {
    throw procError(pid, e);
  }
  return names.map(Number).filter(Number.isInteger).sort((a, b) => a - b);
}

/** A thread's name (comm), or "?" if it has gone meanwhile. */
export function threadName(pid: number, tid: number): string {
  try {
    return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trimEnd();
  } catch {
    return '?';
  }
}

/** One field of /proc/PID/status ("TracerPid", "Seccomp", "State", ...), if present. */
export function statusField(path: string, field: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(`${path}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const line = text.split('\n').find((l) => l.startsWith(field + ':'));
  return line?.slice(field.length + 1).trim();
}
