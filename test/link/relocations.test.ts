// Relocation cases GNU ld cannot be asked about directly (stubs, the running
// program's GOT slots, TLS answers of each kind) checked by following the
// fields to what they reach; TLS relaxation checked against ld; and the errors.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PT_TLS } from '../../src/elf/constants.js';
import { parseElf, relocationsFor, sectionByName, type ElfFile } from '../../src/elf/reader.js';
import * as R from '../../src/elf/x86_64.js';
import { TspliceError } from '../../src/errors.js';
import { layoutBlock, type LinkRequest } from '../../src/link/layout.js';
import { linkBlock, type LinkedBlock } from '../../src/link/link.js';
import type { Resolution, SymbolRef, SymbolResolver } from '../../src/link/resolution.js';
import { compileObject, gcc, writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
let counter = 0;
function object(source: string, flags: string[]): ElfFile {
  const path = compileObject(dir, `u${counter++}`, source, [...flags, '-ffunction-sections', '-fdata-sections']);
  return parseElf(readFileSync(path), path);
}

function link(request: LinkRequest, base: bigint, answers: Record<string, Resolution | ((ref: SymbolRef) => Resolution | undefined)>) {
  const asked: SymbolRef[] = [];
  const resolver: SymbolResolver = (ref) => {
    asked.push(ref);
    const a = answers[ref.name];
    return typeof a === 'function' ? a(ref) : a;
  };
  const layout = layoutBlock(request);
  return { layout, block: linkBlock(layout, base, resolver), asked };
}

/** Where the rel32/disp32 field of the relocation at `offset` in `section` leads (P + 4 + field). */
function fieldTarget(block: LinkedBlock, section: string, offset: bigint): bigint {
  const start = block.functions.get(section) ?? block.variables.get(section);
  assert.ok(start !== undefined, `${section} placed`);
  const at = Number(start - block.base + offset);
  return start + offset + 4n + BigInt(block.bytes.readInt32LE(at));
}

function read64(block: LinkedBlock, address: bigint): bigint {
  return block.bytes.readBigUInt64LE(Number(address - block.base));
}

/** The address a `jmp *disp(%rip)` stub at `address` jumps through. */
function stubSlot(block: LinkedBlock, address: bigint): bigint {
  const at = Number(address - block.base);
  assert.deepEqual([...block.bytes.subarray(at, at + 2)], [0xff, 0x25], 'stub is jmp *disp32(%rip)');
  return address + 6n + BigInt(block.bytes.readInt32LE(at + 2));
}

function relocation(elf: ElfFile, section: string, type: number, symbol?: string) {
  const s = sectionByName(elf, section);
  assert.ok(s);
  const found = relocationsFor(elf, s).filter(
    (r) => r.type === type && (symbol === undefined || elf.symbols[r.symbolIndex].name === symbol ||
      (elf.symbols[r.symbolIndex].name === '' && elf.sections[elf.symbols[r.symbolIndex].shndx]?.name === symbol)),
  );
  assert.ok(found.length > 0, `${R.relocationName(type)} against ${symbol} in ${section}`);
  return found[0];
}

const CALLS = `
extern int ext_fn(int);
extern int ext_var;
__attribute__((noipa)) static int helper(int x) { return x * 3; }
int foo(int x) { return helper(x) + ext_fn(x) + ext_var; }
`;

test('calls out of ±2 GiB go through stubs; calls in reach are direct', () => {
  const elf = object(CALLS, ['-O2']);
  const base = 0x10000000n;
  const far = 0x7f1234560000n;
  const near = base + 0x1000000n;
  const { block } = link({ elf, install: ['.text.foo'] }, base, {
    helper: { kind: 'address', value: near },
    ext_fn: { kind: 'address', value: far },
    ext_var: { kind: 'address', value: base + 0x2000000n },
  });
  const toHelper = relocation(elf, '.text.foo', R.R_X86_64_PC32, '.text.helper');
  assert.equal(fieldTarget(block, '.text.foo', toHelper.offset), near, 'direct call to helper');
  const toExt = relocation(elf, '.text.foo', R.R_X86_64_PLT32, 'ext_fn');
  const stub = fieldTarget(block, '.text.foo', toExt.offset);
  assert.ok(stub > block.base && stub < block.base + BigInt(block.size), 'call lands in the block');
  const slot = stubSlot(block, stub);
  assert.equal(read64(block, slot), far);
  assert.ok(block.gotSlots.some((g) => g.address === slot && g.holds === 'stub' && g.symbol === 'ext_fn'));
  // Stubs are code, their slots read-only data.
  const rx = block.ranges.find((r) => r.prot === 'rx');
  const r = block.ranges.find((x) => x.prot === 'r');
  assert.ok(rx && stub >= rx.start && stub < rx.end && r && slot >= r.start && slot < r.end);

  // A static function far away is reached the same way (its call is PC32 against the section).
  const { block: far2 } = link({ elf, install: ['.text.foo'] }, base, {
    helper: { kind: 'address', value: far + 0x100n },
    ext_fn: { kind: 'address', value: near },
    ext_var: { kind: 'address', value: near },
  });
  const viaStub = fieldTarget(far2, '.text.foo', toHelper.offset);
  assert.equal(read64(far2, stubSlot(far2, viaStub)), far + 0x100n);
  assert.equal(fieldTarget(far2, '.text.foo', toExt.offset), near);
});

test("the running program's GOT slots: IFUNC calls and GOT loads use them", () => {
  const elf = object(CALLS, ['-O2', '-fPIC']);
  const base = 0x10000000n;
  const slotOfFn = base - 0x1000n;
  const slotOfVar = base - 0x2000n;
  const { block } = link({ elf, install: ['.text.foo'] }, base, {
    helper: { kind: 'address', value: base - 0x5000n },
    ext_fn: (ref) => (ref.access === 'call' ? { kind: 'got', slot: slotOfFn } : undefined),
    ext_var: (ref) => (ref.access === 'got' ? { kind: 'got', slot: slotOfVar } : undefined),
  });
  const call = relocation(elf, '.text.foo', R.R_X86_64_PLT32, 'ext_fn');
  assert.equal(stubSlot(block, fieldTarget(block, '.text.foo', call.offset)), slotOfFn);
  const load = relocation(elf, '.text.foo', R.R_X86_64_REX_GOTPCRELX, 'ext_var');
  assert.equal(fieldTarget(block, '.text.foo', load.offset), slotOfVar);
});

const TLS = `
extern __thread int ext_tls;
static __thread int loc_tls;
int foo(void) { loc_tls++; return ext_tls + loc_tls; }
`;
const TLS_DEF = `
__thread int ext_tls = 3;
int _start(void) { return 0; }
`;

test('TLS relaxed to local-exec equals GNU ld\'s relaxation', () => {
  const elf = object(TLS, ['-O2', '-fPIC']);
  const defPath = compileObject(dir, 'tlsdef', TLS_DEF, ['-O2']);
  const exe = join(dir, 'tls.exe');
  execFileSync('ld', ['-static', '-o', exe, elf.name, defPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = parseElf(readFileSync(exe), exe);
  const tls = out.segments.find((s) => s.type === PT_TLS);
  assert.ok(tls);
  // Variant II: the TLS block ends at the thread pointer; a linked file's TLS symbols hold offsets in it.
  const tlsSize = ((BigInt(tls.memsz) + BigInt(tls.align) - 1n) / BigInt(tls.align)) * BigInt(tls.align);
  const tpoff = (name: string): Resolution => {
    const sym = out.symbols.find((s) => s.name === name);
    assert.ok(sym);
    return { kind: 'tpoff', value: sym.value - tlsSize };
  };
  const foo = out.symbols.find((s) => s.name === 'foo');
  assert.ok(foo && foo.value % 4096n === 0n);
  const { block, asked } = link({ elf, install: ['.text.foo'] }, foo.value, {
    ext_tls: tpoff('ext_tls'),
    loc_tls: tpoff('loc_tls'),
  });
  const text = out.sections.find((s) => s.name === '.text');
  assert.ok(text);
  const fooSection = sectionByName(elf, '.text.foo');
  assert.ok(fooSection);
  const start = Number(foo.value - text.addr);
  assert.deepEqual(block.bytes.subarray(0, fooSection.size), text.data.subarray(start, start + fooSection.size));
  assert.ok(!asked.some((r) => r.name === '__tls_get_addr'), 'the relaxed call is gone');
});

test('TLS through the running module: GOT pairs for __tls_get_addr, DTPOFF, and initial-exec', () => {
  const elf = object(TLS, ['-O2', '-fPIC']);
  const base = 0x7f0000000000n;
  const modulePair = base - 0x3000n;
  const extPair = base - 0x3010n;
  const getAddr = base - 0x8000n;
  const { block } = link({ elf, install: ['.text.foo'] }, base, {
    ext_tls: { kind: 'tlsgd', slot: extPair },
    loc_tls: (ref) => (ref.access === 'tlsld' ? { kind: 'tlsgd', slot: modulePair } : { kind: 'dtpoff', value: 0x40n }),
    __tls_get_addr: { kind: 'address', value: getAddr },
  });
  const ld = relocation(elf, '.text.foo', R.R_X86_64_TLSLD, 'loc_tls');
  assert.equal(fieldTarget(block, '.text.foo', ld.offset), modulePair);
  const gd = relocation(elf, '.text.foo', R.R_X86_64_TLSGD, 'ext_tls');
  assert.equal(fieldTarget(block, '.text.foo', gd.offset), extPair);
  const dtp = relocation(elf, '.text.foo', R.R_X86_64_DTPOFF32, 'loc_tls');
  assert.equal(block.bytes.readInt32LE(Number(dtp.offset)), 0x40);
  for (const r of relocationsFor(elf, sectionByName(elf, '.text.foo')!).filter((x) => x.type === R.R_X86_64_PLT32)) {
    assert.equal(fieldTarget(block, '.text.foo', r.offset), getAddr, '__tls_get_addr called directly');
  }

  // General-dynamic relaxed to initial-exec through the running program's slot holding the tp offset.
  const ieSlot = base - 0x4000n;
  const { block: ie } = link({ elf, install: ['.text.foo'] }, base, {
    ext_tls: { kind: 'got', slot: ieSlot },
    loc_tls: (ref) => (ref.access === 'tlsld' ? { kind: 'tlsgd', slot: modulePair } : { kind: 'dtpoff', value: 0n }),
    __tls_get_addr: { kind: 'address', value: getAddr },
  });
  const seq = Number(gd.offset) - 4;
  assert.deepEqual([...ie.bytes.subarray(seq, seq + 12)], [0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0x48, 0x03, 0x05]);
  assert.equal(base + BigInt(seq + 16) + BigInt(ie.bytes.readInt32LE(seq + 12)), ieSlot);

  // Initial-exec code (an executable's unit) gets a local slot holding the tp offset.
  const exeElf = object(TLS.replace('static __thread int loc_tls;', 'extern __thread int loc_tls;'), ['-O2']);
  const { block: exe } = link({ elf: exeElf, install: ['.text.foo'] }, 0x10000000n, {
    ext_tls: { kind: 'tpoff', value: -8n },
    loc_tls: { kind: 'tpoff', value: -16n },
  });
  const got = relocation(exeElf, '.text.foo', R.R_X86_64_GOTTPOFF, 'ext_tls');
  assert.equal(read64(exe, fieldTarget(exe, '.text.foo', got.offset)), BigInt.asUintN(64, -8n));
});

test('a cold part of an installed function is placed with it', () => {
  const elf = object(`
    #include <stdio.h>
    extern int ext;
    __attribute__((cold, noinline)) void report(int x);
    int foo(int x) {
      int s = 0;
      for (int i = 0; i < x; i++) {
        if (__builtin_expect(i == 77, 0)) { report(i); s += ext * i; fprintf(stderr, "%d\\n", s); }
        s += i * ext;
      }
      return s;
    }`, ['-O2']);
  const cold = elf.sections.find((s) => s.name === '.text.unlikely.foo');
  assert.ok(cold, 'gcc split foo');
  const base = 0x10000000n;
  const { layout, block } = link({ elf, install: ['.text.foo'] }, base, {
    ext: { kind: 'address', value: base + 0x100000n },
    report: { kind: 'address', value: base + 0x200000n },
    stderr: { kind: 'address', value: base + 0x300000n },
    fprintf: { kind: 'address', value: base + 0x400000n },
  });
  assert.equal(layout.bySection.get(cold.index)?.reason, 'cold');
  const jump = relocation(elf, '.text.foo', R.R_X86_64_PC32, '.text.unlikely.foo');
  assert.equal(fieldTarget(block, '.text.foo', jump.offset), block.functions.get('foo.cold'));
});

test('layout: size known before the address, alignment kept, pages split by protection', () => {
  const elf = object(`
    static int big[100] __attribute__((aligned(64)));
    static const char msg[] = "hello";
    int foo(int i) { big[i] += msg[i]; return big[i]; }`, ['-O2']);
  const request: LinkRequest = { elf, install: ['.text.foo'], newSections: ['.bss.big'] };
  const layout = layoutBlock(request);
  assert.equal(layout.size % 4096, 0);
  assert.deepEqual(layout.ranges.map((r) => r.prot), ['rx', 'r', 'rw']);
  for (const [i, r] of layout.ranges.entries()) {
    assert.equal(r.start % 4096, 0);
    if (i > 0) assert.ok(r.start >= layout.ranges[i - 1].end);
  }
  const big = layout.sections.find((p) => p.section.name === '.bss.big');
  assert.ok(big && big.offset % 64 === 0 && big.sectionClass === 'data');
  const block = linkBlock(layout, 0x20000000n, () => undefined);
  assert.equal(block.size, layout.size);
  assert.equal(block.bytes.length, layout.size);
  assert.throws(() => linkBlock(layout, 0x20000010n, () => undefined), (e: TspliceError) => e.code === 'internal');
});

function assertError(fn: () => unknown, code: string, ...words: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TspliceError, String(e));
    assert.equal(e.code, code, e.message);
    for (const w of words) assert.ok(e.message.includes(w), `"${w}" in: ${e.message}`);
    return true;
  });
}

