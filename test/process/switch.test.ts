// The freeze / stack check / switch engine on a real process: redirect a
// function to new code, undo it, refuse while the function is in use.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { findBusy } from '../../src/apply/stack-check.js';
import { switchCode } from '../../src/apply/switch.js';
import { decodeJmpRel32, encodeJmpRel32, trampolineFor } from '../../src/apply/trampoline.js';
import { isTspliceError } from '../../src/errors.js';
import { readMaps } from '../../src/targets/process/maps.js';
import { readRecords, removeRecord, writeRecord } from '../../src/targets/process/record.js';
import { PROT_EXEC, PROT_READ, remoteMmap, remoteMunmap } from '../../src/targets/process/remote-syscall.js';
import { ProcessSession } from '../../src/targets/process/session.js';
import { processSwitchTarget } from '../../src/targets/process/switch-target.js';
import { tempDir } from '../helpers/tmp.js';
import { functionAddress, startProgram, waitFor } from './target-program.js';

const PROGRAM = String.raw`
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
__attribute__((noipa)) int get_value(void) { return 7; }
__attribute__((noipa)) void held(void) { for (;;) usleep(1000); }
__attribute__((noipa)) void brief(void) { while (access("go", F_OK) != 0) usleep(1000); }
static void *holder(void *a) { (void)a; held(); return 0; }
static void *briefly(void *a) { (void)a; brief(); printf("brief done\n"); fflush(stdout); for (;;) pause(); return 0; }
int main(int argc, char **argv) {
  (void)argv;
  pthread_t t;
  pthread_create(&t, 0, holder, 0);
  pthread_create(&t, 0, briefly, 0);
  for (unsigned n = 0;; n++) {
    printf("value %d\n", get_value());
    if (n == 0) printf("ready\n");
    fflush(stdout);
    usleep(5000);
  }
}
`;

/** mov eax, 42; ret */
const RETURN_42 = Buffer.from([0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3]);

async function start(name: string): Promise<{ dir: string; program: Awaited<ReturnType<typeof startProgram>> }> {
  const dir = tempDir();
  const program = await startProgram(dir, name, PROGRAM);
  return { dir, program };
}

const lastValue = (text: string): number => Number([...text.matchAll(/^value (\d+)$/gm)].at(-1)![1]);

test('redirect get_value to new code, record it, then undo and remove the record', async () => {
  const { program } = await start('redirect');
  const fn = functionAddress(program.pid, program.binary, 'get_value');
  const session = ProcessSession.attach(program.pid);
  try {
    const target = processSwitchTarget(session);
    // Slow work before the freeze: allocate near the code, write the new function.
    const code = remoteMmap(session, {
      near: { start: fn.address, end: fn.address + BigInt(fn.size) },
      size: 4096,
      prot: PROT_READ | PROT_EXEC,
      name: 'tsplice-code:t1',
    });
    session.memory.write(code.start, RETURN_42);
    const jump = trampolineFor({ name: 'get_value', address: fn.address, size: fn.size }, code.start);
    const applied = await switchCode(target, {
      writes: [jump],
      busy: [{ name: 'get_value', start: fn.address, end: fn.address + BigInt(fn.size) }],
    });
    assert.equal(applied.tries, 1);
    assert.ok(applied.freezeMs > 0);
    assert.equal(decodeJmpRel32(fn.address, session.memory.read(fn.address, 5)), code.start);
    const mark = program.text().length;
    await waitFor(() => /^value 42$/m.test(program.text().slice(mark)), 'the new code to run');

    const stored = writeRecord(session, {
      id: 't1',
      objects: [program.binary],
      appliedAt: new Date().toISOString(),
      codeRegions: [code],
      redirects: [{ name: 'get_value', object: program.binary, from: fn.address, to: code.start, original: applied.originals[0].toString('hex') }],
      freezeMs: applied.freezeMs,
    });
    assert.equal(stored.order, 1);
    assert.throws(
      () => writeRecord(session, { ...stored, order: undefined }),
      (e) => isTspliceError(e) && e.code === 'already_applied',
    );

    // A fresh reader (no ptrace) sees the record.
    const records = readRecords(program.pid);
    assert.equal(records.length, 1);
    assert.equal(records[0].id, 't1');
    assert.deepEqual(records[0].codeRegions, [code]);
    assert.equal(records[0].redirects[0].from, fn.address);
    assert.ok(readMaps(program.pid).some((m) => /tsplice:t1/.test(m.path)));

    // Undo: no thread may be in the new code; put the original bytes back.
    const original = Buffer.from(records[0].redirects[0].original, 'hex');
    const undone = await switchCode(target, {
      writes: [{ addr: fn.address, bytes: original }],
      busy: [{ name: 'get_value (new)', start: code.start, end: code.start + code.size }],
    });
    assert.deepEqual(undone.originals[0], jump.bytes);
    const mark2 = program.text().length;
    await waitFor(() => /^value 7$/m.test(program.text().slice(mark2)), 'the old code to run again');
    removeRecord(session, records[0]);
    remoteMunmap(session, code);
    assert.deepEqual(readRecords(program.pid), []);
  } finally {
    session.detach();
  }
  const mark3 = program.text().length;
  await waitFor(() => program.text().length > mark3 + 20, 'the program to keep running');
  assert.equal(lastValue(program.text()), 7);
});

