// Apply/undo cycles against one running process, through tsplice's library
// API, timing each step. An apply that fails (code_busy after its retries,
// say) is counted and the next cycle goes on; a target that dies ends the run.
import { asTspliceError } from '../src/errors.js';
import { applyToProcess } from '../src/targets/process/apply-update.js';
import { undoFromProcess } from '../src/targets/process/undo-update.js';
import { readUpdate } from '../src/update/package.js';

export interface CycleOptions {
  updatePath: string;
  pid: number;
  cycles: number;
  /** Freeze attempts while the code is busy (tsplice's default is 5). */
  retries?: number;
  retryDelayMs?: number;
  /** Give up after this many failed steps in a row (default 20): the target is no longer usable. */
  maxConsecutiveFailures?: number;
  /** Called after every cycle (progress). */
  onCycle?: (done: number) => void;
}

export interface CycleSample {
  applyFreezeMs: number;
  undoFreezeMs: number;
  /** readUpdate + applyToProcess, as the operator waits for it. */
  applyWallMs: number;
  /** applyToProcess's own totalMs (without reading the package). */
  applyTotalMs: number;
  undoTotalMs: number;
  applyTries: number;
  undoTries: number;
}

export interface CycleFailure {
  cycle: number;
  phase: 'apply' | 'undo';
  code: string;
  message: string;
}

export interface CycleRun {
  samples: CycleSample[];
  failures: CycleFailure[];
  /** The target disappeared during the run. */
  targetGone: boolean;
  /** Why the run ended before its last cycle, if it did. */
  stoppedEarly?: string;
}

/** Undo attempts before a cycle run gives up on an update that stays applied. */
const UNDO_ATTEMPTS = 3;

export async function runCycles(options: CycleOptions): Promise<CycleRun> {
  const { pid } = options;
  const run: CycleRun = { samples: [], failures: [], targetGone: false };
  const tuning = { retries: options.retries, retryDelayMs: options.retryDelayMs };
  const maxFailures = options.maxConsecutiveFailures ?? 20;
  let failuresInARow = 0;
  for (let cycle = 1; cycle <= options.cycles; cycle++) {
    if (failuresInARow >= maxFailures) {
      run.stoppedEarly = `${failuresInARow} failed attempts in a row`;
      break;
    }
    let applied;
    const readStarted = process.hrtime.bigint();
    try {
      applied = await applyToProcess(readUpdate(options.updatePath), { pid, ...tuning });
    } catch (e) {
      failuresInARow++;
      if (noteFailure(run, cycle, 'apply', e)) {
        run.stoppedEarly = `the target is gone (cycle ${cycle})`;
        break;
      }
      continue;
    }
    const applyWallMs = Number(process.hrtime.bigint() - readStarted) / 1e6;
    let undone;
    for (let attempt = 1; !undone && attempt <= UNDO_ATTEMPTS; attempt++) {
      try {
        undone = await undoFromProcess(applied.id, { pid, ...tuning });
      } catch (e) {
        failuresInARow++;
        if (noteFailure(run, cycle, 'undo', e)) {
          run.stoppedEarly = `the target is gone (cycle ${cycle})`;
          return run;
        }
      }
    }
    if (!undone) {
      run.stoppedEarly = `update ${applied.id} stays applied: its undo failed ${UNDO_ATTEMPTS} times in cycle ${cycle}`;
      return run;
    }
    failuresInARow = 0;
    run.samples.push({
      applyFreezeMs: applied.freezeMs, undoFreezeMs: undone.freezeMs, applyWallMs, applyTotalMs: applied.totalMs,
      undoTotalMs: undone.totalMs, applyTries: applied.tries, undoTries: undone.tries,
    });
    options.onCycle?.(cycle);
  }
  return run;
}

/** Record a failed step; true when the target is gone (the run cannot go on). */
function noteFailure(run: CycleRun, cycle: number, phase: 'apply' | 'undo', cause: unknown): boolean {
  const err = asTspliceError(cause);
  run.failures.push({ cycle, phase, code: err.code, message: err.message });
  if (err.code === 'target_gone') run.targetGone = true;
  return run.targetGone;
}
