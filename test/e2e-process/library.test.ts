// Patching shared libraries in running processes: a library built by the
// same Makefile as the program that links against it; an update that covers
// the program and the library at once; thread-local variables of a library;
// `apply --all` patching every process that maps the library.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  applyOk, buildProject, createUpdate, listIds, moreLines, nextLine, startTarget, tsplice, undoOk, type Files,
} from './harness.js';

/** libNAME.so (with soname libNAME.so.1) from lib.c (-fPIC), and prog from main.c + app.c linked against it. */
function makefile(lib = 'calc'): string {
  return `CC ?= gcc
CFLAGS ?= -O2 -g -Wall
all: prog
lib${lib}.so: lib.o
\t$(CC) $(CFLAGS) -shared -Wl,-soname,lib${lib}.so.1 -o $@ lib.o
\tln -sf lib${lib}.so lib${lib}.so.1
prog: main.o app.o lib${lib}.so
\t$(CC) $(CFLAGS) -o $@ main.o app.o -L. -l${lib} -Wl,-rpath,'$$ORIGIN' -lpthread
lib.o: lib.c lib.h
\t$(CC) $(CFLAGS) -fPIC -c -o $@ lib.c
%.o: %.c lib.h
\t$(CC) $(CFLAGS) -c -o $@ $<
`;
}

const LIB_H = 'int lib_scale(int x);\nint lib_bump(void);\nint app_offset(int x);\n';

const LIB_C = `#include "lib.h"
__thread int lib_calls;
static __thread int lib_private;
int lib_scale(int x)
{
	if (x < 0)
		return 0;
	return x * 2;
}
int lib_bump(void)
{
	lib_private += 2;
	return ++lib_calls + lib_private * 0;
}
`;

const APP_C = `#include "lib.h"
int app_offset(int x)
{
	if (x > 1000000)
		return x;
	return x + 1;
}
`;

const MAIN_C = `#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include "lib.h"
static void *worker(void *arg)
{
	for (int i = 0;; i++) {
		printf("%s i=%d v=%d n=%d\\n", (const char *)arg, i, app_offset(lib_scale(i)), lib_bump());
		usleep(20000);
	}
	return NULL;
}
int main(void)
{
	pthread_t t;
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	puts("ready");
	pthread_create(&t, NULL, worker, "second");
	worker("first");
}
`;

function files(lib = 'calc'): Files {
  return { Makefile: makefile(lib), 'lib.h': LIB_H, 'lib.c': LIB_C, 'app.c': APP_C, 'main.c': MAIN_C };
}

interface Sample {
  thread: string;
  i: number;
  v: number;
  n: number;
}

function samples(lines: string[]): Sample[] {
  return lines.flatMap((l) => {
    const m = /^(\w+) i=(\d+) v=(-?\d+) n=(-?\d+)$/.exec(l);
    return m ? [{ thread: m[1], i: Number(m[2]), v: Number(m[3]), n: Number(m[4]) }] : [];
  });
}

/** Wait until both threads printed a line after `from`, then check every line after that with `check`. */
async function expectAfter(prog: Awaited<ReturnType<typeof startTarget>>, from: number, check: (s: Sample) => boolean): Promise<void> {
  await nextLine(prog, /^first /, from);
  await nextLine(prog, /^second /, from);
  const marker = prog.lines().length;
  await moreLines(prog, 4);
  for (const s of samples(prog.lines().slice(marker))) assert.ok(check(s), JSON.stringify(s));
}

