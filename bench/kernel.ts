// The kernel part of the benchmark: create time of one-file kernel updates
// from the prepared tree, then apply → transition complete in a QEMU guest.
// A failure here (no QEMU, a download or build that fails) is recorded, not
// thrown, so the process results of the same run are still printed.
import { join } from 'node:path';
import { measureKernelApply, type KernelApplyMeasurement } from './kernel-apply.js';
import { measureKernelCreate, type KernelCreateMeasurement } from './kernel-create.js';

export interface KernelBenchOptions {
  /** createKernelUpdate runs per patch. */
  runs: number;
  /** Apply/undo cycles per update in the guest. */
  cycles: number;
}

export interface KernelResults {
  create?: KernelCreateMeasurement;
  apply?: KernelApplyMeasurement;
  /** Why the kernel part stopped early, when it did. */
  error?: string;
}

export async function measureKernel(workDir: string, options: KernelBenchOptions,
  log: (text: string) => void): Promise<KernelResults> {
  const results: KernelResults = {};
  try {
    results.create = await measureKernelCreate(join(workDir, 'kernel-updates'), options.runs, log);
    log(`kernel: ${options.cycles} apply/undo cycles per update in one QEMU boot`);
    results.apply = await measureKernelApply(results.create.updates, options.cycles, log);
  } catch (e) {
    results.error = e instanceof Error ? e.message : String(e);
    log(`kernel: failed: ${results.error}`);
  }
  return results;
}
