// The life of updates in a running process: undo, stacking and last-in
// first-out undo, applying twice, and the failures that must leave the
// process exactly as it was: a binary built from other source, a pid that
// does not exist, a process that exits while tsplice works on it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  applyOk, buildProject, createUpdate, expectError, listIds, moreLines, nextLine, programMakefile, startTarget, tsplice,
  undoOk, type Files, type Target,
} from './harness.js';

const MAIN_C = `#include <stdio.h>
#include <unistd.h>
int first(int x);
int second(int x);
int main(void)
{
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	puts("ready");
	for (int i = 0;; i++) {
		printf("i=%d first=%d second=%d\\n", i, first(i), second(i));
		usleep(20000);
	}
}
`;

const CALC_C = `int first(int x)
{
	if (x < 0)
		return 0;
	return x + 100;
}

int second(int x)
{
	if (x < 0)
		return 0;
	return x + 200;
}
`;

const FILES: Files = { Makefile: programMakefile(['main.c', 'calc.c']), 'main.c': MAIN_C, 'calc.c': CALC_C };

/** Wait for two new lines and check that each shows first = i + a, second = i + b. */
async function expectOffsets(prog: Target, a: number, b: number): Promise<void> {
  await nextLine(prog, /^i=/, prog.lines().length + 1);
  for (const line of await moreLines(prog, 2)) {
    const [, i, f, s] = /^i=(\d+) first=(-?\d+) second=(-?\d+)$/.exec(line) ?? [];
    assert.deepEqual([Number(f) - Number(i), Number(s) - Number(i)], [a, b], line);
  }
}

/** Memory tsplice made in the process (code and record regions), as /proc/PID/maps shows it. */
function tspliceRegions(pid: number): string[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => /tsplice:/.test(l));
}

