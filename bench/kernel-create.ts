// Kernel updates made from the patches of the kernel tests, each several
// times (the "create time" of the kernel section): the prepared source tree
// comes from the cache, made first and timed on its own when it is not there.
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKernelUpdate } from '../src/targets/kernel/create.js';
import { ensurePreparedTree } from '../src/targets/kernel/source-tree.js';

export const KERNEL_PATCHES_DIR = fileURLToPath(new URL('../test/kernel/patches', import.meta.url));

/** One patch to a vmlinux source file and one to a loadable module's. */
export const KERNEL_BENCH_PATCHES = ['cmdline.patch', 'binfmt-misc-module.patch'] as const;

export interface PreparedTreeTiming {
  /** The tree was already in the cache. */
  cached: boolean;
  /** Seconds this run spent preparing it (0 when cached). */
  seconds: number;
  release: string;
}

export interface CreatedKernelUpdate {
  patch: string;
  id: string;
  /** The package of the last run (every run writes the same one). */
  path: string;
  /** Objects patched (vmlinux or module names) and the count of functions replaced. */
  objects: string[];
  functions: number;
  /** Seconds of each createKernelUpdate run, from the patch to the written package. */
  seconds: number[];
}

export interface KernelCreateMeasurement {
  tree: PreparedTreeTiming;
  updates: CreatedKernelUpdate[];
}

export async function measureKernelCreate(outDir: string, runs: number, log: (text: string) => void): Promise<KernelCreateMeasurement> {
  log('kernel: the prepared source tree (extracted and prepared once, then cached)');
  const tree = await ensurePreparedTree({ progress: (message) => log(`kernel: ${message}`) });
  const timing: PreparedTreeTiming = { cached: tree.preparedSeconds === 0, seconds: tree.preparedSeconds, release: tree.release };

  const updates: CreatedKernelUpdate[] = [];
  for (const patch of KERNEL_BENCH_PATCHES) {
    const id = basename(patch, '.patch');
    const seconds: number[] = [];
    let last: Awaited<ReturnType<typeof createKernelUpdate>> | undefined;
    for (let run = 1; run <= runs; run++) {
      log(`kernel: create ${patch}, run ${run} of ${runs}`);
      const started = process.hrtime.bigint();
      last = await createKernelUpdate({ patchFile: join(KERNEL_PATCHES_DIR, patch), id, outDir });
      seconds.push(Number(process.hrtime.bigint() - started) / 1e9);
    }
    if (!last) throw new Error('no kernel create run');
    updates.push({
      patch, id, path: last.path, seconds,
      objects: last.manifest.objects.map((o) => o.name),
      functions: last.manifest.functions.length,
    });
  }
  return { tree: timing, updates };
}
