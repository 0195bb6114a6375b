// The update package: tsplice-<id>.tar.gz holding manifest.json and the pre
// and post objects. Read entirely into memory and verified (hashes, paths,
// manifest schema) before anything uses it.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tar from 'tar';
import { TspliceError } from '../errors.js';
import { type Manifest, validateManifest } from './manifest.js';

export const MANIFEST_FILE = 'manifest.json';

/** Refuse to read absurd packages: objects of one unit are kilobytes to megabytes. */
const MAX_PACKAGE_BYTES = 512 * 1024 * 1024;

export interface UpdatePackage {
  manifest: Manifest;
  /** Package files other than the manifest, by package path. */
  files: Map<string, Buffer>;
  /** Where it was read from. */
  path: string;
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function packageFileName(id: string): string {
  return `tsplice-${id}.tar.gz`;
}

/** Write the package into outDir; fills manifest.hashes. Returns the package path. */
export function writeUpdate(outDir: string, manifest: Omit<Manifest, 'hashes'>, files: Map<string, Buffer>): string {
  const hashes: Record<string, string> = {};
  for (const [path, data] of [...files].sort(([a], [b]) => a.localeCompare(b))) hashes[path] = sha256(data);
  const full: Manifest = { ...manifest, hashes };
  const staging = mkdtempSync(join(tmpdir(), 'tsplice-pack-'));
  try {
    writeFileSync(join(staging, MANIFEST_FILE), JSON.stringify(full, null, 2) + '\n');
    for (const [path, data] of files) {
      mkdirSync(dirname(join(staging, path)), { recursive: true });
      writeFileSync(join(staging, path), data);
    }
    mkdirSync(outDir, { recursive: true });
    const out = join(outDir, packageFileName(manifest.id));
    tar.c({ gzip: true, file: out, cwd: staging, sync: true, portable: true },
      [MANIFEST_FILE, ...[...files.keys()].sort()]);
    return out;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function corrupt(path: string, what: string): TspliceError {
  return new TspliceError('bad_input', `${path}: corrupt or foreign update: ${what}; rebuild it with tsplice create`,
    { file: path });
}

/** Read and verify a package. Any damage is bad_input; nothing is written anywhere. */
export function readUpdate(path: string): UpdatePackage {
  if (!existsSync(path)) throw new TspliceError('bad_input', `${path}: no such update file`, { file: path });
  const size = statSync(path).size;
  if (size > MAX_PACKAGE_BYTES) throw corrupt(path, `file is too large (${size} bytes)`);
  const entries = new Map<string, Buffer>();
  const problems: string[] = [];
  try {
    tar.t({
      file: path,
      sync: true,
      strict: true,
      onReadEntry: (entry) => {
        if (entry.type === 'Directory') { entry.resume(); return; }
        if (entry.type !== 'File') problems.push(`unexpected ${entry.type} entry ${entry.path}`);
        else if (!isSafePath(entry.path)) problems.push(`unsafe path ${entry.path}`);
        else if (entries.has(entry.path)) problems.push(`duplicate entry ${entry.path}`);
        const chunks: Buffer[] = [];
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => entries.set(entry.path, Buffer.concat(chunks)));
      },
    });
  } catch (e) {
    throw corrupt(path, `not a readable tar.gz (${e instanceof Error ? e.message : String(e)})`);
  }
  if (problems.length > 0) throw corrupt(path, problems[0]);
  const manifestData = entries.get(MANIFEST_FILE);
  if (!manifestData) throw corrupt(path, `no ${MANIFEST_FILE}`);
  let json: unknown;
  try {
    json = JSON.parse(manifestData.toString('utf8'));
  } catch (e) {
    throw corrupt(path, `${MANIFEST_FILE} is not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const manifest = validateManifest(path, json);
  entries.delete(MANIFEST_FILE);
  for (const [file, hash] of Object.entries(manifest.hashes)) {
    const data = entries.get(file);
    if (!data) throw corrupt(path, `missing file ${file}`);
    if (sha256(data) !== hash) throw corrupt(path, `checksum mismatch for ${file}`);
  }
  for (const file of entries.keys()) {
    if (!(file in manifest.hashes)) throw corrupt(path, `unexpected file ${file}`);
  }
  for (const unit of manifest.units) {
    for (const ref of [unit.pre, unit.post, unit.preShipped]) {
      if (ref !== undefined && !entries.has(ref)) throw corrupt(path, `unit ${unit.unit} refers to missing ${ref}`);
    }
  }
  return { manifest, files: entries, path };
}

function isSafePath(p: string): boolean {
  return p.length > 0 && !p.startsWith('/') && !p.split('/').some((c) => c === '..' || c === '');
}
