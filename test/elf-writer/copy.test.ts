// Objects made from sections of a gcc-compiled object: readelf accepts them,
// our reader reads back what was written, gcc links them into a program that
// runs, and objdump shows the same code and relocations as in the original.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  SHF_ALLOC, SHT_PROGBITS, SHT_RELA, STB_GLOBAL, STB_LOCAL, STT_FILE, STT_SECTION,
} from '../../src/elf/constants.js';
import { parseElf, relocationsFor, sectionByName, symbolDisplayName, symbolSection } from '../../src/elf/reader.js';
import type { ElfFile, ElfSection } from '../../src/elf/reader.js';
import { ObjectBuilder, SectionCopier } from '../../src/elf/writer.js';
import { TspliceError } from '../../src/errors.js';
import { gcc, writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';
import { disassemble, readelf, readelfSections, readelfSymbols } from './helpers.js';

const dir = tempDir('tsplice-elfw-');
writeTree(dir, {
  'lib.c': `
    #include <stdio.h>
    int counter = 5;
    static int bias;
    static const int table[4] = { 7, 11, 13, 17 };
    __attribute__((noinline)) static int scale(int x) { return x * 3 + counter + table[x & 3] + bias; }
    __attribute__((noinline)) int compute(int x) { counter++; bias = 2; return scale(x) + 1; }
    void report(const char *who) {
      printf("hello %s: %d\\n", who, compute(4));
      printf("again %s: %d\\n", who, compute(1));
      puts("done");
    }
  `,
  'main.c': `
    void report(const char *);
    int main(void) { report("world"); return 0; }
  `,
});
gcc(dir, ['-O2', '-c', '-ffunction-sections', '-fdata-sections', 'lib.c', '-o', 'lib.o']);
gcc(dir, ['-O2', '-c', 'main.c', '-o', 'main.o']);
const input = parseElf(readFileSync(join(dir, 'lib.o')), 'lib.o');

/** Every allocated section with contents (code, data, rodata, unwind tables), in file order. */
const loadable = input.sections.filter((s) => (s.flags & SHF_ALLOC) !== 0n && s.type !== SHT_RELA && s.size > 0);
const textSections = loadable.filter((s) => s.name.startsWith('.text.')).map((s) => s.name);

function buildCopy(): Buffer {
  const builder = new ObjectBuilder({ fileName: 'lib.c' });
  new SectionCopier(builder, input).copySections(loadable);
  // Without it, ld warns that the object wants an executable stack.
  builder.addSection({ name: '.note.GNU-stack', type: SHT_PROGBITS, flags: 0n, addralign: 1, data: Buffer.alloc(0) });
  return builder.write();
}

const outPath = join(dir, 'copy.o');
const outBytes = buildCopy();
writeFileSync(outPath, outBytes);
const output = parseElf(outBytes, 'copy.o');

test('the copied sections are there for readelf, without any warning', () => {
  const { stdout, stderr } = readelf(['-W', '-a'], outPath);
  assert.equal(stderr, '');
  assert.doesNotMatch(stdout, /warning|error|corrupt|invalid/i);
  const sections = readelfSections(stdout);
  const byName = new Map(sections.map((s) => [s.name, s]));
  const symtab = byName.get('.symtab');
  assert.ok(symtab);
  for (const name of textSections) {
    const text = byName.get(name);
    assert.ok(text, `${name} present`);
    assert.equal(text.flags, 'AX');
    assert.equal(text.offset % text.align, 0, `${name} aligned`);
    const rela = byName.get(`.rela${name}`);
    if (relocationsFor(input, sectionByName(input, name)!).length === 0) continue;
    assert.ok(rela, `.rela${name} present`);
    assert.equal(rela.type, 'RELA');
    assert.equal(rela.flags, 'I');
    assert.equal(rela.link, symtab.index);
    assert.equal(rela.info, text.index);
    assert.equal(rela.entsize, 24);
  }
  const symbols = readelfSymbols(stdout);
  assert.deepEqual(symbols[0], { index: 0, value: 0n, size: 0, type: 'NOTYPE', bind: 'LOCAL', vis: 'DEFAULT', ndx: 'UND', name: '' });
  assert.equal(symbols[1].type, 'FILE');
  assert.equal(symbols[1].name, 'lib.c');
  const firstGlobal = symbols.findIndex((s) => s.bind !== 'LOCAL');
  assert.equal(symtab.info, firstGlobal, 'sh_info of .symtab is the first non-local symbol');
  assert.ok(symbols.slice(firstGlobal).every((s) => s.bind !== 'LOCAL'), 'no local after a global');
  const byIndex = new Map(sections.map((s) => [String(s.index), s.name]));
  const find = (name: string) => symbols.find((s) => s.name === name);
  assert.equal(find('report')?.bind, 'GLOBAL');
  assert.equal(byIndex.get(find('report')!.ndx), '.text.report');
  assert.equal(find('scale')?.bind, 'LOCAL');
  assert.equal(byIndex.get(find('scale')!.ndx), '.text.scale');
  assert.equal(find('printf')?.ndx, 'UND');
  assert.equal(find('counter')?.type, 'OBJECT');
  assert.ok(symbols.some((s) => s.type === 'SECTION' && s.name === '.rodata.table'), 'section symbol of .rodata.table');
  assert.match(stdout, /Relocation section '\.rela\.text\.report' at offset 0x[0-9a-f]+ contains \d+ entries/);
  assert.match(stdout, /R_X86_64_PLT32\s+0+ printf - 4/);
  assert.match(stdout, /R_X86_64_PLT32\s+0+ compute - 4/);
});

/** A relocation as a tool would show it: offset, type, symbol name (section name for section symbols), addend. */
function relocationView(elf: ElfFile, sectionName: string): string[] {
  const section = sectionByName(elf, sectionName);
  assert.ok(section, `${elf.name}: ${sectionName}`);
  return relocationsFor(elf, section).map((r) => {
    const sym = elf.symbols[r.symbolIndex];
    return `${r.offset} ${r.type} ${symbolDisplayName(elf, sym)} ${r.addend}`;
  });
}

test('our reader reads back the sections, symbols and relocations that were copied', () => {
  for (const s of loadable) {
    const copy = sectionByName(output, s.name);
    assert.ok(copy, s.name);
    assert.equal(copy.type, s.type);
    assert.equal(copy.flags, s.flags);
    assert.equal(copy.addralign, s.addralign);
    assert.equal(copy.entsize, s.entsize);
    assert.equal(copy.size, s.size);
    assert.ok(copy.data.equals(s.data), `${s.name} contents`);
    assert.equal(copy.offset % Math.max(1, copy.addralign), 0, `${s.name} offset aligned`);
    assert.deepEqual(relocationView(output, s.name), relocationView(input, s.name));
  }
  // Every named symbol defined in a copied section is there, with the same properties.
  for (const sym of input.symbols) {
    const section = symbolSection(input, sym);
    if (!section || !loadable.includes(section) || sym.type === STT_SECTION || sym.type === STT_FILE) continue;
    const copy = output.symbols.find((s) => s.name === sym.name && s.bind === sym.bind);
    assert.ok(copy, sym.name);
    assert.equal(copy.type, sym.type);
    assert.equal(copy.value, sym.value);
    assert.equal(copy.size, sym.size);
    assert.equal(symbolSection(output, copy)?.name, section.name);
  }
  const symtab = output.sections.find((s) => s.name === '.symtab');
  const firstGlobal = output.symbols.findIndex((s) => s.bind !== STB_LOCAL);
  assert.equal(symtab?.info, firstGlobal);
});

test('gcc links the copy with main into a program that runs like the original', () => {
  gcc(dir, ['main.o', 'lib.o', '-o', 'original']);
  gcc(dir, ['main.o', 'copy.o', '-o', 'from-copy']);
  const expected = execFileSync(join(dir, 'original'), { encoding: 'utf8' });
  assert.equal(expected, 'hello world: 28\nagain world: 24\ndone\n');
  assert.equal(execFileSync(join(dir, 'from-copy'), { encoding: 'utf8' }), expected);
});

test('a function copied alone with its relocations disassembles exactly as in the original', () => {
  // Only .text.report: the data and functions it uses stay behind, as references to globals
  // (compute, counter) — which the linker resolves against lib.o's definitions.
  const builder = new ObjectBuilder();
  const copier = new SectionCopier(builder, input);
  const report = sectionByName(input, '.text.report')!;
  const strings = relocationsFor(input, report)
    .map((r) => input.symbols[r.symbolIndex])
    .map((sym) => symbolSection(input, sym))
    .filter((s): s is ElfSection => s !== undefined && s.name.startsWith('.rodata'));
  copier.copySections([report, ...new Set(strings)]);
  const path = join(dir, 'report-only.o');
  writeFileSync(path, builder.write());
  const code = disassemble(path, '.text.report');
  assert.match(code, /R_X86_64_PLT32\s+compute-0x4/, 'the call to compute is still relocated');
  assert.equal(code, disassemble(join(dir, 'lib.o'), '.text.report'));
  assert.equal(readelf(['-W', '-a'], path).stderr, '');
  const out = parseElf(readFileSync(path), 'report-only.o');
  const compute = out.symbols.find((s) => s.name === 'compute');
  assert.equal(compute?.shndx, 0, 'compute became an undefined reference');
  assert.equal(compute?.bind, STB_GLOBAL);
});

test('all copied functions disassemble exactly as in the original', () => {
  for (const name of textSections) {
    assert.equal(disassemble(outPath, name), disassemble(join(dir, 'lib.o'), name), name);
  }
});

test('the same input gives the same bytes', () => {
  assert.ok(buildCopy().equals(outBytes));
});

test('a local symbol whose section is left behind is an error that names it', () => {
  const builder = new ObjectBuilder();
  const copier = new SectionCopier(builder, input);
  assert.throws(() => copier.copySection('.text.compute'), (e: unknown) => {
    assert.ok(e instanceof TspliceError);
    assert.equal(e.code, 'internal');
    assert.match(e.message, /scale|bias|\.bss|\.text\.scale/);
    return true;
  });
});

test('relocations of a slice (as for one entry of a special section) move with it and keep their symbols', () => {
  const builder = new ObjectBuilder();
  const copier = new SectionCopier(builder, input);
  const report = sectionByName(input, '.text.report')!;
  copier.copySections(loadable.filter((s) => s.name !== '.eh_frame'), { relocations: false });
  const start = 0x10n;
  const slice = relocationsFor(input, report).filter((r) => r.offset >= start);
  const moved = copier.translate(slice, -start);
  assert.ok(moved.length > 0);
  assert.deepEqual(moved.map((r) => r.offset), slice.map((r) => r.offset - start));
  assert.deepEqual(moved.map((r) => r.symbol?.name || (r.symbol?.section as { name: string }).name),
    slice.map((r) => symbolDisplayName(input, input.symbols[r.symbolIndex])));
  // The same input symbol always maps to the same output symbol.
  assert.equal(copier.symbol(slice[0].symbolIndex), moved[0].symbol);
});
