// tsplice create --kernel: kernel source patch → update package holding a
// livepatch module for the pinned Debian kernel.
//
//   prepared tree (cached) → pre/post/lines objects of the changed files
//   → diff + the kernel's rules → run-pre match against the target's code
//   (which also finds each function's sympos) → patch objects → .ko → package

import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { diffUnit, type UnitDiff } from '../../analysis/diff.js';
import { readPatchFile } from '../../build/patch.js';
import { STB_LOCAL, STT_FUNC, SHN_UNDEF } from '../../elf/constants.js';
import { parseElf, type ElfFile, type ElfSymbol } from '../../elf/reader.js';
import { TspliceError } from '../../errors.js';
import { type Progress, silentProgress } from '../../progress.js';
import { checkUpdateId, type DataRecord, type FunctionRecord, MANIFEST_FORMAT, type Manifest, type PatchedObject,
  type UnitRecord } from '../../update/manifest.js';
import { sha256, writeUpdate } from '../../update/package.js';
import { TOOL_VERSION } from '../../version.js';
import { buildKernelObjects, type KernelUnit } from './kbuild-objects.js';
import { checkKernelChanges, meaningfulData, planUnit, shippedFunctions } from './kernel-diff.js';
import { comparePreCode } from './kernel-match.js';
import { type KernelSymbol, type KernelSymbols, loadKernelSymbols } from './kernel-symbols.js';
import { buildKlpModule, type KlpFunction, moduleNameFor } from './klp-module.js';
import { buildPatchObject, type KernelReference } from './patch-object.js';
import { ensureHeadersTree } from './headers.js';
import { ensurePreparedTree, type PreparedTree } from './source-tree.js';
import { defaultCacheDir, ensureKernelImage, KERNEL_PIN, kernelDebugSymbols, kernelRelease, type KernelPin } from './vm/kernel-packages.js';

export interface KernelCreateOptions {
  patchFile: string;
  /** A prepared kernel source tree to use instead of the cached one (must be prepared for the pinned kernel). */
  sourceDir?: string;
  /** Kernel config to prepare the tree with (default: the image's /boot/config). */
  config?: string;
  /** The `uname -r` the update is for; must be the pinned kernel's. */
  kernelRelease?: string;
  id?: string;
  outDir: string;
  progress?: Progress;
  keepWorkDir?: boolean;
  pin?: KernelPin;
  cacheDir?: string;
}

export interface KernelCreateResult {
  path: string;
  manifest: Omit<Manifest, 'hashes'>;
  moduleName: string;
  seconds: number;
  /** Seconds spent preparing the source tree (0 when it was cached). */
  prepareSeconds: number;
}

