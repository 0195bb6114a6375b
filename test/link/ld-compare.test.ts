// tsplice's linker against GNU ld: the same post object, the same addresses;
// the relocated bytes must be ld's, except GOT fields, which must lead to a
// slot holding the same address as ld's.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseElf, relocationsFor, type ElfFile } from '../../src/elf/reader.js';
import { isGotPcRelative, relocationName } from '../../src/elf/x86_64.js';
import { layoutBlock } from '../../src/link/layout.js';
import { linkBlock } from '../../src/link/link.js';
import { compileObject } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';
import { outputSection, readOutput64, referenceLink } from './reference.js';

const SOURCE = `
#include <stdio.h>
extern int ext_var;
extern int ext_fn(int);
int glob_var = 3;
static int stat_var;
static int new_var = 7;
static int new_zero;
static const int table[4] = {10, 20, 30, 40};
__attribute__((noipa)) static int helper(int x) { return x * 3 + stat_var; }
__attribute__((noipa)) int new_fn(int x) { new_zero += x; return x + new_var++; }
static int (*const ops[2])(int) = { helper, ext_fn };
int sw(int x) {
  switch (x) {
  case 0: return 11; case 1: return helper(2); case 2: return 33; case 3: return 47;
  case 4: return ext_fn(5); case 5: return 99; case 6: return 1234; default: return -1;
  }
}
int foo(char *buf, int n) {
  stat_var++;
  int r = snprintf(buf, n, "v=%d h=%d t=%d", ext_var + glob_var, helper(n), table[n & 3]);
  return r + sw(n) + ops[n & 1](n) + new_fn(n) + glob_var;
}
`;

const INSTALL = ['.text.foo', '.text.sw', '.text.new_fn'];
const NEW = ['.text.new_fn', '.data.new_var', '.bss.new_zero'];
const BASE = 0x40000000n;
const OTHERS = 0x50000000n;
const UNDEFINED = new Map([
  ['ext_var', 0x60000040n],
  ['ext_fn', 0x60001000n],
  ['snprintf', 0x60002000n],
]);

function compile(dir: string, name: string, flags: string[]): { path: string; elf: ElfFile } {
  const path = compileObject(dir, name, SOURCE, [...flags, '-ffunction-sections', '-fdata-sections']);
  return { path, elf: parseElf(readFileSync(path), path) };
}

const VARIANTS: Array<{ name: string; flags: string[] }> = [
  { name: 'O0', flags: ['-O0'] },
  { name: 'O2', flags: ['-O2'] },
  { name: 'O2-nopic', flags: ['-O2', '-fno-pic'] },
  { name: 'O0-nopic', flags: ['-O0', '-fno-pic'] },
  { name: 'O2-fPIC', flags: ['-O2', '-fPIC'] },
  { name: 'O0-fPIC', flags: ['-O0', '-fPIC'] },
];

for (const variant of VARIANTS) {
  test(`block linked at a fixed base equals GNU ld's link (${variant.name})`, () => {
    const dir = tempDir();
    const { path, elf } = compile(dir, `fix_${variant.name.replace(/-/g, '_')}`, variant.flags);
    const layout = layoutBlock({ elf, install: INSTALL, newSections: NEW });
    const ref = referenceLink(dir, path, layout, BASE, OTHERS, UNDEFINED);
    const block = linkBlock(layout, BASE, ref.resolver);

    // What went in: installed and new code, copied read-only data, new variables; not the rest.
    const placedNames = layout.sections.map((p) => p.section.name);
    for (const name of INSTALL) assert.ok(placedNames.includes(name), `${name} placed`);
    assert.ok(placedNames.includes('.data.new_var') && placedNames.includes('.bss.new_zero'));
    assert.ok(placedNames.some((n) => n.startsWith('.rodata')), 'read-only data copied');
    for (const name of ['.text.helper', '.data.glob_var', '.bss.stat_var']) {
      assert.ok(!placedNames.includes(name), `${name} stays in the running program`);
    }

    let checkedFields = 0;
    let checkedGot = 0;
    for (const placed of layout.sections) {
      const address = BASE + BigInt(placed.offset);
      const ld = outputSection(ref.out, placed.section.name);
      assert.equal(ld.addr, address, `${placed.section.name} at the same address in both links`);
      if (placed.section.data.length === 0) {
        assert.ok(block.bytes.subarray(placed.offset, placed.offset + placed.section.size).every((b) => b === 0));
        continue;
      }
      const ours = Buffer.from(block.bytes.subarray(placed.offset, placed.offset + placed.section.size));
      const theirs = Buffer.from(ld.data);
      for (const rela of relocationsFor(elf, placed.section)) {
        if (!isGotPcRelative(rela.type)) {
          checkedFields++;
          continue;
        }
        // GOT: both fields must lead to a slot holding the same address.
        const at = Number(rela.offset);
        const P = address + rela.offset;
        const ourSlot = P + BigInt(ours.readInt32LE(at)) - rela.addend;
        const ldSlot = P + BigInt(theirs.readInt32LE(at)) - rela.addend;
        const slotOffset = Number(ourSlot - BASE);
        assert.ok(slotOffset >= 0 && slotOffset + 8 <= block.size, 'local GOT slot inside the block');
        assert.equal(
          block.bytes.readBigUInt64LE(slotOffset), readOutput64(ref.out, ldSlot),
          `${relocationName(rela.type)} at ${placed.section.name}+${rela.offset} reaches the same address`,
        );
        ours.fill(0, at, at + 4);
        theirs.fill(0, at, at + 4);
        checkedGot++;
      }
      assert.deepEqual(ours, theirs, `${placed.section.name}: relocated bytes equal ld's`);
    }
    assert.ok(checkedFields > 5, 'relocations were compared');
    if (variant.flags.includes('-fPIC')) assert.ok(checkedGot > 0, 'GOT relocations were compared');

    // Placed functions are where ld put them; writable data is on its own pages.
    const ldSymbol = (name: string): bigint | undefined => ref.out.symbols.find((s) => s.name === name)?.value;
    for (const name of ['foo', 'sw', 'new_fn']) assert.equal(block.functions.get(name), ldSymbol(name), name);
    assert.equal(block.functions.get('.text.foo'), ldSymbol('foo'));
    assert.equal(block.variables.get('new_var'), ldSymbol('new_var'));
    assert.equal(block.functions.has('helper'), false);
    const rw = block.ranges.find((r) => r.prot === 'rw');
    assert.ok(rw && rw.start % 4096n === 0n && block.variables.get('new_var')! >= rw.start);
    const rx = block.ranges.find((r) => r.prot === 'rx');
    assert.ok(rx && rx.start === BASE && (block.functions.get('foo') as bigint) < rx.end);
  });
}
