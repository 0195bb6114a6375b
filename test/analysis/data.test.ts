// Data changes: what is reported, and what is refused without hooks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkSupportedChanges } from '../../src/analysis/check.js';
import { TspliceError } from '../../src/errors.js';
import { dataSummary, diffSources, functionSummary, LEVELS } from './units.js';

function refusal(fn: () => void): TspliceError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof TspliceError, `expected a TspliceError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected unsupported_change');
}

for (const level of LEVELS) {
  describe(`data changes at ${level}`, () => {
    it("refuses a changed global's initial value, naming it and asking for hooks", () => {
      const pre = 'int limit = 10;\nint over(int x) { return x > limit; }\n';
      const d = diffSources({ pre, post: pre.replace('= 10', '= 20') }, level);
      assert.deepEqual(functionSummary(d), []);
      assert.deepEqual(dataSummary(d), ['changed limit']);
      assert.equal(d.data[0].writable, true);
      const err = refusal(() => checkSupportedChanges(d));
      assert.equal(err.code, 'unsupported_change');
      assert.match(err.message, /global variable limit/);
      assert.match(err.message, /hooks will be needed/);
      assert.doesNotThrow(() => checkSupportedChanges(d, { hooks: true }));
    });

    it("refuses a static variable whose size changes", () => {
      const pre = 'static int ring[4];\nint put(unsigned i, int v) { ring[i % 4] = v; return ring[0]; }\n';
      const post = pre.replace('ring[4]', 'ring[8]').replace('i % 4', 'i % 8');
      const d = diffSources({ pre, post }, level);
      assert.deepEqual(dataSummary(d), ['changed ring']);
      assert.match(d.data[0].reason, /size changed from 16 to 32 bytes/);
      const err = refusal(() => checkSupportedChanges([d]));
      assert.match(err.message, /static variable ring/);
    });

    it('refuses a changed pointer in writable data', () => {
      const pre = 'const char *greeting = "hello";\nconst char *get(void) { return greeting; }\n';
      const d = diffSources({ pre, post: pre.replace('"hello"', '"howdy"') }, level);
      assert.deepEqual(dataSummary(d), ['changed greeting']);
      assert.throws(() => checkSupportedChanges(d), { code: 'unsupported_change' });
    });

    it('accepts new variables: they travel with the new code', () => {
      const pre = 'extern int ext(int);\nint f(int x) { return ext(x); }\n';
      const post = 'extern int ext(int);\nstatic int seen;\nint f(int x) { seen++; return ext(x) + seen; }\n';
      const d = diffSources({ pre, post }, level);
      assert.deepEqual(functionSummary(d), ['changed f']);
      assert.deepEqual(dataSummary(d), ['new seen']);
      assert.doesNotThrow(() => checkSupportedChanges(d));
    });

    it('accepts a changed static constant table and reports the functions using it', () => {
      const pre = `
static const int weights[4] = { 1, 2, 3, 4 };
int weigh(unsigned i) { return weights[i & 3]; }
int other(int x) { return x - 1; }
`;
      const d = diffSources({ pre, post: pre.replace('{ 1, 2, 3, 4 }', '{ 1, 2, 3, 5 }') }, level);
      assert.deepEqual(functionSummary(d), ['changed weigh']);
      assert.doesNotThrow(() => checkSupportedChanges(d));
      const weights = d.data.find((c) => c.symbol === 'weights');
      if (weights) assert.equal(weights.writable, false);
    });

    it('refuses a changed exported constant that other units may read', () => {
      const pre = 'const int version_number = 3;\nint version(void) { return version_number; }\n';
      const d = diffSources({ pre, post: pre.replace('= 3', '= 4') }, level);
      assert.deepEqual(dataSummary(d), ['changed version_number']);
      const err = refusal(() => checkSupportedChanges(d));
      assert.match(err.message, /global constant version_number/);
    });

    it('does not count a static local that only got renumbered', () => {
      const pre = 'int f(void) { static int n = 5; return n++; }\n';
      const post = `int e(void) { static int n = 9; return n--; }\n${pre}`;
      const d = diffSources({ pre, post }, level);
      assert.deepEqual(functionSummary(d), ['new e']);
      assert.equal(d.data.length, 1);
      assert.equal(d.data[0].kind, 'new');
      assert.doesNotThrow(() => checkSupportedChanges(d));
    });
  });
}