export async function createKernelUpdate(options: KernelCreateOptions): Promise<KernelCreateResult> {
  const started = process.hrtime.bigint();
  const progress = options.progress ?? silentProgress;
  const pin = options.pin ?? KERNEL_PIN;
  const release = kernelRelease(pin);
  if (options.kernelRelease !== undefined && options.kernelRelease !== release) {
    throw new TspliceError('bad_input', `tsplice builds kernel updates for ${release} (Debian ${pin.version}) only, ` +
      `not ${options.kernelRelease}; build on a machine/version of tsplice pinned to that kernel`, { release: options.kernelRelease });
  }
  if (options.id !== undefined) checkUpdateId(options.id);
  const patchText = readPatchFile(options.patchFile);
  const cache = { pin, cacheDir: options.cacheDir };
  const sink = (m: string): void => progress.detail(m);
  progress.step('preparing the kernel source tree');
  const tree: PreparedTree = options.sourceDir
    ? { dir: options.sourceDir, release, config: join(options.sourceDir, '.config'), preparedSeconds: 0 }
    : await ensurePreparedTree({ ...cache, config: options.config, progress: sink });
  progress.step('fetching the kernel\'s symbols and headers');
  const [image, headers, debug] = await Promise.all([
    ensureKernelImage({ ...cache, progress: sink }), ensureHeadersTree({ ...cache, progress: sink }),
    kernelDebugSymbols({ ...cache, progress: sink }),
  ]);
  const workDir = mkdtempSync(join(tmpdir(), 'tsplice-kcreate-'));
  try {
    const built = await buildKernelObjects({ tree, patchFile: resolve(options.patchFile), workDir, progress });

    progress.step('comparing object code');
    const diffs: Array<{ unit: KernelUnit; diff: UnitDiff; pre?: ElfFile; post: ElfFile }> = [];
    for (const unit of built.units) {
      const post = parseElf(readFileSync(unit.postObject), unit.object);
      const lines = parseElf(readFileSync(unit.linesObject), `${unit.object} (lines)`);
      const pre = unit.preObject ? parseElf(readFileSync(unit.preObject), unit.object) : undefined;
      const diff = diffUnit({ unit: unit.object, pre, post, lines });
      if (shippedFunctions(diff).length > 0 || meaningfulData(diff.data).length > 0) diffs.push({ unit, diff, pre, post });
    }
    checkKernelChanges(diffs.map((d) => ({ unit: d.unit.object, diff: d.diff })));
    if (!diffs.some((d) => d.diff.functions.some((f) => f.kind === 'changed'))) {
      throw new TspliceError('bad_input', 'the patch changes no existing function\'s machine code (only comments, ' +
        'unused code or data?): there is nothing to apply');
    }

    progress.step('matching the pre code against the target kernel');
    const symvers = readSymvers(join(headers.buildDir, 'Module.symvers'));
    const vmlinux = loadKernelSymbols('vmlinux', debug.vmlinux,
      join(options.cacheDir ?? defaultCacheDir(), 'kernel', pin.version, 'vmlinux-symbols.json'));
    const moduleSymbols = new Map<string, KernelSymbols>();
    const symbolsOf = (object: string): KernelSymbols => {
      if (object === 'vmlinux') return vmlinux;
      let s = moduleSymbols.get(object);
      if (!s) {
        s = loadKernelSymbols(object, findModule(image.modulesDir, object));
        moduleSymbols.set(object, s);
      }
      return s;
    };

    const klpFunctions: KlpFunction[] = [];
    const patchObjects: Buffer[] = [];
    const functions: FunctionRecord[] = [];
    const data: DataRecord[] = [];
    const units: UnitRecord[] = [];
    const files = new Map<string, Buffer>();
    const objects = new Map<string, PatchedObject>();
    const updateId = options.id ?? sha256(patchText).slice(0, 12);
    const moduleName = moduleNameFor(updateId);

    diffs.forEach(({ unit, diff, pre, post }, i) => {
      const kernel = symbolsOf(unit.target);
      const plan = planUnit(unit.object, diff, pre, post);
      const changed = plan.redirect;
      const group = pre ? findUnitGroup(unit, pre, kernel, changed.map((f) => f.pre?.symbol as string)) : undefined;
      const lookup = (preSymbol: ElfSymbol): KernelSymbol | undefined => (group !== undefined ? kernel.localIn(group, preSymbol.name) : undefined) ??
        (preSymbol.bind !== STB_LOCAL ? kernel.global(preSymbol.name) : undefined);
      const sympos = new Map<string, number>();
      for (const f of changed) {
        const preSymbol = pre?.symbols.find((s) => s.name === f.pre?.symbol && s.type === STT_FUNC) as ElfSymbol;
        const candidate = lookup(preSymbol);
        if (!candidate) {
          throw new TspliceError('no_match', `${unit.object}: ${preSymbol.name} is not in ${unit.target} of ${release}; ` +
            'the source does not correspond to the target kernel (or the function is inlined everywhere)',
          { unit: unit.object, function: preSymbol.name });
        }
        const why = comparePreCode(pre as ElfFile, preSymbol, kernel, candidate);
        if (why) {
          throw new TspliceError('no_match', `${unit.object}: the code of ${preSymbol.name} in ${unit.target} of ` +
            `${release} is not what this source builds: ${why}. Is the source (or --config) that of the target kernel?`,
          { unit: unit.object, function: preSymbol.name });
        }
        sympos.set(f.function, kernel.sympos(candidate));
      }

      const resolver = {
        resolve: (name: string, local: boolean): KernelReference =>
          resolveReference(name, local, unit, group, kernel, vmlinux, symvers),
      };
      const shipped = plan.ship;
      const newData = meaningfulData(diff.data).filter((d) => d.kind === 'new').map((d) => d.symbol);
      const patch = buildPatchObject({
        post, functions: shipped.map((f) => f.function), newData, resolver, unit: unit.object, target: unit.target,
      });
      patchObjects.push(patch.object);
      for (const f of changed) {
        klpFunctions.push({
          object: unit.target, oldName: f.pre?.symbol as string, sympos: sympos.get(f.function) ?? 0,
          newSymbol: patch.entries.get(f.function) as string,
        });
      }

      const record: UnitRecord = { unit: unit.object, source: unit.source, objects: [unit.target], post: `units/${i}/post.o` };
      files.set(record.post, readFileSync(unit.postObject));
      if (unit.preObject) {
        record.pre = `units/${i}/pre.o`;
        files.set(record.pre, readFileSync(unit.preObject));
      }
      units.push(record);
      const object = objects.get(unit.target) ?? {
        name: unit.target, path: unit.target === 'vmlinux' ? 'vmlinux' : relativeModulePath(image.modulesDir, unit.target),
        kind: unit.target === 'vmlinux' ? 'vmlinux' : 'module', units: [],
      } satisfies PatchedObject;
      object.units.push(unit.object);
      objects.set(unit.target, object);
      const redirected = new Set(plan.redirect);
      for (const f of [...diff.functions, ...plan.ship.filter((x) => !diff.functions.includes(x))]) {
        functions.push({
          object: unit.target, unit: unit.object, function: f.kind === 'changed' ? f.pre?.symbol as string : f.function,
          section: f.section, kind: f.kind, reason: f.reason, local: f.local,
          ...(f.pre ? { pre: { symbol: f.pre.symbol, section: f.pre.section } } : {}),
          ...(f.post ? { post: { symbol: f.post.symbol, section: f.post.section } } : {}),
          ...(redirected.has(f) ? { sympos: sympos.get(f.function) ?? 0 } : {}),
        });
      }
      for (const d of meaningfulData(diff.data)) {
        data.push({ object: unit.target, unit: unit.object, symbol: d.symbol, section: d.section, kind: d.kind,
          writable: d.writable, reason: d.reason });
      }
    });

    progress.step(`building the livepatch module ${moduleName}`);
    const klp = await buildKlpModule({
      name: moduleName, id: updateId, functions: klpFunctions, patchObjects, headers, workDir: join(workDir, 'module'),
    });
    const moduleFile = `module/${moduleName}.ko`;
    files.set(moduleFile, klp.module);

    const patchHash = sha256(patchText);
    const id = updateId;
    const manifest: Omit<Manifest, 'hashes'> = {
      format: MANIFEST_FORMAT,
      id,
      tool: { name: 'tsplice', version: TOOL_VERSION },
      createdAt: new Date().toISOString(),
      target: {
        kind: 'kernel', release, version: pin.version, ...(vmlinux.buildId ? { buildId: vmlinux.buildId } : {}),
        module: { name: moduleName, file: moduleFile },
      },
      patch: { file: basename(options.patchFile), sha256: patchHash, files: built.patchedFiles },
      objects: [...objects.values()],
      units,
      functions,
      data,
    };
    progress.step('writing the update');
    const path = writeUpdate(options.outDir, manifest, files);
    progress.done();
    return {
      path, manifest, moduleName, seconds: Number(process.hrtime.bigint() - started) / 1e9,
      prepareSeconds: tree.preparedSeconds,
    };
  } finally {
    if (!options.keepWorkDir) rmSync(workDir, { recursive: true, force: true });
  }
}