test('code_busy when a thread never leaves the function; the program runs on unchanged', async () => {
  const { program } = await start('busy');
  const held = functionAddress(program.pid, program.binary, 'held');
  const session = ProcessSession.attach(program.pid);
  const before = session.memory.read(held.address, 5);
  try {
    await assert.rejects(
      switchCode(processSwitchTarget(session), {
        writes: [trampolineFor({ name: 'held', address: held.address, size: held.size }, held.address + 0x1000n)],
        busy: [{ name: 'held', start: held.address, end: held.address + BigInt(held.size) }],
        retries: 3,
        retryDelayMs: 10,
      }),
      (e) => {
        assert.ok(isTspliceError(e));
        assert.equal(e.code, 'code_busy');
        assert.match(e.message, /function held is in use in process \d+: thread \d+ \(busy\)/);
        const busy = e.details.busy as { function: string; where: string }[];
        // held() is a caller frame of the usleep() its thread sleeps in.
        assert.ok(busy.some((b) => b.function === 'held' && b.where === 'return-address'));
        assert.equal(e.details.tries, 3);
        return true;
      },
    );
    assert.deepEqual(session.memory.read(held.address, 5), before, 'nothing was written');
  } finally {
    session.detach();
  }
  const mark = program.text().length;
  await waitFor(() => /^value 7$/m.test(program.text().slice(mark)), 'the program to keep running');
});

test('a function busy only for a moment is switched on a later try', async () => {
  const { dir, program } = await start('brief');
  const brief = functionAddress(program.pid, program.binary, 'brief');
  const session = ProcessSession.attach(program.pid);
  try {
    const code = remoteMmap(session, { near: brief.address, size: 4096, prot: PROT_READ | PROT_EXEC });
    session.memory.write(code.start, Buffer.from([0xc3])); // ret
    // The thread inside brief() leaves it once "go" exists: during the first retry pause.
    setTimeout(() => writeFileSync(join(dir, 'go'), ''), 0);
    const result = await switchCode(processSwitchTarget(session), {
      writes: [trampolineFor({ name: 'brief', address: brief.address, size: brief.size }, code.start)],
      busy: [{ name: 'brief', start: brief.address, end: brief.address + BigInt(brief.size) }],
      retries: 50,
      retryDelayMs: 20,
    });
    assert.ok(result.tries >= 2, `took ${result.tries} tries`);
  } finally {
    session.detach();
  }
  assert.match(program.text(), /^brief done$/m);
});

test('trampolines: encoding, reach and functions too short', () => {
  assert.deepEqual(encodeJmpRel32(0x1000n, 0x2000n), Buffer.from([0xe9, 0xfb, 0x0f, 0x00, 0x00]));
  assert.deepEqual(encodeJmpRel32(0x2000n, 0x1000n), Buffer.from([0xe9, 0xfb, 0xef, 0xff, 0xff]));
  assert.equal(decodeJmpRel32(0x2000n, encodeJmpRel32(0x2000n, 0x1000n)), 0x1000n);
  assert.throws(() => encodeJmpRel32(0x1000n, 0x1000n + (1n << 32n)), (e) => isTspliceError(e) && e.code === 'internal');
  assert.throws(
    () => trampolineFor({ name: 'tiny', address: 0x1000n, size: 4 }, 0x2000n),
    (e) => isTspliceError(e) && e.code === 'unsupported_change' && /tiny/.test(e.message),
  );
});

test('stack check: ip and aligned stack words, overlapping ranges', () => {
  const stack = Buffer.alloc(64);
  stack.writeBigUInt64LE(0x5000n, 8);
  stack.writeBigUInt64LE(0x7fff_0000_1234n, 24);
  const threads = [
    { tid: 1, name: 'a', ip: 0x1010n, stack: { start: 0x9000n, end: 0x9040n } },
    { tid: 2, name: 'b', ip: 0x3000n, stack: { start: 0x9000n, end: 0x9040n } },
  ];
  const ranges = [
    { name: 'f', start: 0x1000n, end: 0x1100n },
    { name: 'g', start: 0x4f00n, end: 0x6000n },
    { name: 'h', start: 0x5000n, end: 0x5001n },
    { name: 'far', start: 0x7fff_0000_0000n, end: 0x7fff_0000_2000n },
  ];
  const hits = findBusy(threads, ranges, () => stack);
  const names = (tid: number): string[] => hits.filter((h) => h.tid === tid).map((h) => `${h.function}:${h.where}`).sort();
  assert.deepEqual(names(1), ['f:ip', 'far:stack', 'h:stack']);
  assert.deepEqual(names(2), ['far:stack', 'h:stack']);
  assert.deepEqual(findBusy(threads, [{ name: 'none', start: 0x20000n, end: 0x30000n }], () => stack), []);
});
