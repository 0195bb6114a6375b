// Freeze time: how long the target's threads stay stopped, per apply and per
// undo, for programs whose threads call the patched function in a loop.
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { type CycleRun, runCycles } from './cycles.js';
import { launchDetached } from './launch.js';
import { median, percentile } from './stats.js';
import type { BuiltTargetProject } from './target-project.js';

export interface FreezeTarget {
  label: string;
  threads: number;
  /** Sleep between bursts of calls; 0 spins. */
  sleepUs: number;
  /** Keep every thread on this CPU (-1: anywhere). */
  pinCpu: number;
}

export interface FreezeResult {
  target: FreezeTarget;
  run: CycleRun;
  /** Apply and undo freezes together. */
  freezeMs: { median: number; p99: number; max: number; applyMedian: number; undoMedian: number };
  /** Median freeze divided by the thread count, in µs. */
  perThreadUs: number;
  /** Freezes that needed more than one try (a thread was in work()). */
  retried: number;
  targetAlive: boolean;
}

/** Sleep between bursts: short, so 256 threads still leave the 2-core machine idle most of the time. */
const BURST_SLEEP_US = 10000;

export function freezeTargets(cores: number): FreezeTarget[] {
  const sleeping = (threads: number): FreezeTarget => ({
    label: `${threads} thread${threads > 1 ? 's' : ''}, 10 ms sleep between bursts`, threads, sleepUs: BURST_SLEEP_US, pinCpu: -1,
  });
  return [
    sleeping(1),
    sleeping(16),
    sleeping(256),
    // Spinning threads are running on a CPU when the freeze starts: the stop needs an IPI and a reschedule.
    // Pinned to one CPU so the benchmark does not take the whole machine from everyone else.
    { label: '16 threads spinning on 1 CPU', threads: 16, sleepUs: 0, pinCpu: Math.max(0, cores - 1) },
  ];
}

export async function measureFreeze(
  cleanup: Cleanup, project: BuiltTargetProject, target: FreezeTarget, cycles: number,
  log: (text: string) => void,
): Promise<FreezeResult> {
  const limitSeconds = 60 + cycles * 2;
  const program = await launchDetached(cleanup, {
    argv: [project.looper, String(target.threads), String(target.sleepUs), String(target.pinCpu), String(limitSeconds)],
    cwd: project.dir,
    output: join(project.dir, `looper-${target.threads}-${target.sleepUs}.out`),
    limitSeconds,
    ready: /^ready (\d+)$/m,
  });
  try {
    const run = await runCycles({
      updatePath: project.update.path, pid: program.pid, cycles, retries: 20, retryDelayMs: 20,
      onCycle: (n) => {
        if (n % 10 === 0) log(`  ${target.label}: ${n}/${cycles} cycles`);
      },
    });
    const all = run.samples.flatMap((s) => [s.applyFreezeMs, s.undoFreezeMs]);
    const freezeMs = {
      median: median(all), p99: percentile(all, 99), max: Math.max(...all),
      applyMedian: median(run.samples.map((s) => s.applyFreezeMs)),
      undoMedian: median(run.samples.map((s) => s.undoFreezeMs)),
    };
    return {
      target, run, freezeMs, perThreadUs: (freezeMs.median * 1000) / target.threads,
      retried: run.samples.reduce((n, s) => n + Number(s.applyTries > 1) + Number(s.undoTries > 1), 0),
      targetAlive: program.alive(),
    };
  } finally {
    cleanup.kill(program.pid);
  }
}
