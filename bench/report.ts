// The results of a run, and their plain-text table.
import type { CallOverheadResult } from './call-overhead.js';
import type { CycleRun } from './cycles.js';
import type { FreezeResult } from './freeze.js';
import type { KernelResults } from './kernel.js';
import { KERNEL_TITLE, renderKernel } from './kernel-report.js';
import { FREEZE_GOAL, type FreezeGoalVerdict, type GrowthVerdict, soakPassed } from './goals.js';
import type { MachineInfo } from './machine.js';
import type { BenchOptions } from './options.js';
import type { SoakResult } from './soak.js';
import { median, percentile } from './stats.js';
import { fixed, renderPairs, renderTable } from './table.js';

export interface BenchResults {
  startedAt: string;
  seconds: number;
  machine: MachineInfo;
  /** 1-minute load average before and after: other work on the machine inflates every time. */
  loadAverage: { start: number; end: number };
  options: BenchOptions;
  /** Sections 1-4 (absent with --kernel-only). */
  processes?: ProcessResults;
  /** The kernel section (absent with --no-kernel). */
  kernel?: KernelResults;
}

/** Live patching of processes: freeze, apply time, call overhead, soak. */
export interface ProcessResults {
  freeze: FreezeResult[];
  growth: GrowthVerdict;
  freezeGoal?: FreezeGoalVerdict;
  callOverhead: CallOverheadResult;
  /** createUpdate of the bench's own project (one run) and of the demo (several). */
  create: { benchProjectSeconds: number; demoSeconds: number[] };
  soak?: SoakResult;
}

export function renderReport(r: BenchResults): string {
  const m = r.machine;
  const out: string[] = [];
  out.push('tsplice benchmark');
  out.push(renderPairs([
    ['machine', `${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Linux ${m.kernel}, ${m.distribution}`],
    ['tools', `tsplice ${m.tsplice}, node ${m.node}, gcc ${m.gcc}, koffi ${m.koffi}, iced-x86 ${m.icedX86}`],
    ['load average', `${fixed(r.loadAverage.start, 2)} at start, ${fixed(r.loadAverage.end, 2)} at end (other work on the machine inflates times)`],
    ['run', `${r.startedAt}, ${fixed(r.seconds, 0)} s${r.options.quick ? ', --quick' : ''}`],
  ]));
  if (r.processes) out.push(...renderProcesses(r.processes, r.options));
  const kernelSection = r.processes ? (r.processes.soak ? 5 : 4) : 1;
  out.push('', ...(r.kernel ? renderKernel(kernelSection, r.kernel) : [`${kernelSection}. ${KERNEL_TITLE}: skipped (--no-kernel)`]));
  return out.join('\n') + '\n';
}

