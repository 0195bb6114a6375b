// The pinned kernel's headers package, for building the livepatch module.
//
// Debian's flavour directory has a one-line Makefile including the -common
// one by its absolute /usr/src path, which does not exist where the package
// is unpacked in the cache. Instead of editing that shared file (others may
// be rewriting it at the same moment), kbuild is run from the flavour
// directory with a private makefile that includes the unpacked -common one.

import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TspliceError } from '../../errors.js';
import {
  ensureKernelPackages, KERNEL_PIN, kernelPackageNames, kernelRelease, type KernelCacheOptions,
} from './vm/kernel-packages.js';

export interface HeadersTree {
  /** The flavour directory (kbuild's objtree): run make there. */
  buildDir: string;
  /** The -common directory's top Makefile (kbuild's srctree). */
  topMakefile: string;
  release: string;
}

export async function ensureHeadersTree(options: KernelCacheOptions = {}): Promise<HeadersTree> {
  const pin = options.pin ?? KERNEL_PIN;
  const names = kernelPackageNames(pin);
  const release = kernelRelease(pin);
  const root = await ensureKernelPackages('headers', [names.headers, names.headersCommon, names.kbuild], options);
  const src = join(root, 'usr', 'src');
  const common = readdirSync(src).find((d) => d === `linux-headers-${pin.abi}-common`);
  if (!common) throw new TspliceError('bad_input', `${src} has no linux-headers-${pin.abi}-common; remove ${root} and try again`);
  return { buildDir: join(src, `linux-headers-${release}`), topMakefile: join(src, common, 'Makefile'), release };
}

/** `make` arguments that build in the headers tree without touching its Makefile; writes the private makefile into workDir. */
export function headersMakeArgs(headers: HeadersTree, workDir: string): string[] {
  const makefile = join(workDir, 'Makefile.headers');
  writeFileSync(makefile, `include ${headers.topMakefile}\n`);
  return ['-C', headers.buildDir, '-f', makefile];
}
