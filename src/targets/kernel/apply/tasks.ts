// Which tasks have not switched to the target patch state yet. During a
// livepatch transition each task's /proc/<pid>/task/<tid>/patch_state is 0
// (still on the old code) or 1 (on the new code); -1 when no transition is
// in progress. A task switches when it is not running any function being
// replaced: on return to user space, when it sleeps outside them, or when
// woken by the kernel's fake signal.

import { readdirSync, readFileSync } from 'node:fs';

export interface PendingTask {
  /** Thread group (process) id. */
  pid: number;
  /** Thread id. */
  tid: number;
  comm: string;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined; // the task exited
  }
}

/** Tasks whose patch_state is not `target` (1 while patching, 0 while unpatching). */
export function tasksNotSwitched(target: 0 | 1, proc = '/proc'): PendingTask[] {
  const out: PendingTask[] = [];
  for (const pidName of readdirSync(proc)) {
    if (!/^\d+$/.test(pidName)) continue;
    let tids: string[];
    try {
      tids = readdirSync(`${proc}/${pidName}/task`);
    } catch {
      continue;
    }
    for (const tidName of tids) {
      const state = readText(`${proc}/${pidName}/task/${tidName}/patch_state`);
      if (state === undefined || state === '-1' || Number(state) === target) continue;
      out.push({ pid: Number(pidName), tid: Number(tidName), comm: readText(`${proc}/${pidName}/task/${tidName}/comm`) ?? '?' });
    }
  }
  return out;
}

/** "kthreadd (pid 2), cat (pid 812, thread 813)". */
export function describeTasks(tasks: PendingTask[], limit = 10): string {
  const shown = tasks.slice(0, limit).map((t) => `${t.comm} (pid ${t.pid}${t.tid !== t.pid ? `, thread ${t.tid}` : ''})`);
  return shown.join(', ') + (tasks.length > limit ? ` and ${tasks.length - limit} more` : '');
}
