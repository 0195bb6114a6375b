// The stack check with unwound call chains: a dead word left on the stack
// no longer makes a function busy, a function really on the stack still is,
// and threads the unwinder cannot walk (in a signal handler, in code without
// CFI) get the conservative whole-stack scan.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { findBusy, type BusyRange } from '../../src/apply/stack-check.js';
import type { FrozenThread } from '../../src/apply/target.js';
import { ProcessSession } from '../../src/targets/process/session.js';
import { processSwitchTarget } from '../../src/targets/process/switch-target.js';
import { functionAddress, startProgram } from '../process/target-program.js';
import { tempDir } from '../helpers/tmp.js';

/*
 * leave_trace() calls traced(), which calls inner(): inner's return address
 * into traced() is pushed deep in the stack. Then sleeper() reserves an
 * untouched buffer over that slot and sleeps: the return address into
 * traced() stays there, dead.
 */
const STALE = String.raw`
#include <unistd.h>
volatile int sink;
__attribute__((noipa)) int inner(int x) { return x + 1; }
__attribute__((noipa)) int traced(int x) { volatile char pad[64]; pad[0] = (char)x; return inner(x) + pad[0]; }
__attribute__((noipa)) int deep(int n, int x) { volatile char pad[192]; pad[0] = 0; return n ? deep(n - 1, x) + pad[0] : traced(x); }
__attribute__((noipa)) void sleeper(void) {
  char buf[2048];
  __asm__ volatile("" : : "r"(buf) : "memory");
  for (;;) { usleep(100000); sink++; }
}
int main(void) {
  alarm(60);
  sink = deep(3, 5);
  /* write(), not printf(): a thin syscall wrapper that leaves the deep stack alone. */
  if (write(1, "ready\n", 6) != 6)
    return 1;
  sleeper();
}
`;

const SIGNAL = String.raw`
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
volatile int sink;
__attribute__((noipa)) void waiting(void) { for (;;) { usleep(100000); sink++; } }
static void handler(int sig) { (void)sig; printf("ready\n"); fflush(stdout); waiting(); }
int main(void) {
  alarm(60);
  signal(SIGUSR1, handler);
  raise(SIGUSR1);
  return 0;
}
`;

const NO_CFI = String.raw`
#include <stdio.h>
#include <unistd.h>
volatile int sink;
__attribute__((noipa)) void waiting(void) { for (;;) { usleep(100000); sink++; } }
int main(void) {
  alarm(60);
  printf("ready\n");
  fflush(stdout);
  waiting();
}
`;

function range(pid: number, binary: string, name: string): BusyRange {
  const f = functionAddress(pid, binary, name);
  return { name, start: f.address, end: f.address + BigInt(f.size) };
}

/** Freeze once; every thread with the stack bytes the check would scan. */
function freezeOnce(pid: number): Array<{ thread: FrozenThread; stack: Buffer }> {
  const session = ProcessSession.attach(pid);
  try {
    const target = processSwitchTarget(session);
    target.prepare?.();
    try {
      return target.freeze().map((thread) => ({ thread, stack: target.readStack(thread) }));
    } finally {
      target.resume();
    }
  } finally {
    session.detach();
  }
}

function check(frozen: { thread: FrozenThread; stack: Buffer }, ranges: BusyRange[], precise = true): string[] {
  const thread = precise ? frozen.thread : { ...frozen.thread, returnAddresses: undefined };
  return findBusy([thread], ranges, () => frozen.stack).map((h) => `${h.function}:${h.where}`);
}

describe('precise stack check', { concurrency: 2 }, () => {
  for (const flags of [['-O0'], ['-O2']]) {
    test(`a stale return address is not busy, a live frame is (${flags[0]})`, async () => {
      // Bound at load time: a lazy PLT resolution would run deep on the stack and wipe the dead word.
      const program = await startProgram(tempDir(), 'stale', STALE, { flags: [...flags, '-Wl,-z,now'] });
      const traced = range(program.pid, program.binary, 'traced');
      const sleeper = range(program.pid, program.binary, 'sleeper');
      const [main] = freezeOnce(program.pid);
      assert.ok(main.thread.returnAddresses, `not unwound: ${main.thread.unwindFailure}`);
      // The dead word is there: the conservative scan sees traced() ...
      assert.deepEqual(check(main, [traced], false), ['traced:stack']);
      // ... the unwound chain does not.
      assert.deepEqual(check(main, [traced]), []);
      assert.deepEqual(check(main, [sleeper]), ['sleeper:return-address']);
      program.kill();
    });
  }

  test('a thread in a signal handler falls back to the conservative scan', async () => {
    const program = await startProgram(tempDir(), 'signal', SIGNAL);
    const waiting = range(program.pid, program.binary, 'waiting');
    const main = range(program.pid, program.binary, 'main');
    const [thread] = freezeOnce(program.pid);
    assert.equal(thread.thread.returnAddresses, undefined);
    assert.match(thread.thread.unwindFailure ?? '', /signal frame|CFA expression|no FDE|does not follow a call/);
    // Both the handler's callee and the interrupted main() count, as words on the stack.
    assert.deepEqual(check(thread, [waiting, main]).sort(), ['main:stack', 'waiting:stack']);
    program.kill();
  });

  test('a thread returning into code without CFI falls back to the conservative scan', async () => {
    const program = await startProgram(tempDir(), 'nocfi', NO_CFI, { flags: ['-fno-asynchronous-unwind-tables', '-fno-unwind-tables'] });
    const waiting = range(program.pid, program.binary, 'waiting');
    const [thread] = freezeOnce(program.pid);
    assert.equal(thread.thread.returnAddresses, undefined);
    assert.match(thread.thread.unwindFailure ?? '', /no FDE covers 0x[0-9a-f]+ \(frame [1-9]/);
    assert.deepEqual(check(thread, [waiting]), ['waiting:stack']);
    program.kill();
  });
});
