// A second update to a function an earlier update already replaced (built
// from the source with the first patch applied): it is matched against the
// first update's code, its jump goes at the function's entry again, and
// undoing in reverse order walks back through both versions.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  applyOk, buildProject, createUpdate, expectError, listIds, moreLines, nextLine, programMakefile, startTarget, tsplice,
  undoOk, type Files, type Target,
} from './harness.js';

const MAIN_C = `#include <stdio.h>
#include <unistd.h>
int value(int x);
int main(void)
{
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	puts("ready");
	for (int i = 0;; i++) {
		printf("value(%d)=%d\\n", i, value(i));
		usleep(20000);
	}
}
`;

const CALC_C = `static int calls;

int value(int x)
{
	calls++;
	if (x < 0)
		return 0;
	return x + 100;
}
`;

/* Update A: a libc function the program never called (reached through a call stub), a string, static data. */
const CALC_A = `#include <stdio.h>
#include <stdlib.h>
static int calls;

int value(int x)
{
	char text[32];

	calls++;
	if (x < 0)
		return 0;
	snprintf(text, sizeof(text), "%d", x * 2);
	return (int)strtol(text, NULL, 10) + 100;
}
`;

const CALC_B = CALC_A.replace('x * 2', 'x * 3');

const FILES: Files = { Makefile: programMakefile(['main.c', 'calc.c']), 'main.c': MAIN_C, 'calc.c': CALC_C };

/** The next few results all follow `f`. */
async function expectValues(prog: Target, f: (i: number) => number): Promise<void> {
  await nextLine(prog, /^value/, prog.lines().length + 1);
  for (const line of await moreLines(prog, 3)) {
    const [, i, v] = /^value\((\d+)\)=(-?\d+)$/.exec(line) ?? [];
    assert.equal(Number(v), f(Number(i)), line);
  }
}

describe('stacking updates of one function', { concurrency: 2 }, () => {
  test('stacking two updates of the same function, undone in reverse order', async () => {
    const project = buildProject(FILES);
    const a = await createUpdate(project, 'same-a', { ...FILES, 'calc.c': CALC_A });
    const afterA = { ...FILES, 'calc.c': CALC_A };
    const b = await createUpdate(project, 'same-b', { ...afterA, 'calc.c': CALC_B }, afterA);
    // Built from the original source: it does not know value() was already replaced.
    const stale = await createUpdate(project, 'same-stale', { ...FILES, 'calc.c': CALC_C.replace('x + 100', 'x + 7') });

    const prog = await startTarget(project.src, 'prog');
    await expectValues(prog, (i) => i + 100);
    const appliedA = await applyOk(a, prog.pid);
    await expectValues(prog, (i) => 2 * i + 100);

    const refused = expectError(await tsplice(['apply', stale.path, '--pid', String(prog.pid)]), 'no_match');
    assert.match(refused.message, /^value \(calc\.o\) differs at \+0x[0-9a-f]+ .*\[in the code update same-a installed for it\]/);
    assert.match(refused.message, /with same-a's patch applied/);
    assert.equal(refused.update, 'same-a');
    await expectValues(prog, (i) => 2 * i + 100);

    const appliedB = await applyOk(b, prog.pid);
    await expectValues(prog, (i) => 3 * i + 100);
    // B's jump is at value()'s own entry, where A's was.
    const fromA = (appliedA.json?.functions as Array<{ from: string }>)[0].from;
    const fromB = (appliedB.json?.functions as Array<{ from: string }>)[0].from;
    assert.equal(fromB, fromA);
    assert.deepEqual(await listIds(prog.pid), ['same-a', 'same-b']);

    expectError(await tsplice(['undo', 'same-a', '--pid', String(prog.pid)]), 'bad_input');
    await expectValues(prog, (i) => 3 * i + 100);
    await undoOk('same-b', prog.pid);
    await expectValues(prog, (i) => 2 * i + 100);
    await undoOk('same-a', prog.pid);
    await expectValues(prog, (i) => i + 100);
    assert.deepEqual(await listIds(prog.pid), []);

    // With A gone, B no longer matches: value() is the original again.
    const gone = expectError(await tsplice(['apply', b.path, '--pid', String(prog.pid)]), 'no_match');
    assert.match(gone.message, /^value \(calc\.o\) differs at/);
    await expectValues(prog, (i) => i + 100);
  });

  test('a later update changes a function an earlier update added, and one it replaced', async () => {
    const project = buildProject(FILES);
    const withTier = (k: number) => `__attribute__((noinline)) int tier(int x)
{
	return x % 3 == 0 ? ${k} : 0;
}

static int calls;

int value(int x)
{
	calls++;
	if (x < 0)
		return 0;
	return x + 100 + tier(x);
}
`;
    const afterA = { ...FILES, 'calc.c': withTier(1000) };
    const a = await createUpdate(project, 'tier-a', afterA);
    assert.deepEqual(a.changes.map((c) => `${c.function}:${c.kind}`).sort(), ['tier:new', 'value:changed']);
    const b = await createUpdate(project, 'tier-b', { ...afterA, 'calc.c': withTier(5000) }, afterA);
    assert.deepEqual(b.changes.map((c) => `${c.function}:${c.kind}`), ['tier:changed']);

    const prog = await startTarget(project.src, 'prog');
    await applyOk(a, prog.pid);
    await expectValues(prog, (i) => i + 100 + (i % 3 === 0 ? 1000 : 0));
    await applyOk(b, prog.pid);
    await expectValues(prog, (i) => i + 100 + (i % 3 === 0 ? 5000 : 0));
    await undoOk('tier-b', prog.pid);
    await expectValues(prog, (i) => i + 100 + (i % 3 === 0 ? 1000 : 0));
    assert.deepEqual(await listIds(prog.pid), ['tier-a']);
  });

  // main() sleeps in usleep(), and a slot of the frames above it still holds the return address of value()'s
  // call to tier() from the last iteration: the stack check must follow the unwound call chain, not every word.
  test('undo while a sleeping thread keeps a stale return address into the new code in its frame', async () => {
    const project = buildProject(FILES);
    const a = await createUpdate(project, 'stale-a', {
      ...FILES,
      'calc.c': `__attribute__((noinline)) int tier(int x)
{
	return x % 3 == 0 ? 1000 : 0;
}

static int calls;

int value(int x)
{
	calls++;
	if (x < 0)
		return 0;
	return x + 100 + tier(x);
}
`,
    });
    const prog = await startTarget(project.src, 'prog');
    await applyOk(a, prog.pid);
    await expectValues(prog, (i) => i + 100 + (i % 3 === 0 ? 1000 : 0));
    await undoOk('stale-a', prog.pid);
    await expectValues(prog, (i) => i + 100);
  });
});