/**
 * The STT_FILE group of the target's symbol table that is this unit: same
 * file name, defines the unit's local functions, and (when several remain)
 * holds changed functions whose code matches the pre code.
 */
function findUnitGroup(unit: KernelUnit, pre: ElfFile, kernel: KernelSymbols, changed: string[]): number | undefined {
  const locals = pre.symbols.filter((s) => s.bind === STB_LOCAL && s.type === STT_FUNC && s.shndx !== SHN_UNDEF &&
    !s.name.includes('.') && !pre.sections[s.shndx]?.name.startsWith('.init.') && !pre.sections[s.shndx]?.name.startsWith('.exit.'))
    .map((s) => s.name);
  let groups = kernel.unitGroups(unit.source, locals);
  if (groups.length > 1) {
    groups = groups.filter((g) => changed.every((name) => {
      const sym = pre.symbols.find((s) => s.name === name && s.type === STT_FUNC) as ElfSymbol;
      const candidate = kernel.localIn(g, name);
      return !candidate || comparePreCode(pre, sym, kernel, candidate) === undefined;
    }));
  }
  if (groups.length === 0) {
    if (locals.length === 0) return undefined; // no locals: only globals are looked up
    throw new TspliceError('no_match', `${unit.object}: no file ${basename(unit.source)} in ${unit.target}'s symbols ` +
      `defines ${locals.slice(0, 5).join(', ')}; the source does not correspond to the target kernel`, { unit: unit.object });
  }
  if (groups.length > 1) {
    throw new TspliceError('no_match', `${unit.object}: ${groups.length} files named ${basename(unit.source)} in ` +
      `${unit.target} look like this unit; cannot tell which one the patch is for`, { unit: unit.object });
  }
  return groups[0];
}

