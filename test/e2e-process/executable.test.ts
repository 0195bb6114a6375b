// Patching functions of a running executable (-O2, PIE, built by its own
// Makefile): plain changes, new functions and strings, glibc functions and
// data the program never used, TLS, the program's own IFUNCs, read-only data.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  applyOk, buildProject, createUpdate, listIds, moreLines, nextLine, programMakefile, startTarget, undoOk, type Files,
} from './harness.js';

/** A main that calls `step(i)` (from another file, so it is never inlined) every 20 ms and prints its result. */
function loopMain(decl: string, call: string, format: string): string {
  return `#include <stdio.h>
#include <unistd.h>
${decl}
int main(void)
{
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\\n");
	for (int i = 0;; i++) {
		printf(${format}, i, ${call});
		usleep(20000);
	}
}
`;
}

/** The result main printed for the last line matching `re` (group 1). */
function lastValue(lines: string[], re: RegExp): string | undefined {
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = re.exec(lines[i]);
    if (m) return m[1];
  }
  return undefined;
}

describe('patching a running executable', { concurrency: 2 }, () => {
  test('a changed function in a running -O2 PIE executable', async () => {
    const files: Files = {
      Makefile: programMakefile(['main.c', 'calc.c']),
      'main.c': loopMain('int scale(int x);', 'scale(i)', '"scale(%d)=%d\\n"'),
      'calc.c': 'int scale(int x)\n{\n\treturn x * 2 + 1;\n}\n',
    };
    const project = buildProject(files);
    const header = execFileSync('readelf', ['-h', join(project.src, 'prog')], { encoding: 'utf8' });
    assert.match(header, /Type:\s+DYN/, 'gcc builds PIE executables by default here');
    const update = await createUpdate(project, 'scale3', { ...files, 'calc.c': files['calc.c'].replace('x * 2 + 1', 'x * 3 + 1') });
    const prog = await startTarget(project.src, 'prog');
    await moreLines(prog, 2);
    for (const line of prog.lines().filter((l) => l.startsWith('scale('))) {
      const [, i, v] = /scale\((\d+)\)=(-?\d+)/.exec(line) ?? [];
      assert.equal(Number(v), Number(i) * 2 + 1, line);
    }

    const applied = await applyOk(update, prog.pid);
    assert.deepEqual(applied.functions, ['scale']);
    assert.equal(applied.json?.pid, prog.pid);
    assert.ok(typeof applied.json?.freezeMs === 'number');
    const from = prog.lines().length;
    const line = await nextLine(prog, /^scale/, from);
    // Every result printed after the apply returned uses the new code.
    for (const l of [line, ...(await moreLines(prog, 3))]) {
      const [, i, v] = /scale\((\d+)\)=(-?\d+)/.exec(l) ?? [];
      assert.equal(Number(v), Number(i) * 3 + 1, l);
    }
    assert.deepEqual(await listIds(prog.pid), ['scale3']);
    assert.ok(prog.alive());
  });

  test('a patch that adds a function and a string literal', async () => {
    const calc = `const char *describe(int x)
{
	return x % 10 > 5 ? "big" : "small";
}
`;
    const files: Files = {
      Makefile: programMakefile(['main.c', 'calc.c']),
      'main.c': loopMain('const char *describe(int x);', 'describe(i)', '"describe(%d)=%s\\n"'),
      'calc.c': calc,
    };
    const project = buildProject(files);
    const patched = `__attribute__((noinline)) const char *tier(int x)
{
	return x % 10 > 8 ? "huge (tier 3)" : x % 10 > 5 ? "big" : "small";
}

const char *describe(int x)
{
	return tier(x);
}
`;
    const update = await createUpdate(project, 'tier', { ...files, 'calc.c': patched });
    assert.deepEqual(update.changes.map((c) => `${c.function}:${c.kind}`).sort(), ['describe:changed', 'tier:new']);
    const prog = await startTarget(project.src, 'prog');
    await nextLine(prog, /^describe\(\d*9\)=big$/, 0, 5000);
    await applyOk(update, prog.pid);
    const from = prog.lines().length;
    assert.match(await nextLine(prog, /^describe\(\d*9\)=/, from, 5000), /=huge \(tier 3\)$/);
    assert.match(await nextLine(prog, /^describe\(\d*7\)=/, from, 5000), /=big$/);
  });

  test('new code calls glibc functions and uses glibc data the program never used (stderr, errno, an IFUNC)', async () => {
    // The program itself never calls strnlen (an IFUNC in glibc), fprintf, or touches stderr or errno.
    const files: Files = {
      Makefile: programMakefile(['main.c', 'text.c']),
      'main.c': `#include <stdio.h>
#include <unistd.h>
int measure(const char *s);
static const char *const words[] = { "tiny", "a much longer word than sixteen" };
int main(void)
{
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	puts("ready");
	for (int i = 0;; i++) {
		printf("measure(%d)=%d\\n", i, measure(words[i % 2]));
		usleep(20000);
	}
}
`,
      'text.c': `int measure(const char *s)
{
	int n = 0;
	while (s[n])
		n++;
	return n;
}
`,
    };
    const project = buildProject(files);
    const imports = execFileSync('readelf', ['--dyn-syms', '-W', join(project.src, 'prog')], { encoding: 'utf8' });
    assert.doesNotMatch(imports, /\b(strnlen|stderr|fprintf|__errno_location)\b/, 'the program must not use them before the patch');
    const update = await createUpdate(project, 'bounded', {
      ...files,
      'text.c': `#include <errno.h>
#include <stdio.h>
#include <string.h>
int measure(const char *s)
{
	size_t n = strnlen(s, 16);

	errno = 0;
	if (n >= 16) {
		errno = E2BIG;
		fprintf(stderr, "measure: refused a word of 16 bytes or more\\n");
		return -errno;
	}
	return (int)n;
}
`,
    });
    const prog = await startTarget(project.src, 'prog');
    await nextLine(prog, /^measure\(\d+\)=31$/, 0);
    await applyOk(update, prog.pid);
    const from = prog.lines().length;
    await nextLine(prog, /^measure: refused a word of 16 bytes or more$/, from);
    await nextLine(prog, /^measure\(\d*[13579]\)=-7$/, from); // -E2BIG
    await nextLine(prog, /^measure\(\d*[02468]\)=4$/, from);
  });

  test('a thread-local variable of the executable keeps its value across the patch', async () => {
    const files: Files = {
      Makefile: programMakefile(['main.c', 'count.c']),
      'main.c': `#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
int bump(void);
static void *worker(void *arg)
{
	for (;;) {
		printf("%s %d\\n", (const char *)arg, bump());
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
`,
      'count.c': `__thread int calls;
static __thread int unused_pad[3];
int bump(void)
{
	unused_pad[calls % 3]++;
	return ++calls;
}
`,
    };
    const project = buildProject(files);
    const update = await createUpdate(project, 'by10', { ...files, 'count.c': files['count.c'].replace('return ++calls;', 'calls += 10;\n\treturn calls;') });
    const prog = await startTarget(project.src, 'prog');
    await moreLines(prog, 6);
    await applyOk(update, prog.pid);
    const from = prog.lines().length;
    await nextLine(prog, /^first/, from);
    await nextLine(prog, /^second/, from);
    await moreLines(prog, 4);
    // Each thread's own counter goes on from where it was, by 1 before and by 10 after.
    for (const name of ['first', 'second']) {
      const values = prog.lines().filter((l) => l.startsWith(`${name} `)).map((l) => Number(l.split(' ')[1]));
      const steps = values.slice(1).map((v, i) => v - values[i]);
      const firstTen = steps.indexOf(10);
      assert.ok(firstTen > 0, `${name}: ${values.join(' ')}`);
      assert.deepEqual(steps.slice(0, firstTen).filter((s) => s !== 1), [], `${name} before: ${values.join(' ')}`);
      assert.deepEqual(steps.slice(firstTen).filter((s) => s !== 10), [], `${name} after: ${values.join(' ')}`);
    }
  });

  test("the program's own IFUNCs: one the old code called, and one only the new code calls", async () => {
    const files: Files = {
      Makefile: programMakefile(['main.c', 'ops.c']),
      'main.c': loopMain('int combine(int x);', 'combine(i)', '"combine(%d)=%d\\n"'),
      'ops.c': `static int add_plain(int a, int b)
{
	return a + b;
}
static int mul_plain(int a, int b)
{
	return a * b;
}
/* Resolvers choose an implementation once, as for CPU-specific code. */
static int (*pick_add(void))(int, int)
{
	return add_plain;
}
static int (*pick_mul(void))(int, int)
{
	return mul_plain;
}
int add(int a, int b) __attribute__((ifunc("pick_add")));
int mul(int a, int b) __attribute__((ifunc("pick_mul")));
int combine(int x)
{
	return add(x, 1000);
}
int square(int x)
{
	return mul(x, x);
}
`,
    };
    const project = buildProject(files);
    const update = await createUpdate(project, 'ifuncs', {
      ...files, 'ops.c': files['ops.c'].replace('return add(x, 1000);', 'return add(mul(x, 7), 2000);'),
    });
    const prog = await startTarget(project.src, 'prog');
    await nextLine(prog, /^combine\(5\)=1005$/, 0);
    await applyOk(update, prog.pid);
    const from = prog.lines().length;
    const line = await nextLine(prog, /^combine/, from);
    const [, i, v] = /combine\((\d+)\)=(-?\d+)/.exec(line) ?? [];
    assert.equal(Number(v), Number(i) * 7 + 2000, line);
  });

  test('new code reads a read-only table', async () => {
    const files: Files = {
      Makefile: programMakefile(['main.c', 'table.c']),
      'main.c': loopMain('int weight(int x);', 'weight(i)', '"weight(%d)=%d\\n"'),
      'table.c': `static const int weights[8] = { 3, 1, 4, 1, 5, 9, 2, 6 };
static const char tag[] = "weights v1";
int weight(int x)
{
	return weights[x % 8] + (tag[9] - '0');
}
`,
    };
    const project = buildProject(files);
    const update = await createUpdate(project, 'table', {
      ...files, 'table.c': files['table.c'].replace("return weights[x % 8] + (tag[9] - '0');", 'return weights[(x * 3) % 8] * 100 + weights[7 - x % 8];'),
    });
    const table = [3, 1, 4, 1, 5, 9, 2, 6];
    const prog = await startTarget(project.src, 'prog');
    await moreLines(prog, 2);
    await applyOk(update, prog.pid);
    const from = prog.lines().length;
    await nextLine(prog, /^weight/, from);
    for (const l of [...prog.lines().slice(from).filter((x) => x.startsWith('weight')), ...(await moreLines(prog, 8))]) {
      const [, i, v] = /weight\((\d+)\)=(-?\d+)/.exec(l) ?? [];
      const x = Number(i);
      assert.equal(Number(v), table[(x * 3) % 8] * 100 + table[7 - (x % 8)], l);
    }
    assert.equal(lastValue(prog.lines(), /^weight\(\d+\)=(\d+)/) !== undefined, true);
    await undoOk('table', prog.pid);
    const back = prog.lines().length;
    const l = await nextLine(prog, /^weight/, back + 1);
    const [, i, v] = /weight\((\d+)\)=(-?\d+)/.exec(l) ?? [];
    assert.equal(Number(v), table[Number(i) % 8] + 1, l);
  });
});
