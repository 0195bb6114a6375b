import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { applyPatch, checkPatch, parsePatchFailures } from '../../src/build/patch.js';
import { preLineOf } from '../../src/build/unidiff.js';
import { TspliceError } from '../../src/errors.js';
import { writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';
import { makePatch } from './fixtures.js';

const numbered = (n: number, edit: (i: number) => string | string[] = (i) => `line ${i}`): string =>
  Array.from({ length: n }, (_, k) => edit(k + 1))
    .flat()
    .map((l) => `${l}\n`)
    .join('');

const BEFORE = {
  'src/a.c': numbered(60),
  'src/b.c': numbered(10),
};
const AFTER = {
  'src/a.c': numbered(60, (i) => (i === 5 ? ['line 5', 'new A', 'new B'] : i === 45 ? 'line 45 changed' : `line ${i}`)),
  'src/b.c': numbered(10, (i) => (i === 3 ? [] : `line ${i}`)),
  'src/c.c': 'int brand_new;\n',
};

/** A tree with BEFORE and a patch to AFTER; returns the paths. */
function setup(): { tree: string; patchFile: string; patchText: string } {
  const dir = tempDir();
  const tree = join(dir, 'tree');
  writeTree(tree, BEFORE);
  const patchText = makePatch(join(dir, 'mk'), BEFORE, AFTER);
  const patchFile = join(dir, 'fix.patch');
  writeFileSync(patchFile, patchText);
  return { tree, patchFile, patchText };
}

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, prefix: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${prefix}${e.name}/`);
      else out[`${prefix}${e.name}`] = readFileSync(join(d, e.name), 'utf8');
    }
  };
  walk(dir, '');
  return out;
}

async function rejects(promise: Promise<unknown>): Promise<TspliceError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof TspliceError, `expected a TspliceError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the promise to reject');
}

describe('applyPatch', () => {
  it('applies a patch, lists the files and maps post lines to pre lines', async () => {
    const { tree, patchFile } = setup();
    const applied = await applyPatch(tree, patchFile);
    assert.equal(applied.strip, 1);
    assert.deepEqual(snapshot(tree), AFTER);
    const byPath = new Map(applied.files.map((f) => [f.path, f]));
    assert.deepEqual([...byPath.keys()].sort(), ['src/a.c', 'src/b.c', 'src/c.c']);
    assert.equal(byPath.get('src/c.c')?.created, true);
    assert.equal(byPath.get('src/c.c')?.lineMap, undefined);
    const a = byPath.get('src/a.c')?.lineMap;
    assert.ok(a);
    assert.equal(preLineOf(a, 5), 5);
    assert.equal(preLineOf(a, 6), undefined); // added
    assert.equal(preLineOf(a, 8), 6);
    assert.equal(preLineOf(a, 47), undefined); // changed line
    assert.equal(preLineOf(a, 62), 60);
    const b = byPath.get('src/b.c')?.lineMap;
    assert.ok(b);
    assert.equal(preLineOf(b, 3), 4);
  });

  it('detects -p0 patches', async () => {
    const { tree, patchText } = setup();
    const p0 = patchText.replace(/^(---|\+\+\+) [ab]\//gm, '$1 ');
    const patchFile = join(tree, '..', 'p0.patch');
    writeFileSync(patchFile, p0);
    const applied = await applyPatch(tree, patchFile);
    assert.equal(applied.strip, 0);
    assert.deepEqual(snapshot(tree), AFTER);
  });

  it('maps lines right when a hunk applies at an offset', async () => {
    const { tree, patchFile } = setup();
    // Three lines more at the top of a.c: every hunk of a.c applies 3 lines lower.
    writeFileSync(join(tree, 'src/a.c'), `x\ny\nz\n${BEFORE['src/a.c']}`);
    const applied = await applyPatch(tree, patchFile);
    assert.ok(applied.notes.some((n) => /offset 3 lines/.test(n)), applied.notes.join('\n'));
    const a = applied.files.find((f) => f.path === 'src/a.c')?.lineMap;
    assert.ok(a);
    assert.equal(preLineOf(a, 8), 8); // "line 5"
    assert.equal(preLineOf(a, 11), 9); // "line 6", below the added lines
    assert.equal(preLineOf(a, 65), 63);
  });

  it('refuses a patch that does not apply, naming file and hunk, and leaves the tree untouched', async () => {
    const { tree, patchFile } = setup();
    // Break the context of a.c's second hunk (around line 45).
    writeFileSync(join(tree, 'src/a.c'), BEFORE['src/a.c'].replace('line 44\n', 'line forty-four\n'));
    const before = snapshot(tree);
    const err = await rejects(applyPatch(tree, patchFile));
    assert.equal(err.code, 'bad_input');
    assert.match(err.message, /src\/a\.c: hunk #2 FAILED/);
    assert.match(err.message, /does not apply/);
    assert.deepEqual(err.details.failures, [{ file: 'src/a.c', hunks: [2], reason: 'hunk_failed' }]);
    assert.deepEqual(snapshot(tree), before);
  });

  it('refuses a patch that is already applied', async () => {
    const { tree, patchFile } = setup();
    await applyPatch(tree, patchFile);
    const err = await rejects(checkPatch(tree, patchFile));
    assert.equal(err.code, 'bad_input');
    assert.match(err.message, /already applied|not in/);
  });

  it('refuses empty and garbage patch files', async () => {
    const { tree } = setup();
    for (const text of ['', 'this is not a patch\n', '--- a/x\n+++ b/x\n']) {
      const patchFile = join(tree, '..', 'junk.patch');
      writeFileSync(patchFile, text);
      const err = await rejects(checkPatch(tree, patchFile));
      assert.equal(err.code, 'bad_input');
      assert.match(err.message, /no unified diff hunks/);
    }
    const err = await rejects(checkPatch(tree, join(tree, 'missing.patch')));
    assert.equal(err.code, 'bad_input');
  });

  it('refuses a patch for files that are not in the tree', async () => {
    const { tree } = setup();
    const patchFile = join(tree, '..', 'other.patch');
    writeFileSync(patchFile, '--- a/elsewhere/x.c\n+++ b/elsewhere/x.c\n@@ -1 +1 @@\n-a\n+b\n');
    const err = await rejects(checkPatch(tree, patchFile));
    assert.equal(err.code, 'bad_input');
    assert.match(err.message, /elsewhere\/x\.c/);
  });
});

describe('parsePatchFailures', () => {
  it('reads GNU patch output', () => {
    const out = [
      'checking file src/a.c',
      'Hunk #2 FAILED at 41.',
      'Hunk #4 FAILED at 90.',
      '2 out of 4 hunks FAILED',
      'checking file src/b.c',
      'checking file src/c.c',
      'Reversed (or previously applied) patch detected!  Skipping patch.',
    ].join('\n');
    assert.deepEqual(parsePatchFailures(out), [
      { file: 'src/a.c', hunks: [2, 4], reason: 'hunk_failed' },
      { file: 'src/c.c', hunks: [], reason: 'already_applied' },
    ]);
  });
});
