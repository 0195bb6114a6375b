// tsplice create + inspect as a user runs them, on C projects made at test time.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeTree } from '../helpers/cc.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const MAKEFILE = `CC ?= gcc
CFLAGS ?= -O2 -Wall
app: main.o util.o
\t$(CC) $(CFLAGS) -o $@ main.o util.o
%.o: %.c util.h
\t$(CC) $(CFLAGS) -c -o $@ $<
`;

const UTIL_H = 'int scale(int x);\nint offset(int x);\nint unused_helper(int x);\n';

const UTIL_C = `#include <stdio.h>
#include "util.h"

/* A static helper the compiler inlines into both callers at -O2. */
static int clamp(int x)
{
	if (x > 100)
		return 100;
	return x;
}

int scale(int x)
{
	return clamp(x) * 3;
}

int offset(int x)
{
	return clamp(x) + 7;
}

int unused_helper(int x)
{
	return x ^ 0x55;
}
`;

const MAIN_C = `#include <stdio.h>
#include "util.h"

static const char *banner = "app";
int threshold = 5;

static int report(int v)
{
	return printf("%s: %d\\n", banner, v);
}

int main(int argc, char **argv)
{
	(void)argv;
	report(scale(argc) + offset(argc) + threshold);
	return 0;
}
`;

/** A unified diff turning `before` into `after` for one file, made with diff(1) semantics by hand. */
function patchFor(dir: string, file: string, before: string, after: string): string {
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  writeTree(a, { [file]: before });
  writeTree(b, { [file]: after });
  const r = spawnSync('diff', ['-u', `a/${file}`, `b/${file}`], { cwd: dir, encoding: 'utf8' });
  const path = join(dir, `${file.replace(/\W/g, '_')}.patch`);
  writeFileSync(path, r.stdout);
  return path;
}

function project(): string {
  const dir = tempDir();
  writeTree(dir, { 'src/Makefile': MAKEFILE, 'src/util.h': UTIL_H, 'src/util.c': UTIL_C, 'src/main.c': MAIN_C });
  return dir;
}

function changes(json: Record<string, unknown> | undefined): string[] {
  const list = (json?.changes ?? []) as Array<{ object: string; function: string; kind: string }>;
  return list.map((c) => `${c.object}:${c.function}:${c.kind}`).sort();
}

test('a change to an inlined static helper lists exactly the callers whose code changed', (t) => {
  const dir = project();
  const patch = patchFor(dir, 'util.c', UTIL_C, UTIL_C.replace('if (x > 100)\n\t\treturn 100;', 'if (x > 50)\n\t\treturn 50;'));
  const created = runCli(['create', '--patch', patch, '-o', join(dir, 'out'), '--id', 'clamp-fix', '--json', join(dir, 'src')]);
  assert.equal(created.status, 0, created.stderr + created.stdout);
  assert.equal(created.json?.id, 'clamp-fix');
  const inspected = runCli(['inspect', '--json', join(dir, 'out', 'tsplice-clamp-fix.tar.gz')]);
  assert.equal(inspected.status, 0, inspected.stderr);
  const got = changes(inspected.json);
  t.diagnostic(`changes: ${got.join(' ')}`);
  // clamp is inlined into scale and offset at -O2; unused_helper and main do not change.
  assert.ok(got.includes('app:scale:changed') && got.includes('app:offset:changed'), got.join(' '));
  assert.deepEqual(got.filter((c) => !/^app:(scale|offset|clamp(\.\w+)*):changed$/.test(c)), []);
  const plain = runCli(['inspect', join(dir, 'out', 'tsplice-clamp-fix.tar.gz')]);
  assert.match(plain.stdout, /update clamp-fix/);
  assert.match(plain.stdout, /changed +scale/);
});

test('a new function called from a changed one, and a comment-only change elsewhere', (t) => {
  const dir = project();
  const patch = patchFor(dir, 'main.c', MAIN_C, MAIN_C
    .replace('static int report(int v)', 'static int __attribute__((noinline)) checked(int v)\n{\n\treturn v < 0 ? 0 : v;\n}\n\nstatic int report(int v)')
    .replace('return printf("%s: %d\\n", banner, v);', 'return printf("%s: %d (checked)\\n", banner, checked(v));')
    .replace('int threshold = 5;', 'int threshold = 5; /* documented */'));
  const r = runCli(['create', '--patch', patch, '-o', join(dir, 'out'), '--json', join(dir, 'src')]);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  const got = changes(r.json);
  t.diagnostic(`changes: ${got.join(' ')}`);
  assert.ok(got.includes('app:checked:new'), got.join(' '));
  // report is inlined into main at -O2, so main is what changes (report too if it stays out of line).
  assert.ok(got.some((c) => /^app:(main|report):changed$/.test(c)), got.join(' '));
  assert.deepEqual(got.filter((c) => !/^app:(main|report|checked):(changed|new)$/.test(c)), []);
});

test('error paths: clear codes and messages, nothing created', () => {
  const dir = project();
  const notApplying = join(dir, 'bad.patch');
  writeFileSync(notApplying, '--- a/util.c\n+++ b/util.c\n@@ -12,3 +12,3 @@\n int scale(int x)\n {\n-\treturn x * 42;\n+\treturn x * 43;\n');
  let r = runCli(['create', '--patch', notApplying, '-o', join(dir, 'out'), join(dir, 'src')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error \[bad_input\]: .*util\.c.*[Hh]unk #1/s);

  r = runCli(['create', '--patch', notApplying, '--json', join(dir, 'no-such-dir')]);
  assert.equal(r.status, 1);
  assert.equal((r.json?.error as { code: string }).code, 'bad_input');

  r = runCli(['create', join(dir, 'src')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error \[bad_input\]: create needs --patch FILE/);

  const dataChange = patchFor(dir, 'main.c', MAIN_C, MAIN_C.replace('int threshold = 5;', 'int threshold = 6;'));
  r = runCli(['create', '--patch', dataChange, '-o', join(dir, 'out'), join(dir, 'src')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error \[unsupported_change\]: .*threshold.*hooks/s);

  const commentOnly = patchFor(dir, 'util.c', UTIL_C, UTIL_C.replace('/* A static helper', '/* A small static helper'));
  r = runCli(['create', '--patch', commentOnly, '-o', join(dir, 'out'), join(dir, 'src')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error \[bad_input\]: the patch changes no function's machine code/);

  r = runCli(['create', '--patch', commentOnly, '--id', '../evil', join(dir, 'src')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error \[bad_input\]: invalid update id/);

  const corrupt = join(dir, 'corrupt.tar.gz');
  cpSync(notApplying, corrupt);
  r = runCli(['inspect', corrupt]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error \[bad_input\]: .*corrupt or foreign update/);

  r = runCli(['apply', '--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^usage: tsplice apply UPDATE \(--pid PID \| --all \| --kernel\)/);

  r = runCli(['frobnicate']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /unknown command "frobnicate"/);
});
