// The kernel's own record of live patches: /sys/kernel/livepatch/<patch>/
// (enabled, transition) with one directory per patched object and, inside,
// one per function ("name,sympos"). The order patches were applied in, which
// livepatch stacks them by, is the order their modules were loaded:
// /proc/modules lists the newest module first.

import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TspliceError } from '../../../errors.js';

export const LIVEPATCH_SYSFS = '/sys/kernel/livepatch';

export interface PatchedFunction {
  name: string;
  /** 0: the name is unique in its object. */
  sympos: number;
}

export interface PatchedObject {
  /** `vmlinux` or a module name. */
  name: string;
  /** The object is loaded and patched (a module object may wait for its module to load). */
  patched: boolean;
  functions: PatchedFunction[];
}

export interface LivepatchState {
  /** The patch's module name (its sysfs directory). */
  module: string;
  enabled: boolean;
  /** A transition (patching or unpatching) of this patch is in progress. */
  transition: boolean;
  objects: PatchedObject[];
}

function readFlag(path: string): boolean {
  return readFileSync(path, 'utf8').trim() === '1';
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The kernel was built with livepatch (CONFIG_LIVEPATCH) and sysfs shows it. */
export function checkLivepatchSupport(root = LIVEPATCH_SYSFS): void {
  if (!isDirectory(root)) {
    throw new TspliceError('bad_input',
      `${root} does not exist: this kernel has no live patching support (CONFIG_LIVEPATCH) or sysfs is not mounted`);
  }
}

/** Names of all live patches the kernel has (tsplice's or not). */
export function livepatchNames(root = LIVEPATCH_SYSFS): string[] {
  if (!isDirectory(root)) return [];
  return readdirSync(root).filter((n) => isDirectory(join(root, n)));
}

/** One patch's state, or undefined when the kernel has no patch of that name (any more). */
export function livepatchState(module: string, root = LIVEPATCH_SYSFS): LivepatchState | undefined {
  const dir = join(root, module);
  try {
    const enabled = readFlag(join(dir, 'enabled'));
    const transition = readFlag(join(dir, 'transition'));
    const objects: PatchedObject[] = [];
    for (const object of readdirSync(dir)) {
      const objectDir = join(dir, object);
      if (!isDirectory(objectDir)) continue;
      const functions: PatchedFunction[] = [];
      for (const entry of readdirSync(objectDir)) {
        const m = /^(.+),(\d+)$/.exec(entry);
        if (m && isDirectory(join(objectDir, entry))) functions.push({ name: m[1], sympos: Number(m[2]) });
      }
      const patchedFile = join(objectDir, 'patched');
      objects.push({ name: object, patched: existsSync(patchedFile) && readFlag(patchedFile), functions });
    }
    return { module, enabled, transition, objects };
  } catch (e) {
    // The patch was freed between listing and reading.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Whether the kernel still has the patch (its sysfs directory goes when it is freed after being disabled). */
export function livepatchExists(module: string, root = LIVEPATCH_SYSFS): boolean {
  return isDirectory(join(root, module));
}

/** Write the patch's `enabled` attribute: 0 disables it, or reverses a transition in progress. */
export function writeEnabled(module: string, enabled: boolean, root = LIVEPATCH_SYSFS): void {
  try {
    writeFileSync(join(root, module, 'enabled'), enabled ? '1' : '0');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new TspliceError('permission', `not allowed to change live patch ${module}: run as root`, { module });
    }
    if (code === 'ENOENT') throw new TspliceError('not_applied', `live patch ${module} is gone`, { module });
    throw new TspliceError('code_busy',
      `the kernel refused to ${enabled ? 'enable' : 'disable'} live patch ${module} (${code}): another transition may be in progress; retry`,
      { module });
  }
}

/** Module names, oldest loaded first (the reverse of /proc/modules). */
export function moduleLoadOrder(path = '/proc/modules'): string[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter(Boolean).map((l) => l.split(' ')[0]).reverse();
}