test('errors: unresolved symbol, out of reach, unsupported relocation, new TLS, bad install', () => {
  const elf = object(CALLS, ['-O2']);
  const base = 0x10000000n;
  assertError(
    () => link({ elf, install: ['.text.foo'] }, base, { ext_fn: { kind: 'address', value: base } }),
    'no_match', 'helper', 'foo',
  );
  assertError(
    () => link({ elf, install: ['.text.foo'] }, base, {
      helper: { kind: 'address', value: base }, ext_fn: { kind: 'address', value: base },
      ext_var: { kind: 'address', value: base + 0x100000000n },
    }),
    'out_of_memory', 'ext_var', 'foo', 'R_X86_64_PC32',
  );
  const absolute = object('static const int t[4] = {1, 2, 3, 4}; int foo(int i) { return t[i & 3]; }', ['-O2', '-fno-pic']);
  assertError(() => link({ elf: absolute, install: ['.text.foo'] }, 0x90000000n, {}), 'out_of_memory', 'R_X86_64_32S');
  assert.doesNotThrow(() => link({ elf: absolute, install: ['.text.foo'] }, 0x70000000n, {}));

  const desc = object(TLS, ['-O2', '-fPIC', '-mtls-dialect=gnu2']);
  assertError(() => link({ elf: desc, install: ['.text.foo'] }, base, {}), 'unsupported_change', 'R_X86_64_GOTPC32_TLSDESC', 'foo');

  const newTls = object(TLS, ['-O2']);
  assertError(
    () => layoutBlock({ elf: newTls, install: ['.text.foo'], newSections: ['.tbss.loc_tls'] }),
    'unsupported_change', '.tbss.loc_tls',
  );
  assertError(() => layoutBlock({ elf, install: ['.text.nothere'] }), 'bad_input', '.text.nothere');
  assertError(() => layoutBlock({ elf, install: ['.data.glob'] }), 'bad_input');
});

