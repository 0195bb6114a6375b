// Call overhead of a patched function: calltimer times batches of calls to
// work() unpatched and patched (each call then goes through the 5-byte jump
// at the old entry), alternating by apply/undo. Pre and post work() differ
// only in a constant, so the difference is the jump (and where the new code
// sits).
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { applyToProcess } from '../src/targets/process/apply-update.js';
import { undoFromProcess } from '../src/targets/process/undo-update.js';
import { readUpdate } from '../src/update/package.js';
import type { Cleanup } from './cleanup.js';
import { WORK_ONE } from './fixtures/target-project.js';
import { type LaunchedProgram, launchDetached } from './launch.js';
import { median } from './stats.js';
import type { BuiltTargetProject } from './target-project.js';

export interface CallOverheadResult {
  callsPerRound: number;
  /** Timed rounds per phase. */
  rounds: number;
  /** Apply/undo alternations the rounds were spread over (so drift of the machine hits both phases alike). */
  blocks: number;
  unpatchedNs: { median: number; min: number };
  patchedNs: { median: number; min: number };
  /** patched − unpatched, of the medians and of the minimums. */
  overheadNs: { median: number; min: number };
}

/** Calls per timed round: about 10 ms of calls, long against clock_gettime, short against a time slice. */
const CALLS_PER_ROUND = 5_000_000;

interface Round {
  nsPerCall: number;
  workOne: number;
}

export async function measureCallOverhead(
  cleanup: Cleanup, project: BuiltTargetProject, rounds: number, log: (text: string) => void,
): Promise<CallOverheadResult> {
  const blocks = Math.max(1, Math.min(5, Math.floor(rounds / 4)));
  const perBlock = Math.ceil(rounds / blocks);
  const limitSeconds = 60 + rounds;
  const program = await launchDetached(cleanup, {
    argv: [project.calltimer, String(CALLS_PER_ROUND), String(limitSeconds)],
    cwd: project.dir,
    output: join(project.dir, 'calltimer.out'),
    limitSeconds,
    ready: /^ready (\d+)$/m,
  });
  try {
    // calltimer's thread is inside work() about half the time: many short retries.
    const tuning = { pid: program.pid, retries: 50, retryDelayMs: 7 };
    const unpatched: number[] = [];
    const patched: number[] = [];
    for (let block = 1; block <= blocks; block++) {
      log(`  call overhead: block ${block}/${blocks}`);
      unpatched.push(...(await collectRounds(program, perBlock, WORK_ONE.pre)));
      const applied = await applyToProcess(readUpdate(project.update.path), tuning);
      patched.push(...(await collectRounds(program, perBlock, WORK_ONE.post)));
      await undoFromProcess(applied.id, tuning);
    }
    const u = { median: median(unpatched), min: Math.min(...unpatched) };
    const p = { median: median(patched), min: Math.min(...patched) };
    return {
      callsPerRound: CALLS_PER_ROUND, rounds: perBlock * blocks, blocks, unpatchedNs: u, patchedNs: p,
      overheadNs: { median: p.median - u.median, min: p.min - u.min },
    };
  } finally {
    cleanup.kill(program.pid);
  }
}

/**
 * ns/call of `count` rounds that ran entirely after this call, each checked to
 * have run the expected work() (its result for 1 says which version ran).
 */
async function collectRounds(program: LaunchedProgram, count: number, expectWorkOne: number): Promise<number[]> {
  // The round in progress may have started before the switch: skip it.
  const skip = parseRounds(program.text()).length + 1;
  const deadline = Date.now() + 30000 + count * 1000;
  for (;;) {
    const fresh = parseRounds(program.text()).slice(skip);
    if (fresh.length >= count) {
      const wrong = fresh.slice(0, count).find((r) => r.workOne !== expectWorkOne);
      if (wrong) throw new Error(`calltimer: work(1) = ${wrong.workOne}, expected ${expectWorkOne} (the switch did not take effect)`);
      return fresh.slice(0, count).map((r) => r.nsPerCall);
    }
    if (!program.alive()) throw new Error(`calltimer (pid ${program.pid}) died: ${program.text().slice(-300)}`);
    if (Date.now() > deadline) throw new Error(`calltimer printed only ${fresh.length} of ${count} rounds in time`);
    await sleep(20);
  }
}

function parseRounds(text: string): Round[] {
  return [...text.matchAll(/^round (\S+) (-?\d+)$/gm)].map((m) => ({ nsPerCall: Number(m[1]), workOne: Number(m[2]) }));
}
