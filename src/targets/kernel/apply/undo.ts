// `tsplice undo ID --kernel`: disable the update's live patch, wait for every
// task to leave its new code, unload the module. Updates stack, so only the
// most recently applied one may be undone; undo the later ones first.

import { TspliceError } from '../../../errors.js';
import { type Progress, silentProgress } from '../../../progress.js';
import { DEFAULT_TRANSITION_TIMEOUT_MS } from './apply.js';
import { checkLivepatchSupport, livepatchExists, writeEnabled } from './livepatch-sysfs.js';
import { type KernelUpdateInfo, listKernelUpdates } from './list.js';
import { moduleLoaded, unloadModule } from './module-loader.js';
import { describeTasks } from './tasks.js';
import { waitForTransition } from './transition.js';
import { MODULE_PREFIX, kernelModuleName } from './update.js';

export interface KernelUndoOptions {
  timeoutMs?: number;
  progress?: Progress;
}

export interface KernelUndoResult {
  id: string;
  module: string;
  /** From disabling to every task running the old code again (0 when only a leftover module was unloaded). */
  transitionMs: number;
  functions: KernelUpdateInfo['functions'];
}

export async function undoKernelUpdate(id: string, options: KernelUndoOptions = {}): Promise<KernelUndoResult> {
  const progress = options.progress ?? silentProgress;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TRANSITION_TIMEOUT_MS;
  checkLivepatchSupport();
  const updates = listKernelUpdates();
  // The id as given, as `list` shows it, or the module name.
  const entry = updates.find((u) => u.id === id || u.module === id) ?? updates.find((u) => u.module === kernelModuleName(id));
  const module = entry?.module ?? (id.startsWith(MODULE_PREFIX) ? id : kernelModuleName(id));
  if (!entry) {
    if (moduleLoaded(module)) {
      // Disabled earlier but never unloaded (an interrupted undo): finish the job.
      await unloadModule(module, timeoutMs);
      return { id, module, transitionMs: 0, functions: [] };
    }
    const applied = updates.map((u) => u.id).join(', ');
    throw new TspliceError('not_applied',
      `update ${id} is not applied to this kernel${applied ? ` (applied: ${applied})` : ' (no tsplice update is)'}; tsplice list --kernel shows what is`,
      { id });
  }
  const above = updates.filter((u) => u.order > entry.order);
  if (above.length > 0) {
    const ids = above.map((u) => u.id).reverse();
    throw new TspliceError('bad_input',
      `update ${entry.id} cannot be undone while ${ids.join(', ')} ${ids.length === 1 ? 'is' : 'are'} applied on top of it: ` +
        `updates are undone last-in, first-out; undo ${ids.join(', then ')} first`,
      { id: entry.id, above: ids });
  }
  if (entry.transition) {
    throw new TspliceError('code_busy', `update ${entry.id} is being ${entry.enabled ? 'applied' : 'undone'} right now; wait and retry`, { id: entry.id });
  }

  progress.step(`disabling ${module}`);
  writeEnabled(module, false);
  const outcome = await waitForTransition(module, 'unpatched', { timeoutMs, progress });
  if (!outcome.done) {
    progress.fail();
    // Go back to fully patched rather than leave the kernel half way.
    writeEnabled(module, true);
    await waitForTransition(module, 'patched', { timeoutMs, progress: silentProgress });
    throw new TspliceError('code_busy',
      `update ${entry.id} was not undone: ${outcome.pending.length} task(s) kept running its new code for ${(outcome.ms / 1000).toFixed(1)} s: ` +
        `${describeTasks(outcome.pending)}. The update stays applied; retry when these tasks are idle, or give a longer --timeout.`,
      { id: entry.id, module, tasks: outcome.pending });
  }
  const deadline = Date.now() + timeoutMs;
  while (livepatchExists(module) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await unloadModule(module, timeoutMs);
  progress.done(`${module} removed`);
  return { id: entry.id, module, transitionMs: outcome.ms, functions: entry.functions };
}