test('SIZE32/SIZE64 take the size of a symbol the object defines', () => {
  writeTree(dir, {
    'size.s': `
      .section .text.foo,"ax",@progbits
      .globl foo
      .type foo,@function
    foo:
      movl $tbl@SIZE, %eax
      movabsq $tbl@SIZE+8, %rax
      ret
      .size foo, .-foo
      .section .text.bar,"ax",@progbits
      .globl bar
      .type bar,@function
    bar:
      movl $ext@SIZE, %eax
      ret
      .size bar, .-bar
      .section .data.tbl,"aw"
      .globl tbl
      .type tbl,@object
    tbl:
      .zero 40
      .size tbl, 40
    `,
  });
  gcc(dir, ['-c', 'size.s', '-o', 'size.o']);
  const elf = parseElf(readFileSync(join(dir, 'size.o')), 'size.o');
  const { block } = link({ elf, install: ['.text.foo'] }, 0x10000000n, { tbl: { kind: 'address', value: 0x20000000n } });
  const s32 = relocation(elf, '.text.foo', R.R_X86_64_SIZE32, 'tbl');
  const s64 = relocation(elf, '.text.foo', R.R_X86_64_SIZE64, 'tbl');
  assert.equal(block.bytes.readUInt32LE(Number(s32.offset)), 40);
  assert.equal(block.bytes.readBigUInt64LE(Number(s64.offset)), 48n);
  assertError(() => link({ elf, install: ['.text.bar'] }, 0x10000000n, {}), 'unsupported_change', 'ext', 'bar');
});
