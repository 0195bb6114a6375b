import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  lineMapFromHunks,
  parseUnifiedDiff,
  preLineOf,
  splitLines,
  stripPath,
  validateLineMap,
} from '../../src/build/unidiff.js';

const PRE = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'];
// Two lines added after "b", "f" replaced by two lines, "i" removed.
const POST = ['a', 'b', 'X1', 'X2', 'c', 'd', 'e', 'F1', 'F2', 'g', 'h', 'j'];

const DIFF = `commit 123
Author: someone

    a message with --- and +++ lines that are not headers

diff --git a/dir/file.txt b/dir/file.txt
index 1111111..2222222 100644
--- a/dir/file.txt
+++ b/dir/file.txt
@@ -1,4 +1,6 @@
 a
 b
+X1
+X2
 c
 d
@@ -4,7 +6,7 @@
 d
 e
-f
+F1
+F2
 g
 h
-i
 j
--- /dev/null
+++ b/new.c
@@ -0,0 +1,2 @@
+int x;
+int y;
\\ No newline at end of file
`;

describe('parseUnifiedDiff', () => {
  it('finds file sections and hunks, skipping commit text and git headers', () => {
    const files = parseUnifiedDiff(DIFF);
    assert.equal(files.length, 2);
    assert.equal(files[0].oldName, 'a/dir/file.txt');
    assert.equal(files[0].newName, 'b/dir/file.txt');
    assert.equal(files[0].hunks.length, 2);
    assert.deepEqual(
      files[0].hunks.map((h) => [h.oldStart, h.oldLines, h.newStart, h.newLines]),
      [
        [1, 4, 1, 6],
        [4, 7, 6, 7],
      ],
    );
    assert.equal(files[1].oldName, undefined);
    assert.equal(files[1].newName, 'b/new.c');
    assert.deepEqual(files[1].hunks[0].lines, ['+int x;', '+int y;']);
  });

  it('returns nothing for text without hunks', () => {
    assert.deepEqual(parseUnifiedDiff(''), []);
    assert.deepEqual(parseUnifiedDiff('hello\nworld\n'), []);
    assert.deepEqual(parseUnifiedDiff('--- a/x\n+++ b/x\nno hunk here\n'), []);
  });

  it('drops timestamps and unquotes git-quoted names', () => {
    const files = parseUnifiedDiff(
      '--- "a/sp ace\\tx.c"\t2020-01-01 00:00:00\n+++ "b/sp ace\\tx.c"\t2020-01-01\n@@ -1 +1 @@\n-a\n+b\n',
    );
    assert.equal(files[0].oldName, 'a/sp ace\tx.c');
  });
});

describe('stripPath', () => {
  it('removes leading components as patch -pN does', () => {
    assert.equal(stripPath('a/dir/file.c', 1), 'dir/file.c');
    assert.equal(stripPath('a/dir/file.c', 0), 'a/dir/file.c');
    assert.equal(stripPath('a/dir/file.c', 2), 'file.c');
    assert.equal(stripPath('a/dir/file.c', 3), undefined);
    assert.equal(stripPath('/abs/file.c', 1), 'abs/file.c');
  });
});

describe('line maps', () => {
  it('maps every unchanged post line to its pre line', () => {
    const [file] = parseUnifiedDiff(DIFF);
    const map = lineMapFromHunks(file.hunks, POST.length);
    assert.ok(validateLineMap(map, PRE, POST));
    const expected: Array<number | undefined> = [1, 2, undefined, undefined, 3, 4, 5, undefined, undefined, 7, 8, 10];
    assert.deepEqual(
      POST.map((_, i) => preLineOf(map, i + 1)),
      expected,
    );
  });

  it('handles zero-context (-U0) hunks', () => {
    const u0 = '--- a/f\n+++ b/f\n@@ -2,0 +3,2 @@\n+X1\n+X2\n@@ -6 +8,2 @@\n-f\n+F1\n+F2\n@@ -9 +11,0 @@\n-i\n';
    const [file] = parseUnifiedDiff(u0);
    const map = lineMapFromHunks(file.hunks, POST.length);
    assert.ok(validateLineMap(map, PRE, POST));
    assert.equal(preLineOf(map, 12), 10);
    assert.equal(preLineOf(map, 3), undefined);
  });

  it('rejects a map that does not fit the texts (hunk applied elsewhere)', () => {
    const [file] = parseUnifiedDiff(DIFF);
    const shifted = ['z', ...PRE];
    const map = lineMapFromHunks(file.hunks, POST.length + 1);
    assert.equal(validateLineMap(map, shifted, ['z', ...POST]), false);
  });

  it('splits lines as a compiler counts them', () => {
    assert.deepEqual(splitLines('a\nb\n'), ['a', 'b']);
    assert.deepEqual(splitLines('a\nb'), ['a', 'b']);
    assert.deepEqual(splitLines(''), []);
  });
});
