// Throwaway QEMU guests running the pinned Debian kernel, for kernel live-patching tests.

export { vmRun, type VmRunOptions, type VmRunResult } from './vm-run.js';
export {
  KERNEL_PIN,
  kernelRelease,
  kernelPackageNames,
  defaultCacheDir,
  ensureKernelPackages,
  ensureKernelImage,
  ensureKernelHeaders,
  ensureKernelSourceTarball,
  kernelDebugSymbols,
  type KernelPin,
  type KernelImage,
  type KernelHeaders,
  type KernelCacheOptions,
} from './kernel-packages.js';
export { moduleLoadOrder } from './module-deps.js';
export { findQemu, QEMU_BINARY } from './qemu.js';
export type { ProgressOption, ProgressSink } from './progress.js';
