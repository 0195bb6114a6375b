// What applying a kernel update needs from its package: the livepatch
// module, the functions it replaces (object, name, sympos) and the pre
// objects to verify them against the running kernel. Read from the package's
// manifest (target kind "kernel") and files, and checked here, since nothing
// may be loaded into a kernel on the word of a malformed package.

import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseElf, sectionByName } from '../../../elf/reader.js';
import { TspliceError } from '../../../errors.js';
import { moduleNameFor } from '../klp-module.js';
import { VMLINUX } from './kallsyms.js';

export interface KernelFunctionRecord {
  /** `vmlinux` or the name of the module holding the function. */
  object: string;
  function: string;
  /** Position among same-named symbols of the object (livepatch's sympos); 0 when the name is unique. */
  sympos: number;
  kind: 'changed' | 'new' | 'deleted';
  /** The unit (pre object) the function comes from, and its symbol there. */
  unit?: string;
  preSymbol?: string;
}

export interface KernelUpdate {
  id: string;
  /** The kernel it was built for: `uname -r` and the Debian package version. */
  target: { release: string; version?: string };
  /** The livepatch module. */
  module: LivepatchModule;
  functions: KernelFunctionRecord[];
  /** Pre objects by unit name. */
  preObjects: Map<string, Buffer>;
}

export interface LivepatchModule {
  /** The module name the kernel will know it by (and /sys/kernel/livepatch/<name>). */
  name: string;
  /** `vermagic` from its .modinfo: the kernel release and options it was built for. */
  vermagic?: string;
  data: Buffer;
}

/** The prefix of every module tsplice loads; `list` and `undo` look only at these. */
export const MODULE_PREFIX = 'tsplice_';

/**
 * The module name for an update id: `tsplice_` + the id in lower case with
 * anything but [a-z0-9_] turned into `_`, at most 55 characters (the rule
 * `tsplice create --kernel` names modules by).
 */
export function kernelModuleName(id: string): string {
  return moduleNameFor(id);
}

/**
 * The update id of a loaded tsplice module: kept whole as its version
 * (MODULE_VERSION, in /sys/module/NAME/version), or, for a module without
 * one, as far as the name keeps it.
 */
export function updateIdOfModule(module: string, sysModule = '/sys/module'): string {
  try {
    const version = readFileSync(join(sysModule, module, 'version'), 'utf8').trim();
    if (version !== '') return version;
  } catch {
    // No version: a module built by hand or by an older tsplice.
  }
  return module.startsWith(MODULE_PREFIX) ? module.slice(MODULE_PREFIX.length) : module;
}

/** The key/value strings of a module's .modinfo section. */
export function readModinfo(data: Buffer, where: string): Map<string, string> {
  const elf = parseElf(data, where);
  const modinfo = sectionByName(elf, '.modinfo');
  if (!modinfo) throw new TspliceError('bad_input', `${where} has no .modinfo section: it is not a kernel module`);
  const out = new Map<string, string>();
  for (const entry of modinfo.data.toString('latin1').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0 && !out.has(entry.slice(0, eq))) out.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return out;
}

/** Check a livepatch module's bytes and read its name. */
export function livepatchModule(data: Buffer, where: string): LivepatchModule {
  const info = readModinfo(data, where);
  const name = info.get('name');
  if (!name) throw new TspliceError('bad_input', `${where} has no module name in .modinfo (not built by kbuild?)`);
  if (info.get('livepatch') !== 'Y') {
    throw new TspliceError('bad_input', `${where} is not a livepatch module (no MODULE_INFO(livepatch, "Y")); rebuild the update with tsplice create --kernel`);
  }
  const vermagic = info.get('vermagic');
  return { name, data, ...(vermagic !== undefined ? { vermagic } : {}) };
}

function corrupt(where: string, what: string): TspliceError {
  return new TspliceError('bad_input', `${where}: corrupt or foreign kernel update: ${what}; rebuild it with tsplice create --kernel`);
}

