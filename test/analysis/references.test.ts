// What a changed function needs from the post object, and what comes from the target.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { diffUnit } from '../../src/analysis/diff.js';
import { referencedSections } from '../../src/analysis/references.js';
import { coldParentName, functionNameOfSection, normalizeSymbolName } from '../../src/analysis/names.js';
import { buildObject, LEVELS } from './units.js';

const PRE = `
#include <stdio.h>
extern int ext(int);
int counter;
__attribute__((noinline)) int existing(int x) { return ext(x); }
int f(int x) { return existing(x) + counter; }
`;
const POST = `
#include <stdio.h>
extern int ext(int);
int counter;
static int added_state;
__attribute__((noinline)) int existing(int x) { return ext(x); }
__attribute__((noinline)) static int added(int x) { return ext(x * 2); }
int f(int x) { added_state++; printf("f got %d\\n", x); return existing(x) + added(x) + counter + added_state; }
`;

for (const level of LEVELS) {
  describe(`referencedSections at ${level}`, () => {
    it('ships strings, new functions and new data; resolves existing ones in the target', () => {
      const post = buildObject(POST, level);
      const diff = diffUnit({ unit: 'unit.c', pre: buildObject(PRE, level), post });
      assert.deepEqual(diff.functions.map((c) => `${c.kind} ${c.function}`).sort(), ['changed f', 'new added']);
      const refs = referencedSections(post, 'f', diff);
      const bySymbol = (name: string) => refs.find((r) => r.symbol === name);
      assert.deepEqual(
        [bySymbol('existing')?.ship, bySymbol('added')?.ship, bySymbol('counter')?.ship, bySymbol('added_state')?.ship],
        [false, true, false, true]);
      assert.equal(bySymbol('added')?.role, 'text');
      assert.equal(bySymbol('counter')?.role, 'data');
      const strings = refs.filter((r) => r.role === 'strings' || r.role === 'rodata');
      assert.ok(strings.length > 0 && strings.every((r) => r.ship), JSON.stringify(refs));
      assert.ok(strings.some((r) => post.sections[r.index].data.includes('f got %d')), JSON.stringify(refs));
      assert.ok(!refs.some((r) => r.section.startsWith('.text.f')), 'its own section is not listed');
    });
  });
}

describe('compiler-made names', () => {
  it('drops clone and static-local numbers but keeps the clone kind', () => {
    assert.equal(normalizeSymbolName('calls.2'), 'calls');
    assert.equal(normalizeSymbolName('scale.constprop.0'), 'scale.constprop');
    assert.equal(normalizeSymbolName('use_b.isra.12'), 'use_b.isra');
    assert.equal(normalizeSymbolName('work.part.0.cold'), 'work.part.cold');
    assert.equal(normalizeSymbolName('helper.lto_priv.3'), 'helper.lto_priv');
    assert.equal(normalizeSymbolName('f.constprop.0.isra.1'), 'f.constprop.isra');
    assert.equal(normalizeSymbolName('plain'), 'plain');
  });

  it('finds the parent of a cold part and the function of a section', () => {
    assert.equal(coldParentName('work.cold'), 'work');
    assert.equal(coldParentName('work.part.0.cold'), 'work.part.0');
    assert.equal(coldParentName('work'), undefined);
    assert.equal(functionNameOfSection('.text.unlikely.rare'), 'rare');
    assert.equal(functionNameOfSection('.text.startup.main'), 'main');
    assert.equal(functionNameOfSection('.text.hot.fast'), 'fast');
    assert.equal(functionNameOfSection('.text.f'), 'f');
    assert.equal(functionNameOfSection('.text'), undefined);
    assert.equal(functionNameOfSection('.data.x'), undefined);
  });
});
