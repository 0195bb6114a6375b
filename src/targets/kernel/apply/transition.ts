// Waiting for a livepatch transition. The kernel switches tasks one by one
// (every second it retries those still running old code); tsplice only
// watches, shows progress, asks the kernel to signal the stragglers where it
// can, and gives up after a timeout so the caller can reverse.

import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Progress, silentProgress } from '../../../progress.js';
import { LIVEPATCH_SYSFS, livepatchState } from './livepatch-sysfs.js';
import { type PendingTask, tasksNotSwitched } from './tasks.js';

export type TransitionGoal = 'patched' | 'unpatched';

export interface TransitionWait {
  timeoutMs: number;
  progress?: Progress;
  /** Ask the kernel to signal tasks that hold the transition up after this long (when it offers that). */
  signalAfterMs?: number;
  pollMs?: number;
  root?: string;
}

export type TransitionOutcome =
  | { done: true; ms: number; signalled: boolean }
  | { done: false; ms: number; signalled: boolean; pending: PendingTask[] };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Wait until patch `module` is no longer in transition. For "unpatched" the
 * transition is also over when the patch is gone (the kernel frees a
 * disabled patch right after its transition).
 */
export async function waitForTransition(module: string, goal: TransitionGoal, options: TransitionWait): Promise<TransitionOutcome> {
  const root = options.root ?? LIVEPATCH_SYSFS;
  const progress = options.progress ?? silentProgress;
  const poll = options.pollMs ?? 50;
  const signalAfter = options.signalAfterMs ?? Math.min(1000, options.timeoutMs / 2);
  const target = goal === 'patched' ? 1 : 0;
  const started = Date.now();
  let signalled = false;
  for (;;) {
    const ms = Date.now() - started;
    const state = livepatchState(module, root);
    if (!state || !state.transition) return { done: true, ms, signalled };
    const pending = tasksNotSwitched(target);
    progress.detail(`${pending.length} task${pending.length === 1 ? '' : 's'} still on the ${goal === 'patched' ? 'old' : 'new'} code`);
    if (!signalled && ms >= signalAfter) signalled = signalTasks(module, root);
    if (ms >= options.timeoutMs) return { done: false, ms, signalled, pending };
    await sleep(poll);
  }
}

/**
 * Kernels before 5.1 have a `signal` attribute to send the fake signal that
 * wakes sleeping tasks; later ones send it themselves every 15 seconds of a
 * transition. Returns whether tsplice could ask.
 */
function signalTasks(module: string, root: string): boolean {
  const path = join(root, module, 'signal');
  if (!existsSync(path)) return false;
  try {
    writeFileSync(path, '1');
    return true;
  } catch {
    return false;
  }
}
