// tsplice apply/list/undo --kernel in a guest running the pinned Debian
// kernel: one boot runs every step (boots are the expensive part) and each
// test checks its part of the transcript.
//  - an update changing /proc/cmdline: verified against live memory, applied,
//    listed, refused a second time, undone, the original output back;
//  - two stacked updates: the second is verified through the ftrace call the
//    first put at the function's entry; out-of-order undo refused; LIFO undo;
//  - an update whose pre code is not the running code: no_match naming the
//    function, nothing loaded;
//  - an update whose transition cannot complete (kthreadd sleeps for ever in
//    the function it replaces): code_busy naming kthreadd, reversed and
//    unloaded.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { vmRun } from '../../src/targets/kernel/vm/index.js';
import { REPO_ROOT } from '../helpers/cli.js';
import { ensureBuilt } from '../helpers/dist.js';
import { tempDir } from '../helpers/tmp.js';
import { buildKernelFixtures } from './fixtures.js';

interface StepLine {
  step: { op: string; package?: string; id?: string };
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string; details: Record<string, unknown> };
}

interface ApplyResult {
  id: string;
  module: string;
  functions: Array<{ function: string; status: string; address?: string }>;
  verifyMs: number;
  loadMs: number;
  transitionMs: number;
}

interface ListEntry {
  id: string;
  module: string;
  order: number;
  state: string;
  functions: Array<{ object: string; name: string; sympos: number }>;
}

let lines: StepLine[] = [];
let cmdlineBefore = '';

before(async () => {
  ensureBuilt();
  const dir = tempDir('tsplice-kernel-apply-');
  const { packages } = await buildKernelFixtures(dir);
  const steps = [
    { op: 'cmdline' },
    { op: 'apply', package: packages.a },
    { op: 'cmdline' },
    { op: 'list' },
    { op: 'apply', package: packages.a },
    { op: 'apply', package: packages.b },
    { op: 'cmdline' },
    { op: 'list' },
    { op: 'undo', id: 'a' },
    { op: 'undo', id: 'b' },
    { op: 'cmdline' },
    { op: 'undo', id: 'a' },
    { op: 'cmdline' },
    { op: 'list' },
    { op: 'undo', id: 'a' },
    { op: 'apply', package: packages.other },
    { op: 'loaded' },
    { op: 'apply', package: packages.busy, timeoutMs: 2000 },
    { op: 'loaded' },
  ];
  const stepsFile = join(dir, 'steps.json');
  writeFileSync(stepsFile, JSON.stringify(steps));
  const driver = join(REPO_ROOT, 'test/kernel-apply/guest-steps.mjs');
  const run = await vmRun({
    quiet: true,
    progress: false,
    copy: [dir, driver],
    env: { TSPLICE_ROOT: REPO_ROOT },
    command: ['node', driver, stepsFile],
    timeoutMs: 240_000,
  });
  assert.equal(run.exitCode, 0, `guest driver failed: ${run.stderr}`);
  lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as StepLine);
  assert.equal(lines.length, steps.length, run.stdout + run.stderr);
  cmdlineBefore = lines[0].result as string;
});

const step = (i: number) => lines[i];
const resultOf = <T>(i: number): T => {
  const line = step(i);
  assert.ok(line.ok, `step ${i} (${line.step.op}) failed: ${line.error?.message}`);
  return line.result as T;
};
const errorOf = (i: number) => {
  const line = step(i);
  assert.ok(!line.ok, `step ${i} (${line.step.op}) should have failed`);
  return line.error!;
};

test('apply verifies against live memory, patches /proc/cmdline and reports timings', (t) => {
  assert.match(cmdlineBefore, /console=ttyS0/);
  const applied = resultOf<ApplyResult>(1);
  assert.equal(applied.module, 'tsplice_a');
  assert.deepEqual(applied.functions.map((f) => [f.function, f.status]), [['cmdline_proc_show', 'matched']]);
  assert.match(applied.functions[0].address ?? '', /^0xffffffff[89a-f]/);
  assert.equal(resultOf(2), 'patched by update a\n');
  t.diagnostic(`update a: verify ${applied.verifyMs} ms, load ${applied.loadMs} ms, apply → transition complete ${applied.transitionMs} ms`);
});

test('list shows the applied update with its functions; applying it again is already_applied', () => {
  const listed = resultOf<ListEntry[]>(3);
  assert.deepEqual(listed.map((u) => [u.id, u.module, u.order, u.state]), [['a', 'tsplice_a', 1, 'applied']]);
  assert.deepEqual(listed[0].functions.map((f) => [f.object, f.name]), [['vmlinux', 'cmdline_proc_show']]);
  assert.equal(errorOf(4).code, 'already_applied');
});

test('stacked updates: the second matches through the first one\'s ftrace call; undo is last-in, first-out', (t) => {
  const b = resultOf<ApplyResult>(5);
  t.diagnostic(`update b (stacked): apply → transition complete ${b.transitionMs} ms`);
  assert.equal(resultOf(6), 'patched by update b\n');
  assert.deepEqual(resultOf<ListEntry[]>(7).map((u) => [u.id, u.order]), [['a', 1], ['b', 2]]);
  const refused = errorOf(8);
  assert.equal(refused.code, 'bad_input');
  assert.match(refused.message, /cannot be undone while b is applied on top of it.*undo b first/);
  assert.equal(resultOf<{ module: string }>(9).module, 'tsplice_b');
  assert.equal(resultOf(10), 'patched by update a\n');
  assert.equal(resultOf<{ module: string }>(11).module, 'tsplice_a');
  assert.equal(resultOf(12), cmdlineBefore);
  assert.deepEqual(resultOf(13), []);
  const gone = errorOf(14);
  assert.equal(gone.code, 'not_applied');
  assert.match(gone.message, /update a is not applied/);
});

test('an update whose pre code differs from the running kernel is no_match naming the function; nothing loaded', () => {
  const e = errorOf(15);
  assert.equal(e.code, 'no_match');
  assert.match(e.message, /cmdline_proc_show \(fs\/proc\/cmdline\.o\) differs at \+0x18/);
  assert.match(e.message, /Nothing was loaded/);
  assert.equal(e.details.function, 'cmdline_proc_show');
  assert.deepEqual(resultOf(16), { modules: [], livepatches: [] });
});

test('a transition that cannot complete is reversed and unloaded: code_busy names the task', () => {
  const e = errorOf(17);
  assert.equal(e.code, 'code_busy');
  assert.match(e.message, /kthreadd \(pid 2\)/);
  assert.match(e.message, /reversed and the module unloaded/);
  assert.deepEqual(e.details.tasks, [{ pid: 2, tid: 2, comm: 'kthreadd' }]);
  assert.deepEqual(resultOf(18), { modules: [], livepatches: [] });
});
