// The running binary was not built from the update's source: matching must
// refuse, naming the function and the first differing offset.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TspliceError } from '../../src/errors.js';
import { matchFunction } from '../../src/match/runpre.js';
import { writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';
import { build, loadFile, matchFile, nmAddress, pre } from './fixture.js';
import { MAIN_C, UTIL_C } from './sources.js';

const dir = tempDir();
writeTree(dir, {
  'util.c': UTIL_C,
  'main.c': MAIN_C,
  'changed/util.c': UTIL_C.replace('x * 7 + hidden_total++', 'x * 9 + hidden_total++'),
  'changed/main.c': MAIN_C,
  'literal/util.c': UTIL_C.replace('"report %d\\n"', '"Report %d\\n"'),
  'literal/main.c': MAIN_C,
  'stream/util.c': UTIL_C.replace('fprintf(stderr,', 'fprintf(stdout,'),
  'stream/main.c': MAIN_C,
});

function noMatch(fn: () => unknown): TspliceError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof TspliceError, `a TspliceError, got ${String(e)}`);
    assert.equal(e.code, 'no_match');
    return e;
  }
  assert.fail('matching succeeded');
}

for (const level of ['-O0', '-O2']) {
  test(`binary from different source (${level}): no_match naming the function and offset`, () => {
    const original = build(dir, ['util.c', 'main.c'], `orig${level}`, [level]);
    const changed = build(`${dir}/changed`, ['util.c', 'main.c'], `changed${level}`, [level]);
    const e = noMatch(() => matchFile(original.objects[0], changed.output));
    assert.equal(e.details.function, 'helper');
    assert.match(e.message, /helper .* differs at \+0x[0-9a-f]+ \(running address 0x[0-9a-f]+\)/);
    assert.match(e.message, /not the one this update was built from/);

    // The offset is that of the first instruction whose bytes differ between the two pre objects.
    const a = pre(original.objects[0], 'helper').section.data;
    const b = pre(changed.objects[0], 'helper').section.data;
    let firstDiff = 0;
    while (a[firstDiff] === b[firstDiff]) firstDiff++;
    const offset = e.details.offset as number;
    assert.ok(offset <= firstDiff && offset > firstDiff - 15, `offset ${offset} near first differing byte ${firstDiff}`);

    // matchFunction itself reports where: pre offset and run-time address.
    const { image, reader } = loadFile(changed.output);
    const address = nmAddress(changed.output, 'helper');
    const result = matchFunction(pre(original.objects[0], 'helper'), address, reader, image);
    assert.equal(result.ok, false);
    if (!result.ok) {
      assert.equal(result.offset, offset);
      assert.equal(result.address, address + BigInt(offset));
      assert.match(result.reason, / vs running /);
    }
  });
}

test('binary built at another optimisation level: no_match', () => {
  const o2 = build(dir, ['util.c', 'main.c'], 'lvl-O2', ['-O2']);
  const o0 = build(dir, ['util.c', 'main.c'], 'lvl-O0', ['-O0']);
  const e = noMatch(() => matchFile(o2.objects[0], o0.output));
  assert.ok(typeof e.details.function === 'string');
});

test('same code, different string literal: no_match on the literal', () => {
  const original = build(dir, ['util.c', 'main.c'], 'lit-orig', ['-O2']);
  const changed = build(`${dir}/literal`, ['util.c', 'main.c'], 'lit-changed', ['-O2']);
  const e = noMatch(() => matchFile(original.objects[0], changed.output));
  assert.equal(e.details.function, 'report');
  assert.match(e.message, /"report %d\\n".*"Report %d\\n"/);
});

test('same code, different global (stdout for stderr): no_match', () => {
  const original = build(dir, ['util.c', 'main.c'], 'stream-orig', ['-O2']);
  const changed = build(`${dir}/stream`, ['util.c', 'main.c'], 'stream-changed', ['-O2']);
  const e = noMatch(() => matchFile(original.objects[0], changed.output));
  assert.equal(e.details.function, 'report');
  assert.match(e.message, /stdout.*stderr|stderr.*stdout/);
});
