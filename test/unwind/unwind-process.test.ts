// Unwinding stopped real processes with .eh_frame: the call chain of a
// thread sleeping in usleep() from c() from b() from a(), at -O0 and -O2,
// with and without frame pointers; and the cases that must fall back to the
// conservative scan (signal frames, code without CFI).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { FrozenThread } from '../../src/apply/target.js';
import { ProcessSession } from '../../src/targets/process/session.js';
import { processSwitchTarget } from '../../src/targets/process/switch-target.js';
import { functionAddress, startProgram } from '../process/target-program.js';
import { tempDir } from '../helpers/tmp.js';

const CHAIN = String.raw`
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
volatile int sink;
__attribute__((noipa)) void c(void) { for (;;) { usleep(100000); sink++; } }
__attribute__((noipa)) void b(void) { c(); sink++; }
__attribute__((noipa)) void a(void) { b(); sink++; }
__attribute__((noipa)) void *worker(void *arg) { (void)arg; a(); return 0; }
int main(void) {
  alarm(60);
  pthread_t t;
  pthread_create(&t, 0, worker, 0);
  pthread_setname_np(t, "worker");
  printf("ready\n");
  fflush(stdout);
  for (;;) { usleep(100000); sink++; }
}
`;

interface Fn {
  name: string;
  start: bigint;
  end: bigint;
}

function fn(pid: number, binary: string, name: string): Fn {
  const f = functionAddress(pid, binary, name);
  return { name, start: f.address, end: f.address + BigInt(f.size) };
}

function libcRange(pid: number): { start: bigint; end: bigint } {
  const lines = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => /\/libc[.-]/.test(l));
  const starts = lines.map((l) => BigInt('0x' + l.split('-')[0]));
  const ends = lines.map((l) => BigInt('0x' + l.split(/[- ]/)[1]));
  return { start: starts.reduce((a, b) => (a < b ? a : b)), end: ends.reduce((a, b) => (a > b ? a : b)) };
}

/** Freeze once through the switch target and hand back every thread as the stack check sees it. */
function frozenThreads(pid: number): FrozenThread[] {
  const session = ProcessSession.attach(pid);
  try {
    const target = processSwitchTarget(session);
    target.prepare?.();
    try {
      return target.freeze();
    } finally {
      target.resume();
    }
  } finally {
    session.detach();
  }
}

/** Names of the functions (among fns) the return addresses fall in, innermost first; others as "?". */
function chainNames(ras: readonly bigint[], fns: readonly Fn[]): string[] {
  return ras.map((ra) => fns.find((f) => ra > f.start && ra <= f.end)?.name ?? '?');
}

const VARIANTS: Array<{ label: string; flags: string[] }> = [
  { label: '-O0 with frame pointers', flags: ['-O0', '-fno-omit-frame-pointer'] },
  { label: '-O0 without frame pointers', flags: ['-O0', '-fomit-frame-pointer'] },
  { label: '-O2 with frame pointers', flags: ['-O2', '-fno-omit-frame-pointer'] },
  { label: '-O2 without frame pointers', flags: ['-O2', '-fomit-frame-pointer'] },
];

describe('unwinding a stopped process with .eh_frame', { concurrency: 2 }, () => {
  for (const variant of VARIANTS) {
    test(`usleep ← c ← b ← a ← worker ← libc, and usleep ← main ← libc ← _start (${variant.label})`, async () => {
      const program = await startProgram(tempDir(), 'chain', CHAIN, { flags: variant.flags });
      const fns = ['a', 'b', 'c', 'worker', 'main', '_start'].map((n) => fn(program.pid, program.binary, n));
      const libc = libcRange(program.pid);
      const inLibc = (x: bigint): boolean => x >= libc.start && x < libc.end;
      const threads = frozenThreads(program.pid);
      assert.equal(threads.length, 2);

      const worker = threads.find((t) => t.name === 'worker')!;
      assert.ok(worker.returnAddresses, `worker not unwound: ${worker.unwindFailure}`);
      const wras = worker.returnAddresses;
      assert.ok(inLibc(worker.ip), 'the worker sleeps inside libc');
      const wnames = chainNames(wras, fns);
      const firstOwn = wnames.indexOf('c');
      assert.ok(firstOwn >= 1, `chain ${wnames.join(' ← ')}`);
      // Everything below c is libc (usleep, nanosleep); then exactly c, b, a, worker; then libc (start_thread, clone3).
      assert.ok(wras.slice(0, firstOwn).every(inLibc));
      assert.deepEqual(wnames.slice(firstOwn, firstOwn + 4), ['c', 'b', 'a', 'worker']);
      assert.ok(wras.length > firstOwn + 4, 'start_thread / clone3 follow worker');
      assert.ok(wras.slice(firstOwn + 4).every(inLibc), 'the thread starts in libc');

      const main = threads.find((t) => t.tid === program.pid)!;
      assert.ok(main.returnAddresses, `main not unwound: ${main.unwindFailure}`);
      const mnames = chainNames(main.returnAddresses, fns);
      const atMain = mnames.indexOf('main');
      assert.ok(atMain >= 1 && main.returnAddresses.slice(0, atMain).every(inLibc), `chain ${mnames.join(' ← ')}`);
      assert.equal(mnames.at(-1), '_start', `chain ${mnames.join(' ← ')}`);
      assert.ok(main.returnAddresses.slice(atMain + 1, -1).every(inLibc));
      program.kill();
    });
  }
});
