// C projects for the build tests, written to temp dirs at test time.
import { execFileSync } from 'node:child_process';
import { writeTree } from '../helpers/cc.js';

/**
 * A program (main.c + helper.c) linked with a static library (util.o, unused.o)
 * and a shared library (shared.o), built by a Makefile through $(CC)/$(CFLAGS)/$(AR).
 */
export const SMALL_PROJECT: Record<string, string> = {
  Makefile: [
    'CFLAGS ?= -O2 -g -DMAGIC=1234',
    '',
    'all: app',
    '',
    'app: main.o helper.o stamp.o libutil.a libshared.so',
    "\t$(CC) -o $@ main.o helper.o stamp.o -L. -lutil -lshared -Wl,-rpath,'$$ORIGIN'",
    '',
    'libutil.a: util.o unused.o',
    '\t$(AR) rcs $@ $^',
    '',
    'libshared.so: shared.c common.h',
    '\t$(CC) $(CFLAGS) -fPIC -c -o shared.o shared.c',
    '\t$(CC) -shared -o $@ shared.o',
    '',
    '%.o: %.c common.h',
    '\t$(CC) $(CFLAGS) -c -o $@ $<',
    '',
    'clean:',
    '\trm -f *.o *.a *.so app',
    '',
  ].join('\n'),
  'common.h': [
    'int helper(int x);',
    'int check(int x);',
    'int util_add(int a, int b);',
    'int unused_fn(int a);',
    'int shared_mul(int a, int b);',
    'const char *build_stamp(void);',
    '',
  ].join('\n'),
  'main.c': [
    '#include <stdio.h>',
    '#include "common.h"',
    '',
    'int main(int argc, char **argv)',
    '{',
    '\t(void)argv;',
    '\tprintf("%d %d %d %s\\n", helper(argc), util_add(argc, MAGIC), shared_mul(argc, 3), build_stamp());',
    '\treturn 0;',
    '}',
    '',
  ].join('\n'),
  'helper.c': [
    '#include <assert.h>',
    '#include "common.h"',
    '',
    'int helper(int x)',
    '{',
    '\treturn x * 2 + 1;',
    '}',
    '',
    'int check(int x)',
    '{',
    '\tassert(x > 0);',
    '\treturn x + __LINE__;',
    '}',
    '',
  ].join('\n'),
  'stamp.c': [
    '#include "common.h"',
    '/* built at: */',
    'const char *build_stamp(void)',
    '{',
    '\treturn __DATE__ " " __TIME__;',
    '}',
    '',
  ].join('\n'),
  'util.c': ['#include "common.h"', '', 'int util_add(int a, int b)', '{', '\treturn a + b;', '}', ''].join('\n'),
  'unused.c': ['#include "common.h"', '', 'int unused_fn(int a)', '{', '\treturn a - 7;', '}', ''].join('\n'),
  'shared.c': ['#include "common.h"', '', 'int shared_mul(int a, int b)', '{', '\treturn a * b;', '}', ''].join('\n'),
};

/** Write a project into dir. */
export function writeProject(dir: string, files: Record<string, string>): void {
  writeTree(dir, files);
}

/**
 * A unified diff (git style, a/ b/ prefixes) turning the `before` files into
 * the `after` ones, made by diff(1) so the tests exercise real diffs.
 */
export function makePatch(dir: string, before: Record<string, string>, after: Record<string, string>): string {
  const a = `${dir}/a`;
  const b = `${dir}/b`;
  writeTree(a, before);
  writeTree(b, after);
  try {
    execFileSync('diff', ['-ruN', 'a', 'b'], { cwd: dir, encoding: 'utf8' });
    return '';
  } catch (e) {
    const err = e as { status?: number; stdout?: string };
    if (err.status !== 1 || err.stdout === undefined) throw e;
    return err.stdout;
  }
}
