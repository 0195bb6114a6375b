// Which .ko files to load, in which order, for a set of module names. Debian's
// image package ships no modules.dep (depmod runs at install time), so the
// dependencies are read from each module's own .modinfo "depends=" entry.

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { TspliceError } from '../../../errors.js';

/** Module name (underscores, as lsmod shows it) → .ko path, for every module under modulesDir. */
export function indexModules(modulesDir: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ko')) index.set(moduleName(entry.name.slice(0, -3)), path);
    }
  };
  walk(join(modulesDir, 'kernel'));
  return index;
}

/** Module names treat "-" and "_" alike; the kernel reports them with "_". */
export function moduleName(name: string): string {
  return name.replaceAll('-', '_');
}

/** The modules a .ko needs loaded first, from its .modinfo "depends=a,b". */
export function moduleDependencies(koPath: string): string[] {
  const bytes = readFileSync(koPath);
  // .modinfo holds NUL-separated key=value strings; "depends=" occurs once.
  const at = bytes.indexOf('\0depends=');
  if (at < 0) return [];
  const start = at + '\0depends='.length;
  const end = bytes.indexOf(0, start);
  const value = bytes.subarray(start, end < 0 ? bytes.length : end).toString('utf8');
  return value.split(',').filter(Boolean).map(moduleName);
}

/**
 * The .ko paths (relative to modulesDir) to insmod, dependencies first, each
 * once, for the given module names. Names the kernel has built in (listed in
 * modules.builtin) need nothing.
 */
export function moduleLoadOrder(modulesDir: string, names: string[]): string[] {
  const index = indexModules(modulesDir);
  const builtin = builtinModules(modulesDir);
  const order: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string): void => {
    const wanted = moduleName(name);
    if (done.has(wanted) || builtin.has(wanted)) return;
    const path = index.get(wanted);
    if (!path) {
      throw new TspliceError('bad_input', `kernel module "${name}" is not in ${modulesDir} nor built into the kernel`, {
        module: name,
      });
    }
    if (visiting.has(wanted)) return; // a cycle would be a broken package; load what we can
    visiting.add(wanted);
    for (const dependency of moduleDependencies(path)) visit(dependency);
    visiting.delete(wanted);
    done.add(wanted);
    order.push(relative(modulesDir, path));
  };
  for (const name of names) visit(name);
  return order;
}

function builtinModules(modulesDir: string): Set<string> {
  try {
    const text = readFileSync(join(modulesDir, 'modules.builtin'), 'utf8');
    return new Set(
      text
        .split('\n')
        .filter(Boolean)
        .map((line) => moduleName(line.slice(line.lastIndexOf('/') + 1).replace(/\.ko$/, ''))),
    );
  } catch {
    return new Set();
  }
}
