// Finding where a function runs: duplicate local names, stripped binaries
// (pattern scan), and resolving symbols the pre code does not reference.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { findCandidates } from '../../src/match/candidates.js';
import { preFunction } from '../../src/match/pre.js';
import { matchFunction } from '../../src/match/runpre.js';
import { resolveSymbol, matchUnit } from '../../src/match/unit.js';
import { TspliceError } from '../../src/errors.js';
import { writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';
import { build, loadFile, loadPre, nmAddress, nmSymbols, pre, tpoffFromReadelf } from './fixture.js';
import { MAIN_C, UTIL_C } from './sources.js';

const dir = tempDir();
writeTree(dir, {
  'util.c': UTIL_C,
  'main.c': MAIN_C,
  'a.c': `
    static int limit = 40;
    __attribute__((noinline)) static int scale(int x) { return x * 3 + limit; }
    int a_entry(int x) { return scale(x) + 1; }
  `,
  'b.c': `
    static int limit = 50;
    __attribute__((noinline)) static int scale(int x) { return x * 5 - limit; }
    int b_entry(int x) { return scale(x) + 2; }
  `,
  'c.c': `
    static int limit = 40;
    __attribute__((noinline)) static int scale(int x) { return x * 3 + limit; }
    int c_entry(int x) { return scale(x) + 3; }
  `,
  'dup-ab.c': `
    int a_entry(int); int b_entry(int);
    int main(int argc, char **argv) { (void)argv; return a_entry(argc) + b_entry(argc); }
  `,
  'dup-ac.c': `
    int a_entry(int); int c_entry(int);
    int main(int argc, char **argv) { (void)argv; return a_entry(argc) + c_entry(argc); }
  `,
});

test('two static functions with the same name: exactly the one from the right file matches', () => {
  const built = build(dir, ['a.c', 'b.c', 'dup-ab.c'], 'dup-ab', ['-O2']);
  const exe = built.output;
  const { image, reader } = loadFile(exe);
  const addresses = nmSymbols(exe).get('scale') ?? [];
  assert.equal(addresses.length, 2, 'two local scale functions');
  for (const [object, file] of [[built.objects[0], 'a.c'], [built.objects[1], 'b.c']] as const) {
    const fn = pre(object, 'scale');
    const candidates = findCandidates(fn, image);
    assert.equal(candidates.length, 2);
    const ok = candidates.filter((c) => matchFunction(fn, c.address, reader, image).ok);
    assert.equal(ok.length, 1, `only one scale matches the one of ${file}`);
    // Link order puts a.c's text first.
    const expected = file === 'a.c' ? addresses.reduce((x, y) => (x < y ? x : y)) : addresses.reduce((x, y) => (x > y ? x : y));
    assert.equal(ok[0].address, expected);
    const unit = matchUnit([fn], image, reader);
    assert.equal(unit.functions.get('scale')?.address, expected);
  }
});

test('identical static functions in two files: the file symbol decides, a stripped binary is ambiguous', () => {
  const built = build(dir, ['a.c', 'c.c', 'dup-ac.c'], 'dup-ac', ['-O2']);
  const exe = built.output;
  const fnA = pre(built.objects[0], 'scale');
  const { image, reader } = loadFile(exe);
  // Both copies are the same code and both match; the STT_FILE symbol before each picks a.c's.
  const both = findCandidates(fnA, image).filter((c) => matchFunction(fnA, c.address, reader, image).ok);
  assert.equal(both.length, 2);
  const chosen = matchUnit([fnA], image, reader).functions.get('scale');
  assert.equal(chosen?.address, both.find((c) => c.file === 'a.c')?.address);

  const stripped = join(dir, 'dup-ac-stripped');
  execFileSync('strip', ['-o', stripped, exe]);
  const s = loadFile(stripped);
  assert.throws(
    () => matchUnit([fnA], s.image, s.reader),
    (e: unknown) => e instanceof TspliceError && e.code === 'no_match' && /2 places/.test(e.message),
  );
});

for (const level of ['-O0', '-O2']) {
  test(`stripped executable ${level}: functions found by pattern scan`, () => {
    const built = build(dir, ['util.c', 'main.c'], `strip${level}`, [level]);
    const exe = built.output;
    const stripped = `${exe}-stripped`;
    execFileSync('strip', ['-o', stripped, exe]);
    const s = loadFile(stripped);
    assert.equal(s.elf.symbols.length, 0, 'no .symtab');
    const preElf = loadPre(built.objects[0]);
    const fns = ['report', 'step', 'helper'].map((n) => preFunction(preElf, n));
    for (const fn of fns) assert.ok(findCandidates(fn, s.image).some((c) => c.source === 'scan'));
    const m = matchUnit(fns, s.image, s.reader);
    for (const n of ['report', 'step', 'helper']) assert.equal(m.functions.get(n)?.address, nmAddress(exe, n));
    assert.equal(m.symbols.get('hidden_total')?.address, nmAddress(exe, 'hidden_total'));
  });
}

test('resolveSymbol: a static function the matched code does not reference, data, TLS', () => {
  const built = build(dir, ['util.c', 'main.c'], 'resolve', ['-O2']);
  const exe = built.output;
  const { image, reader } = loadFile(exe);
  const preElf = loadPre(built.objects[0]);
  assert.equal(resolveSymbol('finish', preElf, image, reader).address, nmAddress(exe, 'finish'));
  assert.equal(resolveSymbol('helper', preElf, image, reader).address, nmAddress(exe, 'helper'));
  assert.equal(resolveSymbol('hidden_total', preElf, image, reader).address, nmAddress(exe, 'hidden_total'));
  assert.equal(resolveSymbol('tls_local', preElf, image, reader).tls?.tpoff, tpoffFromReadelf(exe, 'tls_local'));
  assert.throws(
    () => resolveSymbol('no_such_symbol', preElf, image, reader),
    (e: unknown) => e instanceof TspliceError && e.code === 'no_match',
  );
});
