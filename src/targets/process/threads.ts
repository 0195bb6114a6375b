// The threads of a process, from /proc/PID/task.
import { readdirSync, readFileSync } from 'node:fs';
import { TspliceError } from '../../errors.js';
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

/** The process has exited (or is a zombie): nothing in it can be read, traced or changed any more. */
export function processGone(pid: number): boolean {
  const state = statusField(`/proc/${pid}`, 'State');
  return state === undefined || state.startsWith('Z') || state.startsWith('X');
}

/**
 * A failure while the target exits shows up as whatever broke first (an
 * unreadable page, a failed ptrace): report it as what it is.
 */
export function goneInstead(pid: number, error: unknown, during: string): unknown {
  if (error instanceof TspliceError && error.code === 'target_gone') return error;
  if (!processGone(pid)) return error;
  return new TspliceError('target_gone', `process ${pid} exited during ${during}; nothing is left to change in it`, { pid });
}
