// The pieces of `create --kernel` that need no kernel build: which patched
// files are refused, the ftrace-entry check, the patch object (what is
// shipped, what becomes a livepatch reference), the klp conversion and the
// generated klp_patch source. C fixtures are compiled with the host gcc the
// way kbuild compiles (function/data sections, -pg -mfentry -mrecord-mcount).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SHF_RELA_LIVEPATCH, SHN_LIVEPATCH, SHN_UNDEF, SHT_PROGBITS, STB_GLOBAL, STT_FUNC } from '../../src/elf/constants.js';
import { parseElf } from '../../src/elf/reader.js';
import { ObjectBuilder } from '../../src/elf/writer.js';
import { R_X86_64_PLT32 } from '../../src/elf/x86_64.js';
import { TspliceError } from '../../src/errors.js';
import { checkPatchedFiles } from '../../src/targets/kernel/kbuild-objects.js';
import { hasFtraceEntry, meaningfulData } from '../../src/targets/kernel/kernel-diff.js';
import { convertKlpModule } from '../../src/targets/kernel/klp-convert.js';
import { moduleNameFor, patchSource } from '../../src/targets/kernel/klp-module.js';
import { buildPatchObject, type KernelReference } from '../../src/targets/kernel/patch-object.js';
import { compileObject } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';

const KBUILD_LIKE = ['-O2', '-ffunction-sections', '-fdata-sections', '-pg', '-mfentry', '-mrecord-mcount', '-fno-pic',
  '-mcmodel=kernel', '-fno-asynchronous-unwind-tables'];

const FIXTURE = `
extern int printk(const char *fmt, ...);
extern int exported_counter;
static int hits;
static const char *const names[] = { "zero", "one" };

static __attribute__((noinline)) int helper(int x) { return x * 3 + hits; }

int patched(int x)
{
	hits++;
	exported_counter++;
	printk("patched %s %d\\n", names[x & 1], helper(x));
	return 0;
}

__attribute__((no_instrument_function)) int untraced(int x) { return x + 1; }
`;

function fixture(): ReturnType<typeof parseElf> {
  const dir = tempDir();
  return parseElf(readFileSync(compileObject(dir, 'unit', FIXTURE, KBUILD_LIKE)), 'unit.o');
}

function refusedWith(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof TspliceError && e.code === code && message.test(e.message));
}

test('assembly, headers and build files are refused before anything is built; documentation is ignored', () => {
  const f = (path: string) => ({ path, created: false, deleted: false });
  refusedWith(() => checkPatchedFiles([f('arch/x86/entry/entry_64.S')]), 'unsupported_change', /assembly file/);
  refusedWith(() => checkPatchedFiles([f('include/linux/fs.h')]), 'unsupported_change', /header/);
  refusedWith(() => checkPatchedFiles([f('fs/proc/Makefile')]), 'unsupported_change', /not C source/);
  refusedWith(() => checkPatchedFiles([{ path: 'fs/proc/x.c', created: false, deleted: true }]), 'unsupported_change', /deletes/);
  refusedWith(() => checkPatchedFiles([f('Documentation/x.rst')]), 'bad_input', /no C source/);
  assert.deepEqual(checkPatchedFiles([f('Documentation/x.rst'), f('fs/proc/cmdline.c')]).map((x) => x.path), ['fs/proc/cmdline.c']);
});

test('functions with an ftrace entry are told from notrace ones', () => {
  const elf = fixture();
  assert.equal(hasFtraceEntry(elf, '.text.patched'), true);
  assert.equal(hasFtraceEntry(elf, '.text.untraced'), false);
  assert.equal(hasFtraceEntry(elf, '.text.nonexistent'), false);
});

test('bookkeeping data changes are not changes', () => {
  const d = (symbol: string, section: string) => ({
    unit: 'u.o', symbol, section, kind: 'changed' as const, writable: true, global: false, reason: 'x',
  });
  const kept = meaningfulData([d('__already_done.3', '.data.once'), d('__ksymtab_foo', '___ksymtab+foo'),
    d('__UNIQUE_ID_license1', '.modinfo'), d('limit', '.data.limit')]);
  assert.deepEqual(kept.map((x) => x.symbol), ['limit']);
});

