// --pid / --all / --kernel: which running target a command acts on.

import { readdirSync } from 'node:fs';
import { TspliceError } from '../errors.js';
import { readMaps } from '../targets/process/maps.js';
import type { Parsed } from './args.js';

export const TARGET_OPTIONS = {
  pid: { type: 'string' },
  all: { type: 'boolean' },
  kernel: { type: 'boolean' },
} as const;

export type TargetChoice = { kind: 'pid'; pid: number } | { kind: 'all' } | { kind: 'kernel' };

export function targetChoice(p: Parsed, command: string, usage: string, allowAll: boolean): TargetChoice {
  const given = ['pid', 'all', 'kernel'].filter((k) => p.values[k] !== undefined && p.values[k] !== false);
  if (given.length !== 1 || (!allowAll && given[0] === 'all')) {
    throw new TspliceError('bad_input', `${command} needs exactly one of --pid PID${allowAll ? ', --all' : ''} or --kernel\nusage: ${usage}`);
  }
  if (given[0] === 'all') return { kind: 'all' };
  if (given[0] === 'kernel') return { kind: 'kernel' };
  const raw = p.values.pid as string;
  const pid = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(pid) || pid <= 0) {
    throw new TspliceError('bad_input', `--pid must be a process id (a positive whole number), not "${raw}"`);
  }
  return { kind: 'pid', pid };
}

/** Processes (other than this one) that map a file with one of these basenames. */
export function processesMapping(names: string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      if (readMaps(pid).some((m) => names.some((n) => m.path === n || m.path.endsWith(`/${n}`) || m.path.endsWith(`/${n} (deleted)`)))) {
        pids.push(pid);
      }
    } catch {
      // Gone, or a kernel thread without maps.
    }
  }
  return pids;
}