interface SymversEntry {
  module: string;
}

function readSymvers(path: string): Map<string, SymversEntry> {
  const out = new Map<string, SymversEntry>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const f = line.split('\t');
    if (f.length >= 3) out.set(f[1], { module: f[2].split('/').pop() as string });
  }
  return out;
}

/** How the new code of `unit` reaches `name` in the running kernel. */
function resolveReference(name: string, local: boolean, unit: KernelUnit, group: number | undefined,
  kernel: KernelSymbols, vmlinux: KernelSymbols, symvers: Map<string, SymversEntry>): KernelReference {
  // Exported symbols are linked normally, except a module's own exports: the
  // livepatch must load while that module is absent.
  const exported = symvers.get(name);
  if (!local && exported && (unit.target === 'vmlinux' || exported.module !== unit.target)) return { kind: 'exported' };
  const found = (symbols: KernelSymbols, sym: KernelSymbol | undefined): KernelReference | undefined =>
    sym ? { kind: 'klp', object: symbols.object, name: sym.name, sympos: symbols.sympos(sym) } : undefined;
  if (local) {
    const sym = group !== undefined ? kernel.localIn(group, name) : undefined;
    const unique = kernel.named(name).filter((s) => s.local);
    const ref = found(kernel, sym ?? (unique.length === 1 ? unique[0] : undefined));
    if (ref) return ref;
    throw new TspliceError('no_match', `${unit.object}: the new code uses the static ${name}, which ${unit.target} of the ` +
      'target kernel does not have (optimised away in the running build?); the patch cannot reach it', { unit: unit.object, symbol: name });
  }
  const ref = found(kernel, kernel.global(name)) ?? (kernel !== vmlinux ? found(vmlinux, vmlinux.global(name)) : undefined);
  if (ref) return ref;
  throw new TspliceError('no_match', `${unit.object}: the new code uses ${name}, which the target kernel neither exports ` +
    'nor defines', { unit: unit.object, symbol: name });
}

function findModule(modulesDir: string, name: string): string {
  const wanted = new Set([`${name}.ko`, `${name.replace(/_/g, '-')}.ko`]);
  const walk = (dir: string): string | undefined => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (wanted.has(entry)) return path;
      if (statSync(path).isDirectory()) {
        const found = walk(path);
        if (found) return found;
      }
    }
    return undefined;
  };
  const found = walk(join(modulesDir, 'kernel'));
  if (!found) throw new TspliceError('no_match', `module ${name} is not part of the target kernel's modules`, { module: name });
  return found;
}

function relativeModulePath(modulesDir: string, name: string): string {
  return findModule(modulesDir, name).slice(modulesDir.length + 1);
}
