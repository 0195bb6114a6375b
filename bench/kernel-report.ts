// The kernel section of the table: create time from the prepared tree, and
// apply → transition complete in the guest, with Ksplice's pause for reference.
import type { KernelCycleFailure, KernelCycleSample } from './kernel-apply.js';
import type { KernelResults } from './kernel.js';
import { max, median } from './stats.js';
import { fixed, renderTable } from './table.js';

export const KERNEL_TITLE = 'Kernel live patching';

/**
 * Ksplice's stop_machine pause to switch to the new code (Arnold & Kaashoek,
 * EuroSys 2009): livepatch has no such pause, its tasks switch one by one.
 */
const KSPLICE_PAUSE_MS = 0.7;

/** The rows of the guest table: what each one measures, and where its samples come from. */
const APPLY_STEPS: ReadonlyArray<readonly [string, (s: KernelCycleSample) => number]> = [
  ['verify: run-pre match against live memory', (s) => s.verifyMs],
  ['load: init_module and klp_enable_patch', (s) => s.loadMs],
  ['transition: until every task runs the new code', (s) => s.transitionMs],
  ['whole tsplice apply, in the guest (node start-up included)', (s) => s.applyWallMs],
  ['undo transition: back to the old code', (s) => s.undoTransitionMs],
];

export function renderKernel(section: number, k: KernelResults): string[] {
  const release = k.apply?.release ?? k.create?.tree.release ?? 'the pinned Debian kernel';
  const out: string[] = [
    `${section}. ${KERNEL_TITLE}: ${release} (needs QEMU, and ~500 MB of downloads and a prepared source tree on its first run; ` +
      '--no-kernel skips it)',
  ];
  const c = k.create;
  if (c) {
    out.push(`prepared source tree: ${c.tree.cached ? 'from the cache' : `prepared by this run in ${fixed(c.tree.seconds, 1)} s ` +
      '(extract, olddefconfig, prepare; cached afterwards)'}`);
    out.push('Time to create a one-file update from the prepared tree (build pre and post objects, diff, match, livepatch module)');
    out.push(renderTable(['update', 'patches', 'functions', 'runs', 'create median s', 'min s', 'max s'], c.updates.map((u) => [
      u.patch, u.objects.join(', '), String(u.functions), String(u.seconds.length), fixed(median(u.seconds), 2),
      fixed(Math.min(...u.seconds), 2), fixed(max(u.seconds), 2),
    ]), ['left', 'left']));
  }
  const a = k.apply;
  if (a) {
    out.push('', `Time from apply to transition complete, in one boot of the guest (${a.cpus} vCPUs, booted in ` +
      `${fixed(a.bootMs / 1000, 1)} s): ${a.cyclesRequested} tsplice apply/undo --kernel cycles per update; ` +
      'step times are the CLI\'s --json ones. QEMU emulates the CPU (TCG): CPU-bound steps run ' +
      'several times slower than on hardware');
    const rows: string[][] = [];
    for (const u of a.updates) {
      APPLY_STEPS.forEach(([label, pick], i) => {
        const values = u.samples.map(pick);
        rows.push([i === 0 ? u.id : '', label, String(values.length), fixed(median(values), 1), fixed(max(values), 1)]);
      });
    }
    out.push(renderTable(['update', 'step', 'cycles', 'median ms', 'max ms'], rows, ['left', 'left']));
    for (const u of a.updates) {
      if (u.failures.length > 0) out.push(`failed commands, ${u.id}: ${summarizeFailures(u.failures)}`);
    }
  }
  if (k.error !== undefined) out.push(`the kernel part failed: ${k.error}`);
  out.push(`reference: Ksplice pauses the whole machine (stop_machine) for about ${KSPLICE_PAUSE_MS} ms to switch; ` +
    'livepatch\'s per-task consistency model replaces that pause by the transition above, in ms, while the system keeps ' +
    'running (each task switches once its stack holds no patched function)');
  return out;
}

/** Failures by step and code, with the first message of each. */
function summarizeFailures(failures: readonly KernelCycleFailure[]): string {
  const groups = new Map<string, { count: number; first: KernelCycleFailure }>();
  for (const f of failures) {
    const key = `${f.phase} ${f.code}`;
    const group = groups.get(key) ?? { count: 0, first: f };
    group.count++;
    groups.set(key, group);
  }
  return [...groups].map(([k, g]) => `${g.count}× ${k} (first in cycle ${g.first.cycle}: ${g.first.message})`).join('; ');
}
