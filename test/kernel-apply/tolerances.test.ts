// Run-pre matching with the kernel tolerances, on the host: a function
// compiled as the kernel compiles (fentry, return thunks, retpolines, a
// static key, an alternative) is linked by hand at a kernel address and then
// rewritten the way the running kernel rewrites its text. The kernel
// tolerances must accept exactly those rewrites, at exactly those sites, and
// still resolve the symbols the code refers to.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseElf, relocationsFor, sectionByName } from '../../src/elf/reader.js';
import { R_X86_64_PC32, R_X86_64_PLT32 } from '../../src/elf/x86_64.js';
import { type CodeReader, unmappedError } from '../../src/match/memory.js';
import { preFunction } from '../../src/match/pre.js';
import { matchFunction, type MatchFail, type MatchOk } from '../../src/match/runpre.js';
import { userSpaceTolerances } from '../../src/match/tolerances/index.js';
import { KernelSymbols } from '../../src/targets/kernel/apply/kallsyms.js';
import { kernelObjectImage } from '../../src/targets/kernel/apply/running-kernel.js';
import { SpecialSiteIndex, specialSites } from '../../src/targets/kernel/apply/special-sites.js';
import { kernelTolerances } from '../../src/targets/kernel/apply/tolerances/index.js';
import { compileObject } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';

const SOURCE = `
extern int helper(int);
extern int (*hook)(int);
struct static_key { int enabled; };
extern struct static_key key;
static inline __attribute__((always_inline)) int key_on(void) {
  asm goto("1: .byte 0x0f,0x1f,0x44,0x00,0x00\\n\\t"
           ".pushsection __jump_table, \\"aw\\"\\n\\t.balign 8\\n\\t.long 1b - .\\n\\t.long %l[yes] - .\\n\\t.quad %c0 - .\\n\\t.popsection"
           : : "i"(&key) : : yes);
  return 0;
yes:
  return 1;
}
int work(int x) {
  int r = helper(x);
  if (key_on()) r += 7;
  r += hook(x);
  /* ALTERNATIVE("", "clac", feature): NOPs in the object, clac on CPUs with the feature. */
  asm volatile("661: .byte 0x90,0x90,0x90\\n662:\\n"
       ".pushsection .altinstructions,\\"a\\"\\n .long 661b - .\\n .long 663f - .\\n .word 0\\n .byte 662b-661b\\n .byte 664f-663f\\n .popsection\\n"
       ".pushsection .altinstr_replacement, \\"ax\\"\\n663: clac\\n664:\\n .popsection");
  return r;
}
`;

// gcc-12 with the options kbuild gives the pinned kernel that shape its code.
const FLAGS = [
  '-O2', '-ffunction-sections', '-fno-pic', '-mcmodel=kernel', '-pg', '-mfentry', '-mrecord-mcount',
  '-mfunction-return=thunk-extern', '-mindirect-branch=thunk-extern', '-mindirect-branch-register',
];

const dir = tempDir('tsplice-kernel-tol-');
const object = readFileSync(compileObject(dir, 'work', SOURCE, FLAGS));
const elf = parseElf(object, 'work.o');
const pre = preFunction(elf, 'work');
const text = sectionByName(elf, '.text.work')!;

const WORK = 0xffffffff81234560n;
const HELPER = 0xffffffff81100000n;
const HOOK = 0xffffffff82400010n;
const THUNKS = 0xffffffff81e00000n;
const symbols = KernelSymbols.parse([
  `${HELPER.toString(16)} T helper`,
  `${WORK.toString(16)} T work`,
  `${(WORK + 0x50n).toString(16)} t next_function`,
  `${THUNKS.toString(16)} T __x86_indirect_thunk_rax`,
  `${(THUNKS + 0x100n).toString(16)} T __x86_return_thunk`,
  `${HOOK.toString(16)} D hook`,
].join('\n'));
const image = kernelObjectImage(symbols, 'vmlinux', 'test');
const addressOf: Record<string, bigint> = { helper: HELPER, hook: HOOK, __x86_indirect_thunk_rax: THUNKS, __x86_return_thunk: THUNKS + 0x100n };

/** The function as the kernel's linker lays it out at WORK (every relocation applied; __fentry__ left as is). */
function linked(): Buffer {
  const code = Buffer.from(text.data);
  for (const r of relocationsFor(elf, text)) {
    const name = elf.symbols[r.symbolIndex].name;
    if (name === '__fentry__') continue;
    assert.ok(r.type === R_X86_64_PC32 || r.type === R_X86_64_PLT32, `unexpected relocation type ${r.type} for ${name}`);
    const S = addressOf[name];
    assert.ok(S !== undefined, `no address for ${name}`);
    code.writeInt32LE(Number(S + r.addend - (WORK + r.offset)), Number(r.offset));
  }
  return code;
}

const sites = specialSites(elf, text);
const only = (set: Set<number>) => {
  assert.equal(set.size, 1);
  return [...set][0];
};

