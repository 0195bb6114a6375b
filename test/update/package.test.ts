import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { test } from 'node:test';
import { TspliceError } from '../../src/errors.js';
import { MANIFEST_FORMAT, type Manifest } from '../../src/update/manifest.js';
import { readUpdate, writeUpdate } from '../../src/update/package.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();

function sampleManifest(id = 'fix-1'): Omit<Manifest, 'hashes'> {
  return {
    format: MANIFEST_FORMAT,
    id,
    tool: { name: 'tsplice', version: '0.1.0' },
    createdAt: '2026-01-01T00:00:00.000Z',
    target: { kind: 'process' },
    patch: { file: 'fix.patch', sha256: 'a'.repeat(64), files: ['main.c'] },
    objects: [{ name: 'app', path: 'app', kind: 'executable', units: ['main.o'] }],
    units: [{ unit: 'main.o', source: 'main.c', objects: ['app'], pre: 'units/0/pre.o', post: 'units/0/post.o' }],
    functions: [{ object: 'app', unit: 'main.o', function: 'f', section: '.text.f', kind: 'changed', reason: 'code differs',
      local: false, pre: { symbol: 'f', section: '.text.f' }, post: { symbol: 'f', section: '.text.f' } }],
    data: [],
  };
}

function sampleFiles(): Map<string, Buffer> {
  return new Map([
    ['units/0/pre.o', Buffer.from('pre object bytes')],
    ['units/0/post.o', Buffer.from('post object bytes')],
  ]);
}

function expectBadInput(path: string, pattern: RegExp): void {
  assert.throws(() => readUpdate(path), (e: unknown) => {
    assert.ok(e instanceof TspliceError, String(e));
    assert.equal(e.code, 'bad_input');
    assert.match(e.message, pattern);
    return true;
  });
}

test('round trip keeps the manifest and every object byte for byte', () => {
  const path = writeUpdate(join(dir, 'ok'), sampleManifest(), sampleFiles());
  assert.match(path, /tsplice-fix-1\.tar\.gz$/);
  const pkg = readUpdate(path);
  assert.equal(pkg.manifest.id, 'fix-1');
  assert.deepEqual(pkg.manifest.functions, sampleManifest().functions);
  assert.deepEqual(pkg.files, sampleFiles());
});

test('corrupt or foreign packages are bad_input with the reason', () => {
  const good = writeUpdate(join(dir, 'src'), sampleManifest(), sampleFiles());
  const bytes = readFileSync(good);

  writeFileSync(join(dir, 'garbage.tar.gz'), Buffer.from('definitely not a tarball'));
  expectBadInput(join(dir, 'garbage.tar.gz'), /corrupt or foreign update: not a readable tar\.gz/);

  writeFileSync(join(dir, 'truncated.tar.gz'), bytes.subarray(0, bytes.length / 2));
  expectBadInput(join(dir, 'truncated.tar.gz'), /corrupt or foreign update/);

  // Change one object inside the tar but not its recorded hash.
  const raw = gunzipSync(bytes);
  const at = raw.indexOf('post object bytes');
  assert.ok(at > 0);
  raw.write('POST', at);
  writeFileSync(join(dir, 'tampered.tar.gz'), gzipSync(raw));
  expectBadInput(join(dir, 'tampered.tar.gz'), /checksum mismatch for units\/0\/post\.o/);

  // A tarball from somewhere else.
  const foreign = join(dir, 'foreign');
  mkdirSync(foreign, { recursive: true });
  writeFileSync(join(foreign, 'README'), 'hello');
  execFileSync('tar', ['czf', join(dir, 'foreign.tar.gz'), '-C', foreign, 'README']);
  expectBadInput(join(dir, 'foreign.tar.gz'), /no manifest\.json/);

  const wrongFormat = { ...sampleManifest('fix-2'), format: 'tsplice-update/99' } as unknown as Manifest;
  const wf = writeUpdate(join(dir, 'wf'), wrongFormat, sampleFiles());
  expectBadInput(wf, /format "tsplice-update\/99"/);

  const missingField = { ...sampleManifest('fix-3'), functions: 'nope' } as unknown as Manifest;
  expectBadInput(writeUpdate(join(dir, 'mf'), missingField, sampleFiles()), /"functions" is not a list/);

  expectBadInput(join(dir, 'does-not-exist.tar.gz'), /no such update file/);
});
