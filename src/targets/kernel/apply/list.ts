// `tsplice list --kernel`: the updates tsplice applied to this kernel, as
// the kernel records them (no state of tsplice's own), in the order they
// were applied — the order they stack in and must be undone in reverse.

import { LIVEPATCH_SYSFS, livepatchNames, livepatchState, moduleLoadOrder, type PatchedFunction } from './livepatch-sysfs.js';
import { MODULE_PREFIX, updateIdOfModule } from './update.js';

export interface KernelUpdateInfo {
  /** The update id, as the module name keeps it. */
  id: string;
  module: string;
  /** 1 for the first applied (bottom of the stack). */
  order: number;
  enabled: boolean;
  /** Being applied or undone right now. */
  transition: boolean;
  state: 'applied' | 'applying' | 'undoing';
  functions: Array<PatchedFunction & { object: string; objectLoaded: boolean }>;
}

export function listKernelUpdates(root = LIVEPATCH_SYSFS): KernelUpdateInfo[] {
  const loadOrder = moduleLoadOrder();
  const rank = (m: string) => {
    const i = loadOrder.indexOf(m);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  const modules = livepatchNames(root).filter((n) => n.startsWith(MODULE_PREFIX)).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const out: KernelUpdateInfo[] = [];
  for (const module of modules) {
    const state = livepatchState(module, root);
    if (!state) continue;
    out.push({
      id: updateIdOfModule(module),
      module,
      order: out.length + 1,
      enabled: state.enabled,
      transition: state.transition,
      state: !state.transition ? 'applied' : state.enabled ? 'applying' : 'undoing',
      functions: state.objects.flatMap((o) => o.functions.map((f) => ({ object: o.name, objectLoaded: o.patched, ...f }))),
    });
  }
  return out;
}

/** Plain-words lines for a terminal. */
export function formatKernelUpdates(updates: KernelUpdateInfo[]): string {
  if (updates.length === 0) return 'no tsplice updates are applied to this kernel\n';
  return updates.map((u) => {
    const functions = u.functions.map((f) => `${f.object === 'vmlinux' ? '' : `${f.object}:`}${f.name}${f.sympos > 0 ? `,${f.sympos}` : ''}`);
    return `${u.order}. ${u.id} (${u.state}) — ${functions.join(', ')}\n`;
  }).join('');
}
