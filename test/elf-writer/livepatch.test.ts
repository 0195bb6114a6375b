// Livepatch-style output: relocations against symbols the kernel's livepatch
// core resolves go into ".klp.rela.<obj>.<section>" (SHF_ALLOC | SHF_INFO_LINK |
// SHF_RELA_LIVEPATCH) against ".klp.sym.<obj>.<name>,<sympos>" symbols with
// st_shndx SHN_LIVEPATCH; readelf must show them as it does for a real
// livepatch module (Documentation/livepatch/module-elf-format.rst: "AIo",
// "OS [0xff20]"); relocations the module loader resolves stay in ".rela.*".
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  SHF_ALLOC, SHF_INFO_LINK, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH, SHN_UNDEF, SHT_PROGBITS, SHT_RELA, STB_GLOBAL,
  STB_LOCAL, STT_FUNC, STT_NOTYPE, STT_SECTION,
} from '../../src/elf/constants.js';
import { parseElf, relocationsFor, sectionByName, symbolDisplayName } from '../../src/elf/reader.js';
import type { ElfSymbol } from '../../src/elf/reader.js';
import {
  KLP_RELA_FLAGS, ObjectBuilder, SectionCopier, klpRelaSectionName, klpSymbol, klpSymbolName, soleSymbolOf,
} from '../../src/elf/writer.js';
import type { OutRela } from '../../src/elf/writer.js';
import { TspliceError } from '../../src/errors.js';
import { gcc, writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';
import { disassemble, readelf, readelfSections, readelfSymbols } from './helpers.js';

const dir = tempDir('tsplice-elfw-klp-');
// Stands in for a changed kernel function: it calls a static function and uses a static
// variable of its file (resolved by livepatch), and an exported one (resolved by the loader).
writeTree(dir, {
  'fs.c': `
    extern int printk(const char *fmt, ...);
    static int open_count;
    __attribute__((noinline)) static int check_perm(int mode) { return mode & 4 ? -13 : open_count; }
    int do_open(int mode) {
      open_count++;
      int r = check_perm(mode);
      printk("open %d -> %d\\n", mode, r);
      return r;
    }
  `,
});
gcc(dir, ['-O2', '-c', '-ffunction-sections', '-fdata-sections', 'fs.c', '-o', 'fs.o']);
const input = parseElf(readFileSync(join(dir, 'fs.o')), 'fs.o');

/** gcc refers to statics through their section's symbol; livepatch needs the object's own name. */
function klpTargetName(sym: ElfSymbol): string {
  if (sym.type !== STT_SECTION) return sym.name;
  const named = soleSymbolOf(input, sym.shndx);
  assert.ok(named, `section ${input.sections[sym.shndx].name} holds one symbol`);
  return named.name;
}

function buildPatch(): Buffer {
  const builder = new ObjectBuilder({ fileName: 'livepatch-fs.c' });
  // Locals of the patched object and anything defined there (but not copied) are resolved by
  // livepatch; a second static of the same name elsewhere in vmlinux would make sympos 1 or 2.
  const resolve = (sym: ElfSymbol) => {
    if (sym.shndx === SHN_UNDEF) return undefined;
    const name = klpTargetName(sym);
    return klpSymbol(builder, 'vmlinux', name, name === 'check_perm' ? 2 : 0);
  };
  const copier = new SectionCopier(builder, input, resolve);
  const text = sectionByName(input, '.text.do_open')!;
  const strings = relocationsFor(input, text).map((r) => input.symbols[r.symbolIndex])
    .filter((s) => s.shndx !== SHN_UNDEF && input.sections[s.shndx].name.startsWith('.rodata'))
    .map((s) => input.sections[s.shndx]);
  const [out] = copier.copySections([text, ...new Set(strings)], { relocations: false });
  const relas = copier.translate(relocationsFor(input, text));
  const byLivepatch: OutRela[] = relas.filter((r) => r.symbol?.section === SHN_LIVEPATCH);
  const byLoader = relas.filter((r) => r.symbol?.section !== SHN_LIVEPATCH);
  builder.addRelocations(out, byLoader);
  builder.addRelocations(out, byLivepatch, { name: klpRelaSectionName('vmlinux', out.name), flags: KLP_RELA_FLAGS });
  builder.addSection({ name: '.note.GNU-stack', type: SHT_PROGBITS, flags: 0n, addralign: 1, data: Buffer.alloc(0) });
  return builder.write();
}

const path = join(dir, 'livepatch-fs.o');
const bytes = buildPatch();
writeFileSync(path, bytes);

test('klp names follow the kernel format and refuse what the kernel cannot parse', () => {
  assert.equal(klpRelaSectionName('vmlinux', '.text.cmdline_proc_show'), '.klp.rela.vmlinux..text.cmdline_proc_show');
  assert.equal(klpSymbolName('btrfs', 'can_modify_feature.isra.3', 0), '.klp.sym.btrfs.can_modify_feature.isra.3,0');
  assert.equal(KLP_RELA_FLAGS, SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH);
  for (const bad of [() => klpSymbolName('vm.linux', 'x', 0), () => klpSymbolName('vmlinux', 'a,b', 0),
    () => klpSymbolName('vmlinux', 'x', -1), () => klpRelaSectionName('', '.text')]) {
    assert.throws(bad, TspliceError);
  }
});

test('readelf shows klp relocation sections and symbols as for a real livepatch module', () => {
  const { stdout, stderr } = readelf(['-W', '-a'], path);
  assert.equal(stderr, '');
  assert.doesNotMatch(stdout, /warning|error|corrupt|invalid/i);
  const sections = readelfSections(stdout);
  const byName = new Map(sections.map((s) => [s.name, s]));
  const symtab = byName.get('.symtab')!;
  const text = byName.get('.text.do_open')!;
  const klp = byName.get('.klp.rela.vmlinux..text.do_open');
  assert.ok(klp, 'klp relocation section present');
  assert.deepEqual([klp.type, klp.entsize, klp.flags, klp.link, klp.info, klp.align],
    ['RELA', 24, 'AIo', symtab.index, text.index, 8]);
  const loader = byName.get('.rela.text.do_open');
  assert.ok(loader, 'ordinary relocation section for the exported symbol');
  assert.deepEqual([loader.flags, loader.link, loader.info], ['I', symtab.index, text.index]);

  const symbols = readelfSymbols(stdout);
  const klpSyms = symbols.filter((s) => s.name.startsWith('.klp.sym.'));
  assert.deepEqual(klpSyms.map((s) => `${s.type} ${s.bind} ${s.vis} ${s.ndx} ${s.name}`).sort(), [
    'NOTYPE GLOBAL DEFAULT OS [0xff20] .klp.sym.vmlinux.check_perm,2',
    'NOTYPE GLOBAL DEFAULT OS [0xff20] .klp.sym.vmlinux.open_count,0',
  ]);
  assert.equal(symbols.find((s) => s.name === 'do_open')?.ndx, String(text.index));
  assert.equal(symbols.find((s) => s.name === 'printk')?.ndx, 'UND');

  const klpRelocs = stdout.split(/\n(?=Relocation section )/)
    .find((b) => b.startsWith("Relocation section '.klp.rela.vmlinux..text.do_open'"))?.split('\n\n')[0] ?? '';
  assert.match(klpRelocs, /R_X86_64_PC32\s+0+ \.klp\.sym\.vmlinux\.open_count,0 - [0-9a-f]+/);
  assert.match(klpRelocs, /R_X86_64_(PC32|PLT32)\s+0+ \.klp\.sym\.vmlinux\.check_perm,2 - 4/);
  assert.doesNotMatch(klpRelocs, /printk/);
});

test('our reader reads the livepatch object back; code and relocation targets match the original', () => {
  const out = parseElf(bytes, 'livepatch-fs.o');
  const klp = sectionByName(out, '.klp.rela.vmlinux..text.do_open')!;
  assert.equal(klp.type, SHT_RELA);
  assert.equal(klp.flags, KLP_RELA_FLAGS);
  const sym = out.symbols.find((s) => s.name === '.klp.sym.vmlinux.open_count,0')!;
  assert.deepEqual([sym.shndx, sym.bind, sym.type], [SHN_LIVEPATCH, STB_GLOBAL, STT_NOTYPE]);
  const doOpen = out.symbols.find((s) => s.name === 'do_open')!;
  assert.deepEqual([doOpen.bind, doOpen.type], [STB_GLOBAL, STT_FUNC]);
  assert.ok(out.symbols.every((s, i) => i === 0 || s.bind !== STB_LOCAL || i < out.symbols.findIndex((g) => g.bind !== STB_LOCAL)));

  // Both relocation tables together are the original relocations, symbol for symbol.
  const text = sectionByName(out, '.text.do_open')!;
  const relaSections = out.sections.filter((s) => s.type === SHT_RELA && s.info === text.index);
  assert.equal(relaSections.length, 2);
  const view = (r: { offset: bigint; type: number; addend: bigint }, name: string) => `${r.offset} ${r.type} ${name} ${r.addend}`;
  const original = relocationsFor(input, sectionByName(input, '.text.do_open')!).map((r) => {
    const s = input.symbols[r.symbolIndex];
    if (s.shndx === SHN_UNDEF || input.sections[s.shndx].name.startsWith('.rodata')) {
      return view(r, symbolDisplayName(input, s));
    }
    const name = klpTargetName(s);
    return view(r, klpSymbolName('vmlinux', name, name === 'check_perm' ? 2 : 0));
  }).sort();
  // The reader keys relocations by target, so read both tables directly from their bytes.
  const both = relaSections.flatMap((s) => {
    const rows = [];
    for (let o = 0; o < s.data.length; o += 24) {
      const info = s.data.readBigUInt64LE(o + 8);
      rows.push(view({ offset: s.data.readBigUInt64LE(o), type: Number(info & 0xffffffffn),
        addend: s.data.readBigInt64LE(o + 16) }, symbolDisplayName(out, out.symbols[Number(info >> 32n)])));
    }
    return rows;
  }).sort();
  assert.deepEqual(both, original);
  assert.equal(disassemble(path, '.text.do_open').replace(/\s+\S+: R_X86_64.*/g, ''),
    disassemble(join(dir, 'fs.o'), '.text.do_open').replace(/\s+\S+: R_X86_64.*/g, ''));
});

test('livepatch output is deterministic', () => {
  assert.ok(buildPatch().equals(bytes));
});