test('the patch object ships the function and its rodata; the rest becomes kernel references', () => {
  const post = fixture();
  const asked: string[] = [];
  const resolver = {
    resolve(name: string, local: boolean): KernelReference {
      asked.push(`${name}${local ? ' (local)' : ''}`);
      if (name === 'printk' || name === '__fentry__' || name === 'exported_counter') return { kind: 'exported' };
      return { kind: 'klp', object: 'vmlinux', name, sympos: name === 'hits' ? 2 : 0 };
    },
  };
  const patch = buildPatchObject({ post, functions: ['patched'], newData: [], resolver, unit: 'unit.o', target: 'vmlinux' });
  const out = parseElf(patch.object, 'patch.o');
  const names = out.sections.map((s) => s.name);
  assert.ok(names.includes('.text.patched'));
  assert.ok(!names.includes('.text.helper'), 'an unchanged helper stays in the kernel');
  assert.ok(names.some((n) => n.startsWith('.rodata')), 'string and table constants travel with the code');
  assert.ok(names.includes('__mcount_loc'), 'the ftrace call site of the shipped function');
  assert.deepEqual(patch.klpSymbols, ['.klp.sym.vmlinux.helper,0', '.klp.sym.vmlinux.hits,2']);
  assert.ok(asked.includes('hits (local)') && asked.includes('helper (local)'));
  const alias = patch.entries.get('patched') as string;
  const entry = out.symbols.find((s) => s.name === alias);
  assert.equal(entry?.bind, STB_GLOBAL);
  assert.equal(out.sections[entry?.shndx ?? 0]?.name, '.text.patched');
  // The copied definition itself is local, so several units never clash in the module link.
  assert.notEqual(out.symbols.find((s) => s.name === 'patched')?.bind, STB_GLOBAL);
  for (const klp of patch.klpSymbols) assert.equal(out.symbols.find((s) => s.name === klp)?.shndx, SHN_UNDEF);
});

test('klp conversion marks livepatch symbols and moves their relocations to .klp.rela sections', () => {
  const b = new ObjectBuilder();
  const text = b.addSection({ name: '.text.f', type: SHT_PROGBITS, flags: 0x6n, addralign: 16, data: Buffer.alloc(16, 0x90) });
  b.addSymbol({ name: 'f', type: STT_FUNC, bind: STB_GLOBAL, section: text, value: 0n, size: 16 });
  const klp = b.addSymbol({ name: '.klp.sym.nfs.nfs_lookup,2', type: 0, bind: STB_GLOBAL, section: 'undef', value: 0n, size: 0 });
  const normal = b.addSymbol({ name: 'printk', type: 0, bind: STB_GLOBAL, section: 'undef', value: 0n, size: 0 });
  b.addRelocations(text, [
    { offset: 1n, type: R_X86_64_PLT32, symbol: klp, addend: -4n },
    { offset: 6n, type: R_X86_64_PLT32, symbol: normal, addend: -4n },
  ]);
  const { module, symbols } = convertKlpModule(b.write(), 'm.ko');
  const elf = parseElf(module, 'm.ko');
  assert.deepEqual([...symbols.entries()], [['nfs', ['nfs_lookup,2']]]);
  assert.equal(elf.symbols.find((s) => s.name === '.klp.sym.nfs.nfs_lookup,2')?.shndx, SHN_LIVEPATCH);
  const klpRela = elf.sections.find((s) => s.name === '.klp.rela.nfs..text.f');
  assert.ok(klpRela && (klpRela.flags & SHF_RELA_LIVEPATCH) !== 0n);
  const textIndex = elf.sections.findIndex((s) => s.name === '.text.f');
  const plain = elf.sections.find((s) => s.name === '.rela.text.f');
  assert.equal(plain?.info, textIndex);
  assert.equal(klpRela.info, textIndex);
  assert.equal(klpRela.size / 24, 1);
  assert.equal(plain.size / 24, 1);
});

test('the generated klp_patch names each object and function with its sympos', () => {
  const c = patchSource('tsplice_x', [
    { object: 'vmlinux', oldName: 'c_start', sympos: 2, newSymbol: '__tsplice_a' },
    { object: 'binfmt_misc', oldName: 'bm_status_read', sympos: 0, newSymbol: '__tsplice_b' },
  ], 'Fix-X.1');
  assert.match(c, /\.old_name = "c_start", \.new_func = __tsplice_a, \.old_sympos = 2/);
  assert.match(c, /\{ \.name = NULL, \.funcs = funcs0 \}/);
  assert.match(c, /\{ \.name = "binfmt_misc", \.funcs = funcs1 \}/);
  assert.match(c, /MODULE_INFO\(livepatch, "Y"\)/);
  assert.match(c, /MODULE_VERSION\("Fix-X\.1"\)/, 'the whole update id, which the module name cannot keep');
  assert.equal(moduleNameFor('Fix-CVE.2024'), 'tsplice_fix_cve_2024');
});
