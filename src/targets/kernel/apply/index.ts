// The operator side of kernel live patching, run on the machine to patch:
// apply (verify against live memory, load, wait for the transition), list
// and undo, all from the kernel's own record of its live patches.

export { applyKernelUpdate, openRunningKernel, DEFAULT_TRANSITION_TIMEOUT_MS, type KernelApplyOptions, type KernelApplyResult } from './apply.js';
export { listKernelUpdates, formatKernelUpdates, type KernelUpdateInfo } from './list.js';
export { undoKernelUpdate, type KernelUndoOptions, type KernelUndoResult } from './undo.js';
export { verifyKernelUpdate, type RunningKernel, type VerifiedFunction } from './verify.js';
export {
  kernelUpdateFromPackage, kernelModuleName, livepatchModule, readModinfo, MODULE_PREFIX,
  type KernelUpdate, type KernelFunctionRecord, type LivepatchModule,
} from './update.js';
export { KernelSymbols, VMLINUX, type KernelSymbol } from './kallsyms.js';
export { KcoreReader } from './kcore.js';
export { kernelObjectImage } from './running-kernel.js';
export { SpecialSiteIndex, specialSites, type SpecialSites } from './special-sites.js';
export { kernelTolerances } from './tolerances/index.js';
