// `tsplice apply UPDATE --kernel`: verify the running kernel is the one the
// update was built for (run-pre matching of every replaced function against
// /proc/kcore), load the livepatch module, and wait for the kernel's
// consistency model to move every task onto the new code. On timeout the
// transition is reversed and the module unloaded: the kernel is left as it
// was, and code_busy names the tasks that held it up.

import { release as osRelease } from 'node:os';
import { TspliceError, asTspliceError } from '../../../errors.js';
import { type Progress, silentProgress } from '../../../progress.js';
import { KernelSymbols } from './kallsyms.js';
import { KcoreReader } from './kcore.js';
import { checkLivepatchSupport, livepatchExists, livepatchNames, livepatchState, writeEnabled } from './livepatch-sysfs.js';
import { loadModule, moduleLoaded, unloadModule } from './module-loader.js';
import { describeTasks, type PendingTask } from './tasks.js';
import { type TransitionOutcome, waitForTransition } from './transition.js';
import { type KernelUpdate, kernelUpdateFromPackage } from './update.js';
import { type RunningKernel, type VerifiedFunction, verifyKernelUpdate } from './verify.js';

export const DEFAULT_TRANSITION_TIMEOUT_MS = 30_000;

export interface KernelApplyOptions {
  /** Give up the transition (and reverse it) after this long; default 30 s. */
  timeoutMs?: number;
  progress?: Progress;
}

export interface KernelApplyResult {
  id: string;
  module: string;
  functions: VerifiedFunction[];
  /** Run-pre matching against live memory. */
  verifyMs: number;
  /** init_module, including the livepatch core's setup (klp_enable_patch). */
  loadMs: number;
  /** From the module being loaded to every task running the new code. */
  transitionMs: number;
  /** The kernel's fake signals were requested (only kernels before 5.1 offer that). */
  signalled: boolean;
}

type PackageLike = { manifest: unknown; files: Map<string, Buffer>; path?: string };

/** The running kernel, read live: kallsyms, kcore, uname -r. Close `memory` when done. */
export function openRunningKernel(): RunningKernel & { memory: KcoreReader } {
  const symbols = KernelSymbols.read();
  return { release: osRelease(), symbols, memory: new KcoreReader() };
}

export async function applyKernelUpdate(pkg: KernelUpdate | PackageLike, options: KernelApplyOptions = {}): Promise<KernelApplyResult> {
  const update = 'module' in pkg ? pkg : kernelUpdateFromPackage(pkg);
  const progress = options.progress ?? silentProgress;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TRANSITION_TIMEOUT_MS;
  const module = update.module.name;
  checkLivepatchSupport();
  if (livepatchExists(module) || moduleLoaded(module)) {
    throw new TspliceError('already_applied',
      `update ${update.id} is already applied to this kernel (module ${module}); tsplice list --kernel shows it`,
      { id: update.id, module });
  }

  progress.step(`verifying ${update.functions.length} function${update.functions.length === 1 ? '' : 's'} against the running kernel`);
  const verifyStart = Date.now();
  let functions: VerifiedFunction[];
  const kernel = openRunningKernel();
  try {
    functions = verifyKernelUpdate(update, kernel);
  } catch (e) {
    progress.fail();
    throw e;
  } finally {
    kernel.memory.close();
  }
  const verifyMs = Date.now() - verifyStart;
  progress.done();
  checkVermagic(update, kernel.release);

  const busy = livepatchNames().filter((n) => livepatchState(n)?.transition);
  if (busy.length > 0) {
    throw new TspliceError('code_busy',
      `live patch ${busy.join(', ')} is still in transition; wait until it finishes (or undo it) and apply again`,
      { module, busy });
  }

  progress.step(`loading ${module}`);
  const loadStart = Date.now();
  try {
    loadModule(module, update.module.data);
  } catch (e) {
    progress.fail();
    throw e;
  }
  const loadMs = Date.now() - loadStart;
  progress.done();

  try {
    progress.step('switching tasks to the new code');
    const outcome = await waitForTransition(module, 'patched', { timeoutMs, progress });
    if (!outcome.done) {
      progress.fail(`tasks did not switch within ${(timeoutMs / 1000).toFixed(1)} s`);
      await reverseAndUnload(module, timeoutMs, progress);
      throw busyError(update, outcome);
    }
    progress.done(`all tasks run the new code`);
    return { id: update.id, module, functions, verifyMs, loadMs, transitionMs: outcome.ms, signalled: outcome.signalled };
  } catch (e) {
    // Whatever went wrong after loading, the kernel must end as it was.
    if (livepatchExists(module) || moduleLoaded(module)) {
      await reverseAndUnload(module, timeoutMs, silentProgress).catch(() => undefined);
    }
    throw asTspliceError(e);
  }
}

function checkVermagic(update: KernelUpdate, release: string): void {
  const built = update.module.vermagic?.split(' ')[0];
  if (built !== undefined && built !== release) {
    throw new TspliceError('no_match',
      `the livepatch module of ${update.id} was built for kernel ${built}, this kernel is ${release}; nothing was loaded. Use an update built for ${release}.`,
      { module: update.module.name, builtFor: built, release });
  }
}

function busyError(update: KernelUpdate, outcome: TransitionOutcome & { done: false }): TspliceError {
  const tasks: PendingTask[] = outcome.pending;
  const who = tasks.length > 0 ? describeTasks(tasks) : 'tasks that finished meanwhile';
  return new TspliceError('code_busy',
    `update ${update.id} was not applied: ${tasks.length} task${tasks.length === 1 ? '' : 's'} kept running code it replaces for ` +
      `${(outcome.ms / 1000).toFixed(1)} s: ${who}. The transition was reversed and the module unloaded; the kernel is unchanged. ` +
      'Retry when these tasks are idle, or give a longer --timeout.',
    { id: update.id, module: update.module.name, tasks: tasks.map((t) => ({ pid: t.pid, tid: t.tid, comm: t.comm })) });
}

/** Reverse a transition in progress (or disable the patch), wait for the kernel to free it, unload its module. */
export async function reverseAndUnload(module: string, timeoutMs: number, progress: Progress): Promise<void> {
  if (livepatchExists(module)) {
    progress.step(`reversing ${module}`);
    const state = livepatchState(module);
    if (state?.enabled) writeEnabled(module, false);
    const back = await waitForTransition(module, 'unpatched', { timeoutMs, progress });
    if (!back.done) {
      progress.fail();
      throw new TspliceError('code_busy',
        `reversing ${module} did not finish within ${(timeoutMs / 1000).toFixed(1)} s (${describeTasks(back.pending)} still run its new code); ` +
          `the kernel keeps reversing it: run tsplice undo ${module} --kernel later to unload it`,
        { module, tasks: back.pending });
    }
    await waitUntilGone(module, timeoutMs);
    progress.done();
  }
  await unloadModule(module, timeoutMs);
}

/** After a disabling transition the kernel frees the patch asynchronously; its sysfs directory goes last. */
async function waitUntilGone(module: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (livepatchExists(module) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}