const isString = (v: unknown): v is string => typeof v === 'string';

/**
 * The kernel update of a package: `manifest` as parsed JSON, `files` by
 * package path. The module is the package's one `.ko` file; pre objects are
 * the units' `pre` files.
 */
export function kernelUpdateFromPackage(pkg: { manifest: unknown; files: Map<string, Buffer>; path?: string }): KernelUpdate {
  const where = pkg.path ?? 'update';
  const m = pkg.manifest as Record<string, unknown> | null;
  if (typeof m !== 'object' || m === null || !isString(m.id)) throw corrupt(where, 'no manifest id');
  const target = m.target as Record<string, unknown> | undefined;
  if (!target || target.kind !== 'kernel') {
    throw new TspliceError('bad_input', `${where} is not a kernel update (target kind "${String(target?.kind)}"); use --pid for process updates`);
  }
  if (!isString(target.release)) throw corrupt(where, 'target.release is missing');
  // The module: named by the manifest (target.module), else the package's one .ko file.
  const named = target.module as { name?: unknown; file?: unknown } | undefined;
  const modules = isString(named?.file) ? [named.file] : [...pkg.files.keys()].filter((f) => f.endsWith('.ko'));
  if (modules.length !== 1) throw corrupt(where, `expected one livepatch module (.ko), found ${modules.length}`);
  const data = pkg.files.get(modules[0]);
  if (!data) throw corrupt(where, `the livepatch module ${modules[0]} is missing`);
  const module = livepatchModule(data, `${basename(where)}:${modules[0]}`);
  if (isString(named?.name) && named.name !== module.name) {
    throw corrupt(where, `the manifest names the module ${named.name}, the module itself says ${module.name}`);
  }
  if (!module.name.startsWith(MODULE_PREFIX)) {
    throw corrupt(where, `the livepatch module is called ${module.name}; tsplice modules are called ${MODULE_PREFIX}<id>`);
  }

  const preObjects = new Map<string, Buffer>();
  for (const [i, u] of (Array.isArray(m.units) ? m.units : []).entries()) {
    const unit = u as Record<string, unknown>;
    if (!isString(unit.unit)) throw corrupt(where, `units[${i}].unit`);
    if (unit.pre === undefined) continue;
    if (!isString(unit.pre) || !pkg.files.has(unit.pre)) throw corrupt(where, `units[${i}].pre names a missing file`);
    preObjects.set(unit.unit, pkg.files.get(unit.pre)!);
  }
  if (!Array.isArray(m.functions)) throw corrupt(where, '"functions" is not a list');
  const functions = m.functions.map((f, i): KernelFunctionRecord => {
    const r = f as Record<string, unknown>;
    if (!isString(r.function)) throw corrupt(where, `functions[${i}].function`);
    const object = isString(r.object) ? r.object : VMLINUX;
    const sympos = r.sympos === undefined ? 0 : r.sympos;
    if (typeof sympos !== 'number' || !Number.isInteger(sympos) || sympos < 0) throw corrupt(where, `functions[${i}].sympos`);
    const kind = r.kind ?? 'changed';
    if (kind !== 'changed' && kind !== 'new' && kind !== 'deleted') throw corrupt(where, `functions[${i}].kind`);
    const pre = r.pre as { symbol?: unknown } | undefined;
    const record: KernelFunctionRecord = { object, function: r.function, sympos, kind };
    if (isString(r.unit)) record.unit = r.unit;
    if (pre && isString(pre.symbol)) record.preSymbol = pre.symbol;
    if (kind !== 'new' && record.unit !== undefined && !preObjects.has(record.unit)) {
      throw corrupt(where, `functions[${i}] (${r.function}) comes from unit ${record.unit}, which has no pre object`);
    }
    return record;
  });
  return {
    id: m.id,
    target: { release: target.release, ...(isString(target.version) ? { version: target.version } : {}) },
    module,
    functions,
    preObjects,
  };
}
