// A return address must follow a call: the check that guards the unwinder.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { sectionByName, parseElf } from '../../src/elf/reader.js';
import { followsCall } from '../../src/apply/unwind/call-site.js';
import { compileObject } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';

test('calls of every form are found, and nothing else', () => {
  const code = Buffer.from([
    0xe8, 0, 0, 0, 0, // 0: call rel32 (ends at 5)
    0xff, 0xd0, // 5: call *%rax (ends at 7)
    0x41, 0xff, 0xd3, // 7: call *%r11 (ends at 10)
    0xff, 0x15, 1, 2, 3, 4, // 10: call *0x04030201(%rip) (ends at 16)
    0xff, 0x54, 0x24, 0x08, // 16: call *0x8(%rsp) (ends at 20)
    0xff, 0x90, 1, 0, 0, 0, // 20: call *0x1(%rax) (ends at 26)
    0x48, 0x89, 0xe5, // 26: mov %rsp,%rbp (ends at 29)
    0xff, 0xe0, // 29: jmp *%rax (ends at 31)
  ]);
  const base = 0x1000n;
  for (const end of [5, 7, 10, 16, 20, 26]) assert.ok(followsCall(code, base, base + BigInt(end)), `call ending at ${end}`);
  for (const end of [1, 3, 6, 29, 31]) assert.ok(!followsCall(code, base, base + BigInt(end)), `no call ends at ${end}`);
});

test('every call site gcc emits is recognised, as objdump decodes them', () => {
  const dir = tempDir();
  const obj = compileObject(dir, 'calls', `
    extern int f(int); extern int (*fp)(int); struct ops { int (*op)(int); };
    int g(struct ops *o, int (*cb)(int), int x) { return f(x) + fp(x) + o->op(x) + cb(x) + o[3].op(x); }
  `, ['-O2', '-fno-pic']);
  const text = sectionByName(parseElf(readFileSync(obj), obj), '.text');
  assert.ok(text);
  const listing = execFileSync('objdump', ['-d', '--no-show-raw-insn', obj], { encoding: 'utf8' });
  const ends: number[] = [];
  const lines = listing.split('\n').filter((l) => /^\s+[0-9a-f]+:/.test(l));
  lines.forEach((line, i) => {
    if (/\bcall/.test(line) && lines[i + 1]) ends.push(parseInt(lines[i + 1].trim(), 16));
  });
  assert.ok(ends.length >= 5, listing);
  for (const end of ends) assert.ok(followsCall(text.data, 0n, BigInt(end)), `call ending at 0x${end.toString(16)}\n${listing}`);
});