describe('the life of updates in a running process', { concurrency: 2 }, () => {
  test('undo restores the old code; a second apply is already_applied; undo of an unknown id is not_applied', async () => {
    const project = buildProject(FILES);
    const update = await createUpdate(project, 'first-1000', { ...FILES, 'calc.c': CALC_C.replace('x + 100', 'x + 1000') });
    const prog = await startTarget(project.src, 'prog');
    await expectOffsets(prog, 100, 200);
    await applyOk(update, prog.pid);
    await expectOffsets(prog, 1000, 200);
    assert.ok(tspliceRegions(prog.pid).length >= 2, 'code and record regions are mapped');

    const again = expectError(await tsplice(['apply', update.path, '--pid', String(prog.pid)]), 'already_applied');
    assert.match(again.message, /first-1000 is already applied/);
    assert.deepEqual(await listIds(prog.pid), ['first-1000']);

    expectError(await tsplice(['undo', 'no-such-update', '--pid', String(prog.pid)]), 'not_applied');
    const undone = await undoOk('first-1000', prog.pid);
    assert.deepEqual((undone.json?.functions as Array<{ function: string }>).map((f) => f.function), ['first']);
    await expectOffsets(prog, 100, 200);
    assert.deepEqual(await listIds(prog.pid), []);
    assert.deepEqual(tspliceRegions(prog.pid), [], 'undo frees the code and the record');
    expectError(await tsplice(['undo', 'first-1000', '--pid', String(prog.pid)]), 'not_applied');
    // And it can be applied again.
    await applyOk(update, prog.pid);
    await expectOffsets(prog, 1000, 200);
  });

  test('stacked updates are undone last in, first out; out-of-order undo is refused', async () => {
    const project = buildProject(FILES);
    const afterA = { ...FILES, 'calc.c': CALC_C.replace('x + 100', 'x + 111') };
    const afterB = { ...afterA, 'calc.c': afterA['calc.c'].replace('x + 200', 'x + 222') };
    const a = await createUpdate(project, 'stack-a', afterA);
    const b = await createUpdate(project, 'stack-b', afterB, afterA);
    const prog = await startTarget(project.src, 'prog');
    await applyOk(a, prog.pid);
    await expectOffsets(prog, 111, 200);
    await applyOk(b, prog.pid);
    await expectOffsets(prog, 111, 222);
    assert.deepEqual(await listIds(prog.pid), ['stack-a', 'stack-b']);

    const refused = expectError(await tsplice(['undo', 'stack-a', '--pid', String(prog.pid)]), 'bad_input');
    assert.match(refused.message, /stack-a cannot be undone before.*undo stack-b first/);
    await expectOffsets(prog, 111, 222);
    assert.deepEqual(await listIds(prog.pid), ['stack-a', 'stack-b']);

    await undoOk('stack-b', prog.pid);
    await expectOffsets(prog, 111, 200);
    await undoOk('stack-a', prog.pid);
    await expectOffsets(prog, 100, 200);
    assert.deepEqual(await listIds(prog.pid), []);
    assert.deepEqual(tspliceRegions(prog.pid), []);
  });

  test('a binary built from different source: no_match naming the function and offset, nothing changed', async () => {
    // The running program was built with another version of calc.c than the one the update comes from.
    const running = buildProject({ ...FILES, 'calc.c': CALC_C.replace('x + 200', 'x * 3 + 200') });
    const other = buildProject(FILES);
    const update = await createUpdate(other, 'elsewhere', { ...FILES, 'calc.c': CALC_C.replace('x + 200', 'x + 2000') });
    const prog = await startTarget(running.src, 'prog');
    await moreLines(prog, 1);
    const before = readFileSync(`/proc/${prog.pid}/maps`, 'utf8');
    const error = expectError(await tsplice(['apply', update.path, '--pid', String(prog.pid)]), 'no_match');
    assert.equal(error.function, 'second');
    assert.equal(typeof error.offset, 'number');
    assert.match(error.message, new RegExp(`^second \\(calc\\.o\\) differs at \\+0x${(error.offset as number).toString(16)} `));
    assert.match(error.message, /not the one this update was built from/);
    assert.equal(readFileSync(`/proc/${prog.pid}/maps`, 'utf8'), before, 'no memory was made or left in the process');
    assert.deepEqual(await listIds(prog.pid), []);
    for (const line of await moreLines(prog, 3)) {
      const [, i, s] = /^i=(\d+) first=-?\d+ second=(-?\d+)$/.exec(line) ?? [];
      assert.equal(Number(s), Number(i) * 3 + 200, line);
    }
    assert.ok(prog.alive());
  });

  test('a pid that does not exist: target_gone from apply, list and undo', async () => {
    // A process that has exited and been waited for: its pid is free.
    const gone = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' });
    const pid = gone.stdout.trim();
    const project = buildProject(FILES);
    const update = await createUpdate(project, 'nobody', { ...FILES, 'calc.c': CALC_C.replace('x + 100', 'x + 1') });
    for (const args of [['apply', update.path], ['list'], ['undo', 'nobody']]) {
      const error = expectError(await tsplice([...args, '--pid', pid]), 'target_gone');
      assert.match(error.message, new RegExp(`\\b${pid}\\b`));
    }
  });

  const EXITING_MAIN = `#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int first(int x);
int second(int x);
void stay(void);
static void *stayer(void *arg)
{
	(void)arg;
	stay();
	return NULL;
}
int main(int argc, char **argv)
{
	/* Lives for argv[1] ms; with argv[2], a thread keeps stay() busy all that time. */
	long ms = argc > 1 ? atol(argv[1]) : 500;
	pthread_t t;

	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2)
		pthread_create(&t, NULL, stayer, NULL);
	puts("ready");
	for (long waited = 0; waited < ms; waited += 5) {
		first((int)waited);
		usleep(5000);
	}
	printf("exiting\\n");
	exit(0);
}
`;

  const STAY_C = `#include <unistd.h>
void stay(void)
{
	for (;;)
		usleep(10000);
}
`;

  test('a process that exits during apply: target_gone, no hang, no other error', async () => {
    const files: Files = {
      Makefile: programMakefile(['main.c', 'calc.c', 'stay.c']), 'main.c': EXITING_MAIN, 'calc.c': CALC_C, 'stay.c': STAY_C,
    };
    const project = buildProject(files);

    // Deterministic: stay() is busy, so apply retries until the process exits under it.
    const busy = await createUpdate(project, 'exits-busy', { ...files, 'stay.c': STAY_C.replace('usleep(10000)', 'usleep(20000)') });
    const prog = await startTarget(project.src, 'prog', ['1500', 'busy']);
    const started = Date.now();
    const error = expectError(await tsplice(['apply', busy.path, '--pid', String(prog.pid), '--retries', '200']), 'target_gone');
    assert.match(error.message, new RegExp(`\\b${prog.pid}\\b`));
    assert.ok(Date.now() - started < 30_000);
    assert.match(prog.text(), /exiting/);

    // Exits at varying moments of the apply: each run ends with the update applied or with target_gone.
    const update = await createUpdate(project, 'exits', { ...files, 'calc.c': CALC_C.replace('x + 100', 'x + 5') });
    const outcomes: string[] = [];
    for (const lifetimeMs of [150, 350, 550, 750, 950]) {
      const short = await startTarget(project.src, 'prog', [String(lifetimeMs)]);
      const r = await tsplice(['apply', update.path, '--pid', String(short.pid)]);
      const outcome = r.status === 0 ? 'applied' : (r.error?.code ?? `status ${r.status}`);
      assert.ok(outcome === 'applied' || outcome === 'target_gone', `lived ${lifetimeMs} ms: ${r.stdout}${r.stderr}`);
      outcomes.push(outcome);
    }
    assert.ok(outcomes.includes('target_gone'), outcomes.join(' '));
  });
});
