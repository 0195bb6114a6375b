// The update manifest: everything apply needs to know about an update, so
// that matching and linking work on any machine without the source.

import { TspliceError } from '../errors.js';

export const MANIFEST_FORMAT = 'tsplice-update/1';

export type ChangeKind = 'changed' | 'new' | 'deleted';

/** A linked file the update patches in the running target: an executable or a shared library. */
export interface PatchedObject {
  /** File name as built (basename), e.g. "app" or "libfoo.so". */
  name: string;
  /** DT_SONAME of a shared library: the name it is usually mapped under (libfoo.so.1). */
  soname?: string;
  /** Path of the linked output in the source tree, relative to its root. */
  path: string;
  /** 'vmlinux' and 'module' are the linked objects of a kernel update. */
  kind: 'executable' | 'shared' | 'vmlinux' | 'module';
  /** Translation units (object paths) linked into it that the update changes. */
  units: string[];
}

/** One translation unit's pre and post objects, as stored in the package. */
export interface UnitRecord {
  /** Object path in the source tree, e.g. "src/parse.o"; unique within the update. */
  unit: string;
  source: string;
  /** Linked outputs (PatchedObject.name) this unit is part of. */
  objects: string[];
  /** Package paths of the objects; `pre` is absent for a unit the patch adds. */
  pre?: string;
  post: string;
  /**
   * Process updates: package path of the pre object compiled with the flags
   * the post objects ship with, to match a function that an earlier update's
   * post build of this unit replaced (absent with `pre`, or from older tools).
   */
  preShipped?: string;
}

/** Where a function or variable lives in one of a unit's objects. */
export interface SymbolPlace {
  symbol: string;
  section: string;
}

export interface FunctionRecord {
  object: string;
  unit: string;
  function: string;
  /** Section holding the code in the post object (pre object for a deleted function). */
  section: string;
  kind: ChangeKind;
  reason: string;
  /** A static function: its name may repeat in other units. */
  local: boolean;
  /** In the pre object: what run-pre matching looks for (absent for a new function). */
  pre?: SymbolPlace;
  /** In the post object: what is installed (absent for a deleted function). */
  post?: SymbolPlace;
  /** Kernel updates: position among same-named symbols of the object in kallsyms order (0: unique). */
  sympos?: number;
}

export interface DataRecord {
  object: string;
  unit: string;
  symbol: string;
  section: string;
  kind: ChangeKind;
  writable: boolean;
  reason: string;
}

