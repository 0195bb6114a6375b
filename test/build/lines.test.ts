import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { directiveSafeLines, insertLineDirectives, takesLineDirectives } from '../../src/build/lines.js';
import { type LineMap, lineMapFromHunks, parseUnifiedDiff, splitLines } from '../../src/build/unidiff.js';
import { tempDir } from '../helpers/tmp.js';

/** The line map between two texts, computed with diff -U0. */
function mapOf(dir: string, pre: string, post: string): LineMap {
  writeFileSync(join(dir, 'pre'), pre);
  writeFileSync(join(dir, 'post'), post);
  let out = '';
  try {
    execFileSync('diff', ['-U0', 'pre', 'post'], { cwd: dir, encoding: 'utf8' });
  } catch (e) {
    out = (e as { stdout: string }).stdout;
  }
  return lineMapFromHunks(parseUnifiedDiff(out)[0]?.hunks ?? [], splitLines(post).length);
}

/** The values of every `LINE(name)` marker after preprocessing with gcc. */
function markerLines(dir: string, source: string): Map<string, number> {
  writeFileSync(join(dir, 'm.c'), source);
  const out = execFileSync('gcc', ['-E', '-P', '-DLINE(n)=n=__LINE__;', 'm.c'], { cwd: dir, encoding: 'utf8' });
  const found = new Map<string, number>();
  for (const m of out.matchAll(/(\w+)\s*=\s*(\d+)\s*;/g)) found.set(m[1], Number(m[2]));
  return found;
}

describe('insertLineDirectives', () => {
  it('gives unchanged lines below a hunk their pre numbers (checked with the preprocessor)', () => {
    const dir = tempDir();
    const pre = ['LINE(one)', 'int a;', 'LINE(two)', 'int b;', 'LINE(three)', ''].join('\n');
    const post = ['LINE(one)', 'int a;', 'int added1;', 'int added2;', 'LINE(two)', 'int c;', 'LINE(three)', ''].join(
      '\n',
    );
    const linesText = insertLineDirectives(post, mapOf(dir, pre, post));
    assert.deepEqual(markerLines(dir, linesText), markerLines(dir, pre));
    // The post text itself has the moved numbers: the test would notice a no-op.
    assert.notDeepEqual(markerLines(dir, post), markerLines(dir, pre));
  });

  it('does not put a directive inside a macro continuation or a comment', () => {
    const dir = tempDir();
    const pre = [
      'int x;',
      '#define M(a) \\',
      '  ((a) + 1)',
      '/* a comment',
      '   over lines */',
      'LINE(after)',
      '',
    ].join('\n');
    // Lines added just above the continuation and the comment.
    const post = [
      'int x;',
      'int y;',
      '#define M(a) \\',
      '  ((a) + 1)',
      'int z;',
      '/* a comment',
      '   over lines */',
      'LINE(after)',
      '',
    ].join('\n');
    const out = insertLineDirectives(post, mapOf(dir, pre, post));
    const outLines = out.split('\n');
    for (let i = 1; i < outLines.length; i++) {
      if (outLines[i].startsWith('#line')) {
        assert.ok(!outLines[i - 1].endsWith('\\'), `directive after a continued line:\n${out}`);
      }
    }
    assert.ok(!/over lines \*\/\n#line|#line \d+\n {3}over/.test(out));
    assert.deepEqual(markerLines(dir, out), markerLines(dir, pre));
    // The #define still works: it expands.
    writeFileSync(join(dir, 'use.c'), `${out}int use = M(2);\n`);
    const expanded = execFileSync('gcc', ['-E', '-P', '-DLINE(n)=', 'use.c'], { cwd: dir, encoding: 'utf8' });
    assert.match(expanded, /int use = \(\(2\) \+ 1\);/);
  });

  it('moves a directive that would fall inside a macro body down to the next safe line', () => {
    const pre = ['#define A \\', '  1 + \\', '  2', 'LINE(x)', 'int A_value = A;', ''].join('\n');
    // A line added inside the macro: the next unchanged line ("  2") is still in its body.
    const post = ['#define A \\', '  1 + \\', '  3 + \\', '  2', 'LINE(x)', 'int A_value = A;', ''].join('\n');
    const dir = tempDir();
    const out = insertLineDirectives(post, mapOf(dir, pre, post));
    const outLines = out.split('\n');
    assert.equal(outLines.filter((l) => l.startsWith('#line')).length, 1);
    assert.equal(outLines.indexOf('#line 4'), 4, out);
    assert.deepEqual(markerLines(dir, out), markerLines(dir, pre));
    assert.deepEqual(directiveSafeLines(splitLines(post)).slice(1, 7), [true, false, false, false, true, true]);
  });

  it('keeps CRLF line ends and a missing final newline', () => {
    const dir = tempDir();
    const pre = 'a;\r\nLINE(k)\r\nb;';
    const post = 'a;\r\nadded;\r\nLINE(k)\r\nb;';
    const out = insertLineDirectives(post, mapOf(dir, pre, post));
    assert.equal(out, 'a;\r\nadded;\r\n#line 2\r\nLINE(k)\r\nb;');
  });

  it('inserts nothing when no line moved', () => {
    const dir = tempDir();
    const pre = 'a;\nb;\nc;\n';
    const post = 'a;\nB;\nc;\n';
    assert.equal(insertLineDirectives(post, mapOf(dir, pre, post)), post);
  });

  it('knows which files the preprocessor reads', () => {
    assert.ok(takesLineDirectives('src/x.c'));
    assert.ok(takesLineDirectives('include/x.h'));
    assert.ok(takesLineDirectives('arch/entry.S'));
    assert.ok(!takesLineDirectives('Makefile'));
    assert.ok(!takesLineDirectives('x.s'));
  });
});
