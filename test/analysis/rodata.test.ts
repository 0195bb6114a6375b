// References into strings, constants and read-only tables are compared by content.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ElfFile } from '../../src/elf/reader.js';
import { buildObject, diffSources, functionSummary, LEVELS, reasonOf } from './units.js';

/** Offset of a string literal in whichever section of the object holds it. */
function literalOffset(elf: ElfFile, text: string): number {
  for (const s of elf.sections) {
    if (!s.name.startsWith('.rodata')) continue;
    const at = s.data.indexOf(Buffer.from(`${text}\0`, 'latin1'));
    if (at >= 0) return at;
  }
  throw new Error(`"${text}" not found in ${elf.name}`);
}

for (const level of LEVELS) {
  describe(`read-only data in the object diff at ${level}`, () => {
    it('reports the function whose string literal changed, and only it', () => {
      const pre = `
#include <stdio.h>
void f(int x) { printf("hello %d\\n", x); }
void g(int x) { printf("world %d\\n", x); }
`;
      const d = diffSources({ pre, post: pre.replace('hello %d', 'hullo %d') }, level);
      assert.deepEqual(functionSummary(d), ['changed f']);
      assert.match(reasonOf(d, 'f'), /string literal changed: "hello %d\\n" → "hullo %d\\n"/);
    });

    it('does not report functions whose strings only moved', () => {
      // At -O2 a literal used by one function goes to .rodata.FN.str1.1; literals in
      // tables share .rodata.str1.1 (in reverse order of definition), at -O0 .rodata.
      const pre = `
static const char *const first[] = { "alpha", "gamma" };
static const char *const second[] = { "beta", "delta" };
const char *f(unsigned i) { return first[i & 1]; }
const char *g(unsigned i) { return second[i & 1]; }
`;
      const post = `
static const char *const zeroth[] = { "a new first message", "eta" };
const char *n(unsigned i) { return zeroth[i & 1]; }
${pre}
static const char *const third[] = { "a new last message", "theta" };
const char *h(unsigned i) { return third[i & 1]; }
`;
      assert.notEqual(literalOffset(buildObject(pre, level), 'beta'), literalOffset(buildObject(post, level), 'beta'),
        'the fixture must move the literal');
      const d = diffSources({ pre, post }, level);
      assert.deepEqual(functionSummary(d), ['new h', 'new n']);
    });

    it('compares floating-point constants by value', () => {
      const pre = 'double f(double x) { return x * 3.25; }\ndouble g(double x) { return x * 1.5; }\n';
      const d = diffSources({ pre, post: pre.replace('3.25', '4.75') }, level);
      assert.deepEqual(functionSummary(d), ['changed f']);
      const moved = diffSources({ pre, post: `double e(double x) { return x + 9.125; }\n${pre}` }, level);
      assert.deepEqual(functionSummary(moved), ['new e']);
    });

    it('follows pointer tables to the strings they point at', () => {
      const pre = `
static const char *const names[] = { "zero", "one", "two" };
const char *name(unsigned i) { return i < 3 ? names[i] : "many"; }
int other(int x) { return x + 1; }
`;
      const d = diffSources({ pre, post: pre.replace('"one"', '"ONE"') }, level);
      assert.deepEqual(functionSummary(d), ['changed name']);
      assert.match(reasonOf(d, 'name'), /read-only data names changed/);
      const names = d.data.find((c) => c.symbol === 'names');
      assert.equal(names?.kind, 'changed');
      assert.equal(names?.writable, false);
    });

    it('compares function pointers in tables by identity', () => {
      const pre = `
extern int ext(int);
__attribute__((noinline)) static int op_a(int x) { return ext(x) + 1; }
__attribute__((noinline)) static int op_b(int x) { return ext(x) * 2; }
static int (*const ops[])(int) = { op_a, op_b };
int dispatch(unsigned i, int x) { return ops[i & 1](x); }
`;
      const d = diffSources({ pre, post: pre.replace('ext(x) + 1', 'ext(x) + 7') }, level);
      assert.deepEqual(functionSummary(d), ['changed op_a']);
      const swapped = diffSources({ pre, post: pre.replace('{ op_a, op_b }', '{ op_b, op_a }') }, level);
      assert.deepEqual(functionSummary(swapped), ['changed dispatch']);
    });

    it('follows jump tables', () => {
      const pre = `
extern int ext(int);
int sw(int x) {
  switch (x) {
  case 0: return ext(10); case 1: return ext(11) + 3; case 2: return ext(12) * 5; case 3: return ext(13) - 1;
  case 4: return ext(14) + 8; case 5: return ext(15) ^ 2; case 6: return 77; default: return -1;
  }
}
int sw2(int x) {
  switch (x) {
  case 0: return ext(20); case 1: return ext(21) + 3; case 2: return ext(22) * 5; case 3: return ext(23) - 1;
  case 4: return ext(24) + 8; case 5: return ext(25) ^ 2; case 6: return 78; default: return -2;
  }
}
`;
      const d = diffSources({ pre, post: pre.replace('case 6: return 77', 'case 6: return ext(99)') }, level);
      assert.deepEqual(functionSummary(d), ['changed sw']);
    });
  });
}