/** The kernel an update is built for, and the livepatch module that carries it. */
export interface KernelTarget {
  kind: 'kernel';
  /** `uname -r`, e.g. "6.1.0-50-cloud-amd64". */
  release: string;
  /** The distribution's version of that build, e.g. "6.1.176-1". */
  version: string;
  /** GNU build id of the vmlinux the update was matched against, when known. */
  buildId?: string;
  /** The livepatch module: its name (as lsmod shows it) and its path in the package. */
  module: { name: string; file: string };
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  id: string;
  tool: { name: 'tsplice'; version: string };
  createdAt: string;
  target: { kind: 'process' } | KernelTarget;
  patch: { file: string; sha256: string; files: string[] };
  objects: PatchedObject[];
  units: UnitRecord[];
  functions: FunctionRecord[];
  data: DataRecord[];
  /** sha256 of every other file in the package, by package path. */
  hashes: Record<string, string>;
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkUpdateId(id: string): string {
  if (!ID_PATTERN.test(id)) {
    throw new TspliceError('bad_input',
      `invalid update id "${id}": use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  return id;
}

function fail(where: string, what: string): never {
  throw new TspliceError('bad_input', `${where}: corrupt or foreign update: ${what}`);
}

function isString(v: unknown): v is string {
  return typeof v === 'string';
}

function checkArray<T>(where: string, v: unknown, field: string, item: (x: unknown, i: number) => T): T[] {
  if (!Array.isArray(v)) fail(where, `"${field}" is not a list`);
  return v.map(item);
}

function checkFields(where: string, v: unknown, field: string, strings: string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null) fail(where, `"${field}" is not an object`);
  const o = v as Record<string, unknown>;
  for (const s of strings) if (!isString(o[s])) fail(where, `"${field}.${s}" is missing or not a string`);
  return o;
}

const KINDS: ChangeKind[] = ['changed', 'new', 'deleted'];

/** Validate parsed JSON as a manifest; anything unexpected is bad_input naming the field. */
export function validateManifest(where: string, json: unknown): Manifest {
  const m = checkFields(where, json, 'manifest', ['format', 'id', 'createdAt']);
  if (m.format !== MANIFEST_FORMAT) {
    fail(where, `format "${String(m.format)}" is not ${MANIFEST_FORMAT} (made by another tool or version?)`);
  }
  if (!ID_PATTERN.test(m.id as string)) fail(where, `invalid id "${String(m.id)}"`);
  checkFields(where, m.tool, 'tool', ['name', 'version']);
  checkFields(where, m.target, 'target', ['kind']);
  const target = m.target as { kind: string };
  if (target.kind === 'kernel') {
    checkFields(where, target, 'target', ['release', 'version']);
    checkFields(where, (target as { module?: unknown }).module, 'target.module', ['name', 'file']);
  } else if (target.kind !== 'process') {
    fail(where, 'unknown target kind');
  }
  const patch = checkFields(where, m.patch, 'patch', ['file', 'sha256']);
  checkArray(where, patch.files, 'patch.files', (f) => (isString(f) ? f : fail(where, 'patch.files entry')));
  checkArray(where, m.objects, 'objects', (o, i) => {
    const r = checkFields(where, o, `objects[${i}]`, ['name', 'path', 'kind']);
    if (!['executable', 'shared', 'vmlinux', 'module'].includes(r.kind as string)) fail(where, `objects[${i}].kind`);
    checkArray(where, r.units, `objects[${i}].units`, (u) => (isString(u) ? u : fail(where, 'unit name')));
  });
  checkArray(where, m.units, 'units', (u, i) => {
    const r = checkFields(where, u, `units[${i}]`, ['unit', 'source', 'post']);
    if (r.pre !== undefined && !isString(r.pre)) fail(where, `units[${i}].pre`);
    if (r.preShipped !== undefined && !isString(r.preShipped)) fail(where, `units[${i}].preShipped`);
    checkArray(where, r.objects, `units[${i}].objects`, (x) => (isString(x) ? x : fail(where, 'object name')));
  });
  checkArray(where, m.functions, 'functions', (f, i) => {
    const r = checkFields(where, f, `functions[${i}]`, ['object', 'unit', 'function', 'section', 'kind', 'reason']);
    if (!KINDS.includes(r.kind as ChangeKind)) fail(where, `functions[${i}].kind`);
    if (typeof r.local !== 'boolean') fail(where, `functions[${i}].local`);
    if (r.sympos !== undefined && !(Number.isSafeInteger(r.sympos) && (r.sympos as number) >= 0)) {
      fail(where, `functions[${i}].sympos`);
    }
    if (r.kind !== 'new') checkFields(where, r.pre, `functions[${i}].pre`, ['symbol', 'section']);
    if (r.kind !== 'deleted') checkFields(where, r.post, `functions[${i}].post`, ['symbol', 'section']);
  });
  checkArray(where, m.data, 'data', (d, i) => {
    const r = checkFields(where, d, `data[${i}]`, ['object', 'unit', 'symbol', 'section', 'kind', 'reason']);
    if (typeof r.writable !== 'boolean') fail(where, `data[${i}].writable`);
  });
  const hashes = m.hashes;
  if (typeof hashes !== 'object' || hashes === null) fail(where, '"hashes" is missing');
  for (const [k, v] of Object.entries(hashes)) {
    if (!isString(v) || !/^[0-9a-f]{64}$/.test(v)) fail(where, `hash of ${k}`);
  }
  return json as Manifest;
}
