// The benchmark's goals (issue 3) and how each is judged.
import type { FreezeResult } from './freeze.js';
import type { SoakResult } from './soak.js';

export const FREEZE_GOAL = { threads: 16, medianMs: 1 } as const;

export interface GrowthStep {
  fromThreads: number;
  toThreads: number;
  threadFactor: number;
  freezeFactor: number;
  /** Extra freeze per extra thread over this step, in µs. */
  marginalUs: number;
}

export interface GrowthVerdict {
  steps: GrowthStep[];
  /** Every step's freeze grows by at most its thread factor (per-thread cost never rises). */
  linearOrBetter: boolean;
}

/** Growth of the median freeze with threads, over the sleeping targets (same workload, only the count differs). */
export function freezeGrowth(results: readonly FreezeResult[]): GrowthVerdict {
  const series = results.filter((r) => r.target.sleepUs > 0 && r.run.samples.length > 0)
    .sort((a, b) => a.target.threads - b.target.threads);
  const steps: GrowthStep[] = [];
  for (let i = 1; i < series.length; i++) {
    const a = series[i - 1];
    const b = series[i];
    steps.push({
      fromThreads: a.target.threads,
      toThreads: b.target.threads,
      threadFactor: b.target.threads / a.target.threads,
      freezeFactor: b.freezeMs.median / a.freezeMs.median,
      marginalUs: ((b.freezeMs.median - a.freezeMs.median) * 1000) / (b.target.threads - a.target.threads),
    });
  }
  return { steps, linearOrBetter: steps.length > 0 && steps.every((s) => s.freezeFactor <= s.threadFactor) };
}

export interface FreezeGoalVerdict {
  medianMs: number;
  pass: boolean;
}

export function freezeGoal(results: readonly FreezeResult[]): FreezeGoalVerdict | undefined {
  const at = results.find((r) => r.target.threads === FREEZE_GOAL.threads && r.target.sleepUs > 0 && r.run.samples.length > 0);
  return at && { medianMs: at.freezeMs.median, pass: at.freezeMs.median < FREEZE_GOAL.medianMs };
}

/** Zero crashes (or hangs), zero failed requests, and every cycle done. */
export function soakPassed(soak: SoakResult): boolean {
  return soak.crashes === 0 && !soak.hung && soak.failedRequests === 0 && soak.run.samples.length === soak.cyclesRequested;
}
