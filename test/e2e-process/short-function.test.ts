// Functions shorter than the 5-byte jump (at -O2 `return x;` is 3 bytes: mov,
// ret). The jump may cover the alignment padding after such a function in
// the running code, when no symbol starts there; the bytes it covers come
// back on undo. With no padding after it, apply refuses and changes nothing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { paddingAfter } from '../../src/apply/trampoline.js';
import {
  applyOk, buildProject, createUpdate, expectError, listIds, moreLines, nextLine, programMakefile, startTarget, tsplice,
  undoOk, type Files, type Target,
} from './harness.js';

const MAIN_C = `#include <stdio.h>
#include <unistd.h>
int compute(int x);
int main(void)
{
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	puts("ready");
	for (int i = 0;; i++) {
		printf("compute(%d)=%d\\n", i, compute(i));
		usleep(20000);
	}
}
`;

/** A global one-line function (no endbr64 without -fcf-protection) and a longer one right after it. */
const levelC = (body: string): string => `int level(int x)
{
	return ${body};
}

int compute(int x)
{
	return level(x) * 5 + 1;
}
`;

/** A static function called directly only: gcc gives it no endbr64 even with -fcf-protection. */
const scaleC = (body: string): string => `static __attribute__((noinline)) int scale(int x)
{
	return ${body};
}

int compute(int x)
{
	return scale(x) + 1;
}
`;

async function expectResults(prog: Target, f: (i: number) => number): Promise<void> {
  await nextLine(prog, /^compute/, prog.lines().length + 1);
  for (const line of await moreLines(prog, 3)) {
    const [, i, v] = /^compute\((\d+)\)=(-?\d+)$/.exec(line) ?? [];
    assert.equal(Number(v), f(Number(i)), line);
  }
}

/** Size of `name` in the linked program and its run-time address in process `pid`. */
function runningSymbol(binary: string, pid: number, name: string): { address: bigint; size: number } {
  const line = execFileSync('nm', ['-S', binary], { encoding: 'utf8' }).split('\n').find((l) => l.endsWith(` ${name}`));
  assert.ok(line, `${name} is not in ${binary}`);
  const [value, size] = line.split(' ');
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n');
  const first = maps.find((l) => l.endsWith(binary) && / 00000000 /.test(l));
  assert.ok(first, `${binary} is not mapped in ${pid}`);
  const base = BigInt(`0x${first.split('-')[0]}`);
  return { address: base + BigInt(`0x${value}`), size: Number(`0x${size}`) };
}

function readMemory(pid: number, address: bigint, length: number): Buffer {
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const out = Buffer.alloc(length);
    assert.equal(readSync(fd, out, 0, length, address), length);
    return out;
  } finally {
    closeSync(fd);
  }
}

/** Patch `name` (shorter than the jump) live, check the results and the entry bytes, undo. */
async function patchShortFunction(files: Files, after: Files, name: string, id: string, before: (i: number) => number,
  patched: (i: number) => number): Promise<void> {
  const project = buildProject(files);
  const update = await createUpdate(project, id, after);
  assert.ok(update.changes.some((c) => c.function === name && c.kind === 'changed'), JSON.stringify(update.changes));

  const prog = await startTarget(project.src, 'prog');
  const fn = runningSymbol(join(project.src, 'prog'), prog.pid, name);
  assert.ok(fn.size < 5, `${name} is ${fn.size} bytes: the test needs one shorter than the jump`);
  const original = readMemory(prog.pid, fn.address, 5);
  await expectResults(prog, before);

  const applied = await applyOk(update, prog.pid);
  assert.ok(applied.functions.includes(name));
  const entry = readMemory(prog.pid, fn.address, 5);
  assert.equal(entry[0], 0xe9, `a jmp rel32 at ${name}: ${entry.toString('hex')}`);
  await expectResults(prog, patched);

  await undoOk(id, prog.pid);
  assert.deepEqual(readMemory(prog.pid, fn.address, 5), original, 'undo restores the function and the padding after it');
  await expectResults(prog, before);
  assert.deepEqual(await listIds(prog.pid), []);
}

describe('functions shorter than the jump', { concurrency: 2 }, () => {
  test('a 3-byte function followed by alignment padding is patched live and restored by undo', async () => {
    const files: Files = { Makefile: programMakefile(['main.c', 'level.c']), 'main.c': MAIN_C, 'level.c': levelC('x') };
    await patchShortFunction(files, { ...files, 'level.c': levelC('x + 1000') }, 'level', 'short-level',
      (i) => i * 5 + 1, (i) => (i + 1000) * 5 + 1);
  });

  test('a static 3-byte function of a -fcf-protection build is patched live and restored by undo', async () => {
    const makefile = programMakefile(['main.c', 'scale.c']).replace('CFLAGS ?= -O2 -g -Wall', 'CFLAGS ?= -O2 -g -Wall -fcf-protection');
    assert.match(makefile, /-fcf-protection/);
    const files: Files = { Makefile: makefile, 'main.c': MAIN_C, 'scale.c': scaleC('x') };
    await patchShortFunction(files, { ...files, 'scale.c': scaleC('x * 3') }, 'scale', 'short-scale',
      (i) => i + 1, (i) => 3 * i + 1);
  });

  test('a short function with other code right after it is refused, and the program keeps running unchanged', async () => {
    // Without function alignment there is no padding: compute() starts right after level()'s ret.
    const makefile = programMakefile(['main.c', 'level.c']).replace('CFLAGS ?= -O2 -g -Wall', 'CFLAGS ?= -O2 -g -Wall -falign-functions=1');
    const files: Files = { Makefile: makefile, 'main.c': MAIN_C, 'level.c': levelC('x') };
    const project = buildProject(files);
    const update = await createUpdate(project, 'short-tight', { ...files, 'level.c': levelC('x + 1000') });
    const prog = await startTarget(project.src, 'prog');
    const fn = runningSymbol(join(project.src, 'prog'), prog.pid, 'level');
    const original = readMemory(prog.pid, fn.address, 8);

    const refused = expectError(await tsplice(['apply', update.path, '--pid', String(prog.pid)]), 'unsupported_change');
    assert.match(refused.message, /^function level is 3 bytes long, too short for the 5-byte jump/);
    assert.match(refused.message, /not padding/);
    assert.match(refused.message, /keeps its code/);
    assert.deepEqual(readMemory(prog.pid, fn.address, 8), original);
    assert.deepEqual(await listIds(prog.pid), []);
    await expectResults(prog, (i) => i * 5 + 1);
    assert.ok(prog.alive());
  });

  test('padding: NOPs of any length and int3 fill count, in whole instructions; code does not', () => {
    const at = 0x1000n;
    // data16 cs nopw 0x0(%rax,%rax,1): one 11-byte NOP covers the 2 bytes wanted.
    assert.equal(paddingAfter(at, Buffer.from('66662e0f1f840000000000', 'hex'), 2), 11);
    assert.equal(paddingAfter(at, Buffer.from('cccccccc', 'hex'), 2), 2);
    assert.equal(paddingAfter(at, Buffer.from('90cc0f1f00', 'hex'), 4), 5);
    // lea (%rdi,%rdi,4),%eax: the next function's code.
    assert.equal(paddingAfter(at, Buffer.from('8d04bfc3', 'hex'), 2), 0);
    assert.equal(paddingAfter(at, Buffer.from('90f30f1efa', 'hex'), 3), 1, 'endbr64 starts a function: not padding');
    // A NOP cut off by the end of what could be read is not counted.
    assert.equal(paddingAfter(at, Buffer.from('0f1f', 'hex'), 2), 0);
  });
});
