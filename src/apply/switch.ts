// Freeze, check, switch, resume: the one moment the target stops. Serves
// apply (writes: jumps at the old entries; busy: the old functions) and undo
// (writes: the original bytes; busy: the new code) alike. All slow work
// happens before; inside the freeze: stop threads, read registers and stacks,
// check, write a few bytes, resume.
import { setTimeout as sleep } from 'node:timers/promises';
import { TspliceError } from '../errors.js';
import { findBusy, type BusyHit, type BusyRange } from './stack-check.js';
import type { SwitchTarget } from './target.js';

export interface CodeWrite {
  addr: bigint;
  bytes: Uint8Array;
}

export interface SwitchPlan {
  writes: CodeWrite[];
  /** No thread may be executing, or return into, these ranges. */
  busy: BusyRange[];
  /** Attempts before giving up with code_busy (default 5). */
  retries?: number;
  /** Pause between attempts, while the target runs (default 100 ms). */
  retryDelayMs?: number;
}

export interface SwitchResult {
  /** Duration of the successful freeze: first thread stopped to last resumed. */
  freezeMs: number;
  tries: number;
  /** The bytes each write replaced, in the order of plan.writes. */
  originals: Buffer[];
}

export async function switchCode(target: SwitchTarget, plan: SwitchPlan): Promise<SwitchResult> {
  const retries = Math.max(1, plan.retries ?? 5);
  const retryDelayMs = plan.retryDelayMs ?? 100;
  checkWrites(plan.writes);
  let lastHits: BusyHit[] = [];
  for (let attempt = 1; attempt <= retries; attempt++) {
    if (attempt > 1) await sleep(retryDelayMs);
    target.prepare?.();
    const outcome = attemptSwitch(target, plan);
    if (outcome.done) return { freezeMs: outcome.freezeMs, tries: attempt, originals: outcome.originals };
    lastHits = outcome.hits;
  }
  throw busyError(target, lastHits, retries);
}

type Attempt = { done: true; freezeMs: number; originals: Buffer[] } | { done: false; hits: BusyHit[] };

/** One freeze. Synchronous from the first stop to the last resume: no await. */
function attemptSwitch(target: SwitchTarget, plan: SwitchPlan): Attempt {
  const started = process.hrtime.bigint();
  const threads = target.freeze();
  let outcome: Attempt;
  try {
    const hits = findBusy(threads, plan.busy, (t) => target.readStack(t));
    if (hits.length > 0) {
      outcome = { done: false, hits };
    } else {
      outcome = { done: true, freezeMs: 0, originals: writeAll(target, plan.writes) };
    }
  } finally {
    target.resume();
  }
  if (outcome.done) outcome.freezeMs = Number(process.hrtime.bigint() - started) / 1e6;
  return outcome;
}

/** Do every write; if one fails, put back what was written before, then fail. */
function writeAll(target: SwitchTarget, writes: readonly CodeWrite[]): Buffer[] {
  const originals = writes.map((w) => target.read(w.addr, w.bytes.length));
  let done = 0;
  try {
    for (const w of writes) {
      target.write(w.addr, w.bytes);
      done++;
    }
  } catch (e) {
    for (let i = done - 1; i >= 0; i--) {
      try {
        target.write(writes[i].addr, originals[i]);
      } catch {
        // Keep restoring the others; the first error is what the user sees.
      }
    }
    throw e;
  }
  return originals;
}

function checkWrites(writes: readonly CodeWrite[]): void {
  const sorted = [...writes].sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1].addr + BigInt(sorted[i - 1].bytes.length) > sorted[i].addr) {
      throw new TspliceError('internal', `two code writes overlap at 0x${sorted[i].addr.toString(16)}`);
    }
  }
}

function busyError(target: SwitchTarget, hits: readonly BusyHit[], tries: number): TspliceError {
  const first = hits[0];
  const how = first.where === 'ip' ? 'is executing it' : 'has a return address into it on its stack';
  const others = hits.length > 1 ? ` (and ${hits.length - 1} more thread/function pair${hits.length > 2 ? 's' : ''})` : '';
  return new TspliceError(
    'code_busy',
    `function ${first.function} is in use in ${target.label}: thread ${first.tid} (${first.threadName}) ${how}${others}; ` +
      `tried ${tries} time${tries > 1 ? 's' : ''}. Nothing was changed. Try again when the program is less busy, or with more retries.`,
    {
      target: target.label,
      tries,
      busy: hits.map((h) => ({
        tid: h.tid,
        threadName: h.threadName,
        function: h.function,
        where: h.where,
        address: '0x' + h.address.toString(16),
      })),
    },
  );
}