describe('patching shared libraries', { concurrency: 2 }, () => {
  test('a changed function in a shared library the program links against', async () => {
    const base = files();
    const project = buildProject(base);
    const update = await createUpdate(project, 'lib3', { ...base, 'lib.c': LIB_C.replace('return x * 2;', 'return x * 3;') });
    assert.deepEqual(update.changes.map((c) => `${c.object}:${c.function}`), ['libcalc.so:lib_scale']);
    const prog = await startTarget(project.src, 'prog');
    await moreLines(prog, 2);
    for (const s of samples(prog.lines())) assert.equal(s.v, s.i * 2 + 1);
    await applyOk(update, prog.pid);
    await expectAfter(prog, prog.lines().length, (s) => s.v === s.i * 3 + 1);
    await undoOk('lib3', prog.pid);
    await expectAfter(prog, prog.lines().length, (s) => s.v === s.i * 2 + 1);
  });

  test('one update changing the executable and its shared library', async () => {
    const base = files();
    const project = buildProject(base);
    const update = await createUpdate(project, 'both', {
      ...base,
      'lib.c': LIB_C.replace('return x * 2;', 'return x * 5;'),
      'app.c': APP_C.replace('return x + 1;', 'return x - 7;'),
    });
    assert.deepEqual(update.changes.map((c) => `${c.object}:${c.function}`).sort(), ['libcalc.so:lib_scale', 'prog:app_offset']);
    const prog = await startTarget(project.src, 'prog');
    await moreLines(prog, 2);
    const applied = await applyOk(update, prog.pid);
    assert.deepEqual(applied.functions.sort(), ['app_offset', 'lib_scale']);
    await expectAfter(prog, prog.lines().length, (s) => s.v === s.i * 5 - 7);
    assert.deepEqual(await listIds(prog.pid), ['both']);
  });

  test('thread-local variables of a shared library (global and static) keep their values', async () => {
    const base = files();
    const project = buildProject(base);
    const update = await createUpdate(project, 'libtls', {
      ...base, 'lib.c': LIB_C.replace('return ++lib_calls + lib_private * 0;', 'lib_calls += 10;\n\treturn lib_calls * 1000 + lib_private;'),
    });
    const prog = await startTarget(project.src, 'prog');
    await moreLines(prog, 6);
    await applyOk(update, prog.pid);
    await expectAfter(prog, prog.lines().length, () => true);
    for (const thread of ['first', 'second']) {
      const mine = samples(prog.lines()).filter((s) => s.thread === thread);
      const switchAt = mine.findIndex((s) => s.n >= 1000);
      assert.ok(switchAt > 0, JSON.stringify(mine));
      // Before: 1, 2, 3... (lib_private = 2 n). After: each thread's counter goes on by 10, its static by 2.
      mine.slice(0, switchAt).forEach((s, k) => assert.equal(s.n, mine[0].n + k, JSON.stringify(s)));
      const last = mine[switchAt - 1].n;
      mine.slice(switchAt).forEach((s, k) => {
        const calls = last + 10 * (k + 1);
        const priv = 2 * (last + k + 1);
        assert.equal(s.n, calls * 1000 + priv, `${thread}: ${JSON.stringify(s)} (call ${k + 1} after the switch)`);
      });
    }
  });

  test('apply --all patches every process that maps the library', async () => {
    // A library name no other process on the machine maps.
    const lib = `tsall${process.pid}x${Date.now().toString(36)}`;
    const base = files(lib);
    const project = buildProject(base);
    const update = await createUpdate(project, 'all', { ...base, 'lib.c': LIB_C.replace('return x * 2;', 'return x * 4;') });
    const first = await startTarget(project.src, 'prog');
    const second = await startTarget(project.src, 'prog');
    await moreLines(second, 2);
    const r = await tsplice(['apply', update.path, '--all']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const processes = (r.json?.processes ?? []) as Array<{ pid: number; ok: boolean }>;
    assert.deepEqual(processes.map((p) => p.pid).sort(), [first.pid, second.pid].sort());
    assert.ok(processes.every((p) => p.ok), JSON.stringify(processes));
    for (const prog of [first, second]) {
      await expectAfter(prog, prog.lines().length, (s) => s.v === s.i * 4 + 1);
      assert.deepEqual(await listIds(prog.pid), ['all']);
    }
    // Applying again to all: each process refuses it as already applied, and the command fails.
    const again = await tsplice(['apply', update.path, '--all']);
    assert.equal(again.status, 1);
    const results = (again.json?.processes ?? []) as Array<{ ok: boolean; error?: { code: string } }>;
    assert.deepEqual(results.map((p) => p.error?.code), ['already_applied', 'already_applied']);
  });
});