function renderProcesses(r: ProcessResults, options: BenchOptions): string[] {
  const out: string[] = [];

  out.push('', `1. Freeze time: how long the target's threads stay stopped (${options.cycles} apply/undo cycles per target; ` +
    'apply and undo freezes together)');
  out.push(renderTable(
    ['target (threads call the patched function)', 'threads', 'freezes', 'median ms', 'p99 ms', 'max ms', 'apply med', 'undo med',
      'µs/thread', 'retried', 'failed', 'alive'],
    r.freeze.map((f) => [
      f.target.label, String(f.target.threads), String(f.run.samples.length * 2), fixed(f.freezeMs.median, 3),
      fixed(f.freezeMs.p99, 3), fixed(f.freezeMs.max, 3), fixed(f.freezeMs.applyMedian, 3), fixed(f.freezeMs.undoMedian, 3),
      fixed(f.perThreadUs, 1), String(f.retried), String(f.run.failures.length), f.targetAlive ? 'yes' : 'NO',
    ]),
  ));
  for (const s of r.growth.steps) {
    out.push(`growth ${s.fromThreads} → ${s.toThreads} threads (×${fixed(s.threadFactor, 0)}): median freeze ×${fixed(s.freezeFactor, 2)}, ` +
      `${fixed(s.marginalUs, 1)} µs per extra thread`);
  }
  out.push(`freeze grows no faster than linearly with threads: ${r.growth.linearOrBetter ? 'YES' : 'NO'}`);
  if (r.freezeGoal) {
    out.push(`goal: median freeze under ${FREEZE_GOAL.medianMs} ms at ${FREEZE_GOAL.threads} threads: ` +
      `${fixed(r.freezeGoal.medianMs, 3)} ms  ${r.freezeGoal.pass ? 'PASS' : 'MISS'}`);
  }
  for (const f of r.freeze) {
    if (f.run.failures.length > 0) out.push(`failed attempts, ${f.target.label}: ${summarizeFailures(f.run)}`);
    if (f.run.stoppedEarly) out.push(`${f.target.label}: stopped early: ${f.run.stoppedEarly}`);
  }

  out.push('', '2. Whole apply time (medians; read+apply = from reading the update package to done)');
  const timeRows = r.freeze.map((f) => applyTimeRow(f.target.label, f.run));
  if (r.soak) timeRows.push(applyTimeRow('echod (demo server, under soak load)', r.soak.run));
  out.push(renderTable(['target', 'read+apply ms', 'p99 ms', 'apply totalMs', 'undo totalMs'], timeRows));
  out.push(renderTable(['update', 'runs', 'create median s'], [
    ['demo/server fix-echo-overread.patch', String(r.create.demoSeconds.length), fixed(median(r.create.demoSeconds), 3)],
    ['bench project (work.c constant)', '1', fixed(r.create.benchProjectSeconds, 3)],
  ]));

  const c = r.callOverhead;
  out.push('', `3. Call overhead: ${c.rounds} rounds of ${c.callsPerRound.toLocaleString('en-US')} calls per phase, ` +
    `in ${c.blocks} apply/undo alternations (patched calls go through the 5-byte jump)`);
  const signed = (v: number): string => `${v >= 0 ? '+' : ''}${fixed(v, 3)}`;
  out.push(renderTable(['phase', 'median ns/call', 'min ns/call'], [
    ['unpatched', fixed(c.unpatchedNs.median, 3), fixed(c.unpatchedNs.min, 3)],
    ['patched', fixed(c.patchedNs.median, 3), fixed(c.patchedNs.min, 3)],
    ['overhead of the jump', signed(c.overheadNs.median), signed(c.overheadNs.min)],
  ]));

  const s = r.soak;
  if (s) {
    out.push('', `4. Soak: apply/undo cycles of the demo fix against echod under a steady load (${options.rate} requests/s, ` +
      `${fixed(s.seconds, 0)} s)`);
    out.push(renderTable(['count', 'value'], [
      ['cycles done', `${s.run.samples.length} of ${s.cyclesRequested}`],
      ['failed apply/undo attempts', String(s.run.failures.length)],
      ['requests sent', String(s.load.sent)],
      ['  answered correctly', String(s.load.ok)],
      ['    only the unpatched answer fits', String(s.load.oldReplies)],
      ['    only the patched answer fits', String(s.load.newReplies)],
      ['failed requests', String(s.failedRequests)],
      ['  connection errors', String(s.load.connectErrors)],
      ['  send/receive errors, timeouts (5 s)', String(s.load.ioErrors)],
      ['  wrong replies', String(s.load.wrongReplies)],
      ['slowest request ms', fixed(s.load.maxLatencyUs / 1000, 1)],
      ['crashes (server gone)', String(s.crashes)],
      ['server answers after the soak', s.hung ? 'NO (hung)' : s.crashes > 0 ? '-' : 'yes'],
    ]));
    if (s.run.stoppedEarly) out.push(`the soak stopped early: ${s.run.stoppedEarly}`);
    if (s.run.failures.length > 0) out.push(`failed attempts: ${summarizeFailures(s.run)}`);
    out.push(`goal: zero failed requests and zero crashes over all cycles: ${soakPassed(s) ? 'PASS' : 'MISS'}`);
  }
  return out;
}

function applyTimeRow(label: string, run: CycleRun): string[] {
  const wall = run.samples.map((x) => x.applyWallMs);
  return [
    label, fixed(median(wall), 1), fixed(percentile(wall, 99), 1), fixed(median(run.samples.map((x) => x.applyTotalMs)), 1),
    fixed(median(run.samples.map((x) => x.undoTotalMs)), 1),
  ];
}

/** Failures by step and code, with the first message of each. */
function summarizeFailures(run: CycleRun): string {
  const groups = new Map<string, { count: number; first: string; cycle: number }>();
  for (const f of run.failures) {
    const key = `${f.phase} ${f.code}`;
    const group = groups.get(key) ?? { count: 0, first: f.message, cycle: f.cycle };
    group.count++;
    groups.set(key, group);
  }
  return [...groups].map(([k, g]) => `${g.count}× ${k} (first in cycle ${g.cycle}: ${g.first})`).join('; ');
}

/** The results for --json: everything, with raw samples. */
export function reportJson(r: BenchResults): string {
  return JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
}