/** What the running kernel does to that code at boot and when the key is enabled. */
function rewrittenByKernel(code: Buffer): Buffer {
  const out = Buffer.from(code);
  Buffer.from([0x0f, 0x1f, 0x44, 0x00, 0x00]).copy(out, only(sites.ftrace)); // ftrace: NOP
  const [[jumpSite, label]] = [...sites.jumpLabels];
  out[jumpSite] = 0xe9; // static key enabled: jmp to the label
  out.writeInt32LE(label.target! - (jumpSite + 5), jumpSite + 1);
  const retpoline = Number(relocationsFor(elf, text).find((r) => elf.symbols[r.symbolIndex].name.startsWith('__x86_indirect'))!.offset) - 1;
  Buffer.from([0xff, 0xd0, 0x0f, 0x1f, 0x00]).copy(out, retpoline); // call *%rax; nopl (%rax)
  const [[altSite]] = [...sites.alternatives];
  Buffer.from([0x0f, 0x01, 0xca]).copy(out, altSite); // clac
  const ret = Number(relocationsFor(elf, text).find((r) => elf.symbols[r.symbolIndex].name === '__x86_return_thunk')!.offset) - 1;
  Buffer.from([0xc3, 0xcc, 0xcc, 0xcc, 0xcc]).copy(out, ret); // ret; int3 padding
  return out;
}

function memory(code: Buffer): CodeReader {
  return {
    read(addr: bigint, length: number): Buffer {
      const at = Number(addr - WORK);
      if (addr < WORK || at + length > code.length) throw unmappedError('test memory', addr, length);
      return code.subarray(at, at + length);
    },
  };
}

const kernelMatch = (code: Buffer) =>
  matchFunction(pre, WORK, memory(code), image, { tolerances: kernelTolerances(new SpecialSiteIndex()) });

test('the object lists the sites the kernel rewrites', () => {
  assert.equal(only(sites.ftrace), 0);
  assert.equal(sites.jumpLabels.size, 1);
  assert.equal(sites.alternatives.size, 1);
  const [[, [alt]]] = [...sites.alternatives];
  assert.equal(alt.length, 3);
  assert.equal(alt.replacement.length, 3);
});

test('code rewritten by the running kernel matches, and the symbols it uses resolve', () => {
  const result = kernelMatch(rewrittenByKernel(linked()));
  assert.ok(result.ok, (result as MatchFail).reason);
  const ok = result as MatchOk;
  assert.equal(ok.symbols.get('helper')?.address, HELPER);
  assert.equal(ok.symbols.get('hook')?.address, HOOK);
});

test('the code as linked, before the kernel rewrote it, matches too', () => {
  const result = kernelMatch(linked());
  assert.ok(result.ok, (result as MatchFail).reason);
});

test('without the kernel tolerances the rewritten code does not match', () => {
  const result = matchFunction(pre, WORK, memory(rewrittenByKernel(linked())), image, { tolerances: userSpaceTolerances });
  assert.equal(result.ok, false);
});

test('a rewrite at a place that is no patch site is a mismatch', () => {
  const code = rewrittenByKernel(linked());
  // The retpoline site now goes through another register than the thunk it replaced.
  const retpoline = code.indexOf(Buffer.from([0xff, 0xd0, 0x0f, 0x1f, 0x00]));
  code[retpoline + 1] = 0xd3; // call *%rbx
  const wrongRegister = kernelMatch(code);
  assert.equal(wrongRegister.ok, false);

  const changed = rewrittenByKernel(linked());
  const add = changed.indexOf(Buffer.from([0x83, 0xc3, 0x07])); // add $0x7,%ebx in the static key's branch
  changed[add + 2] = 0x08;
  const result = kernelMatch(changed);
  assert.equal(result.ok, false);
  assert.match((result as MatchFail).reason, /add/);
});

test('a call that lands on another global than the one the pre code names is a mismatch', () => {
  const code = rewrittenByKernel(linked());
  const call = Number(relocationsFor(elf, text).find((r) => elf.symbols[r.symbolIndex].name === 'helper')!.offset);
  code.writeInt32LE(code.readInt32LE(call) + 0x50, call); // now calls "work"+..., not helper
  const result = kernelMatch(code);
  assert.equal(result.ok, false);
});

test('kallsyms: sympos counts same-named symbols per object, in order; modules are separate objects', () => {
  const table = KernelSymbols.parse([
    'ffffffff81000000 T _text',
    'ffffffff81001000 t show',
    'ffffffff81002000 t show',
    'ffffffff81003000 D show',
    'ffffffffc0001000 t show\t[mymod]',
    'ffffffffc0002000 T mymod_init\t[mymod]',
  ].join('\n'));
  assert.deepEqual(table.named('vmlinux', 'show').map((s) => [s.sympos, s.type, s.text]), [[1, 't', true], [2, 't', true], [3, 'D', false]]);
  assert.deepEqual(table.named('mymod', 'show').map((s) => [s.sympos, s.object]), [[1, 'mymod']]);
  assert.deepEqual(table.functionCandidates('vmlinux', 'show', 2).map((s) => s.address), [0xffffffff81002000n]);
  assert.equal(table.functionCandidates('vmlinux', 'show', 0).length, 2);
  assert.equal(table.extentOf('vmlinux', 0xffffffff81001000n), 0x1000);
  assert.equal(table.named('mymod', 'mymod_init')[0].global, true);
  assert.deepEqual(table.objects().sort(), ['mymod', 'vmlinux']);
});
