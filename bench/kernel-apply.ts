// Apply/undo cycles of kernel updates in one boot of the pinned kernel under
// QEMU, through the compiled tsplice CLI as an operator runs it there
// (`tsplice apply UPDATE --kernel --json`, then `tsplice undo ID --kernel --json`).
// The CLI reports verify, load and transition times; the guest driver adds
// the whole command's wall time, node's start-up included.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { vmRun } from '../src/targets/kernel/vm/index.js';
import { DIST_CLI, ensureBuilt } from '../test/helpers/dist.js';

const GUEST_DRIVER = fileURLToPath(new URL('./fixtures/kernel-guest-cycles.mjs', import.meta.url));
const STEP_PREFIX = 'tsplice-bench-step ';
/** binfmt_misc must be loaded (its update patches the module) and mounted (its check reads the status file). */
const GUEST_MODULES = ['binfmt_misc'];
const GUEST_SETUP = 'mount -t binfmt_misc none /proc/sys/fs/binfmt_misc';

export interface KernelUpdateToApply {
  id: string;
  path: string;
}

export interface KernelCycleSample {
  /** From the CLI's apply --json: run-pre matching against live memory, init_module, and the transition. */
  verifyMs: number;
  loadMs: number;
  transitionMs: number;
  /** The whole `tsplice apply` command, spawn to exit, measured in the guest. */
  applyWallMs: number;
  /** From the CLI's undo --json: disabling until every task runs the old code again. */
  undoTransitionMs: number;
  undoWallMs: number;
}

export interface KernelCycleFailure {
  cycle: number;
  phase: 'apply' | 'undo';
  code: string;
  message: string;
}

export interface KernelUpdateCycles {
  id: string;
  samples: KernelCycleSample[];
  failures: KernelCycleFailure[];
}

export interface KernelApplyMeasurement {
  release: string;
  cyclesRequested: number;
  /** From starting QEMU to the driver starting, and to the guest powering off. */
  bootMs: number;
  guestMs: number;
  cpus: number;
  updates: KernelUpdateCycles[];
}

/** One line of the guest driver: a CLI command's wall time and its --json result. */
interface GuestStep {
  id: string;
  cycle: number;
  phase: 'apply' | 'undo';
  wallMs: number;
  result: {
    ok: boolean;
    verifyMs?: number;
    loadMs?: number;
    transitionMs?: number;
    error?: { code: string; message: string };
  };
}

const GUEST_CPUS = 2;

export async function measureKernelApply(updates: readonly KernelUpdateToApply[], cycles: number,
  log: (text: string) => void): Promise<KernelApplyMeasurement> {
  log('kernel: the compiled CLI for the guest (npm run build when src/ is newer than dist/)');
  ensureBuilt();
  const command = [
    'sh', '-c', `${GUEST_SETUP} && exec node "$@"`, 'sh',
    GUEST_DRIVER, DIST_CLI, String(cycles), ...updates.map((u) => `${u.id}=${u.path}`),
  ];
  const vm = await vmRun({
    command,
    copy: [...new Set(updates.map((u) => dirname(u.path))), GUEST_DRIVER],
    modules: GUEST_MODULES,
    cpus: GUEST_CPUS,
    quiet: true,
    progress: (message) => log(`kernel: ${message}`),
    // Boot, then about 5 s per CLI command under TCG; generous so only a hang trips it.
    timeoutMs: 120_000 + updates.length * cycles * 60_000,
  });
  const steps = vm.stdout.split('\n').filter((l) => l.startsWith(STEP_PREFIX))
    .map((l) => JSON.parse(l.slice(STEP_PREFIX.length)) as GuestStep);
  if (vm.exitCode !== 0 || steps.length === 0) {
    throw new Error(`the guest's apply/undo cycles failed (exit status ${vm.exitCode}):\n${vm.stdout}${vm.stderr}`);
  }
  return {
    release: vm.release,
    cyclesRequested: cycles,
    bootMs: vm.bootMs,
    guestMs: vm.totalMs,
    cpus: GUEST_CPUS,
    updates: updates.map((u) => cyclesOf(u.id, steps.filter((s) => s.id === u.id))),
  };
}

/** Pair each successful apply with the undo of its cycle; failed steps are listed apart. */
function cyclesOf(id: string, steps: readonly GuestStep[]): KernelUpdateCycles {
  const samples: KernelCycleSample[] = [];
  const failures: KernelCycleFailure[] = [];
  for (const step of steps) {
    if (!step.result.ok) {
      const error = step.result.error ?? { code: 'internal', message: 'no error in the JSON result' };
      failures.push({ cycle: step.cycle, phase: step.phase, code: error.code, message: error.message });
    }
  }
  for (const apply of steps.filter((s) => s.phase === 'apply' && s.result.ok)) {
    const undo = steps.find((s) => s.phase === 'undo' && s.cycle === apply.cycle && s.result.ok);
    if (!undo) continue;
    samples.push({
      verifyMs: apply.result.verifyMs ?? NaN,
      loadMs: apply.result.loadMs ?? NaN,
      transitionMs: apply.result.transitionMs ?? NaN,
      applyWallMs: apply.wallMs,
      undoTransitionMs: undo.result.transitionMs ?? NaN,
      undoWallMs: undo.wallMs,
    });
  }
  return { id, samples, failures };
}
