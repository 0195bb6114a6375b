// A second update to a function an earlier update replaced, where the
// function reads external data: glibc's `stderr` and a global another .c
// file defines. The code running after the first update is its post build,
// compiled with -mno-direct-extern-access (external data through a GOT slot),
// while the running original reads the same data directly; the second
// update must be matched against the first update's copy with pre code built
// the same way, while a function it changes that still runs as the original
// is matched with the normal pre code.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  applyOk, buildProject, createUpdate, expectError, listIds, moreLines, programMakefile, startTarget, tsplice, undoOk,
  waitUntil, type Files, type Target,
} from './harness.js';
import { readUpdate } from '../../src/update/package.js';

const MAIN_C = `#include <stdio.h>
#include <unistd.h>
int threshold = 7;
int value(int x);
int extra(int x);
int main(void)
{
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	puts("ready");
	for (int i = 0;; i++) {
		printf("value(%d)=%d\\n", i, value(i) + extra(i));
		usleep(20000);
	}
}
`;

/**
 * value() prints a tag on stderr every other call and scales the global;
 * extra() reads the global too. The program prints value(i) + extra(i).
 */
const calc = (tag: string, factor: number, slope: number): string => `#include <stdio.h>
extern int threshold;

int value(int x)
{
	if (x % 2 == 0)
		fprintf(stderr, "${tag} %d\\n", x);
	return x + ${factor} * threshold;
}

int extra(int x)
{
	return x * ${slope} + threshold;
}
`;

const ORIGINAL = calc('orig', 1, 0);
/** A replaces value() only. */
const AFTER_A = calc('upd-a', 10, 0);
/** B replaces value() again (running as A's copy) and extra() for the first time (running as the original). */
const AFTER_B = calc('upd-b', 100, 2);

const FILES: Files = { Makefile: programMakefile(['main.c', 'calc.c']), 'main.c': MAIN_C, 'calc.c': ORIGINAL };

/**
 * The program's next values all follow `f`, and the stderr lines among them
 * carry `tag` (stdout and stderr share the output file).
 */
async function expectBehaviour(prog: Target, tag: string, f: (i: number) => number): Promise<void> {
  // Lines printed before the switch may still be in flight: judge only what follows a fresh value line.
  const start = prog.lines().length;
  await waitUntil(() => prog.lines().slice(start).some((l) => l.startsWith('value(')), 'a value line');
  const from = prog.lines().length;
  await moreLines(prog, 6);
  const lines = prog.lines().slice(from);
  const values = lines.filter((l) => l.startsWith('value('));
  const notes = lines.filter((l) => !l.startsWith('value('));
  assert.ok(values.length >= 2 && notes.length >= 1, lines.join('\n'));
  for (const line of values) {
    const [, i, v] = /^value\((\d+)\)=(-?\d+)$/.exec(line) ?? [];
    assert.equal(Number(v), f(Number(i)), line);
  }
  for (const line of notes) assert.match(line, new RegExp(`^${tag} \\d*[02468]$`), lines.join('\n'));
}

describe('stacking on a function that reads external data', { concurrency: 1 }, () => {
  test('a second update of a function reading stderr and another file\'s global, undone in reverse order', async () => {
    const project = buildProject(FILES);
    const afterA = { ...FILES, 'calc.c': AFTER_A };
    const a = await createUpdate(project, 'ext-a', afterA);
    const b = await createUpdate(project, 'ext-b', { ...afterA, 'calc.c': AFTER_B }, afterA);
    // The package carries the original calc.o also as built with the shipping flags, checksummed like the rest.
    const [unitA] = readUpdate(a.path).manifest.units;
    assert.equal(unitA.preShipped, 'units/0/pre-shipped.o');
    assert.match(readUpdate(a.path).manifest.hashes[unitA.preShipped] ?? '', /^[0-9a-f]{64}$/);

    const prog = await startTarget(project.src, 'prog');
    await expectBehaviour(prog, 'orig', (i) => i + 7 + 7);

    // B is built on A: against the original code it does not match.
    const early = expectError(await tsplice(['apply', b.path, '--pid', String(prog.pid)]), 'no_match');
    assert.match(early.message, /^value \(calc\.o\) differs at/);

    assert.deepEqual((await applyOk(a, prog.pid)).functions, ['value']);
    await expectBehaviour(prog, 'upd-a', (i) => i + 70 + 7);
    const appliedB = await applyOk(b, prog.pid);
    assert.deepEqual([...appliedB.functions].sort(), ['extra', 'value']);
    await expectBehaviour(prog, 'upd-b', (i) => i + 700 + 2 * i + 7);
    assert.deepEqual(await listIds(prog.pid), ['ext-a', 'ext-b']);

    await undoOk('ext-b', prog.pid);
    await expectBehaviour(prog, 'upd-a', (i) => i + 70 + 7);
    await undoOk('ext-a', prog.pid);
    await expectBehaviour(prog, 'orig', (i) => i + 7 + 7);
    assert.deepEqual(await listIds(prog.pid), []);
    assert.ok(prog.alive());
  });
});
