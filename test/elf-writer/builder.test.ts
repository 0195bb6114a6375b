// Objects built from scratch: data relocations, alignment, absolute and common
// symbols, more sections than 16-bit indices hold, and the builder's refusals.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, SHN_ABS, SHN_COMMON, SHN_LORESERVE, SHN_XINDEX, SHT_NOBITS, SHT_PROGBITS,
  SHT_SYMTAB_SHNDX, STB_GLOBAL, STB_LOCAL, STT_FUNC, STT_OBJECT, STV_HIDDEN,
} from '../../src/elf/constants.js';
import { parseElf, relocationsFor, sectionByName, symbolDisplayName } from '../../src/elf/reader.js';
import { R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32 } from '../../src/elf/x86_64.js';
import { ObjectBuilder } from '../../src/elf/writer.js';
import type { OutSection } from '../../src/elf/writer.js';
import { TspliceError } from '../../src/errors.js';
import { gcc, writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';
import { readelf, readelfSections, readelfSymbols } from './helpers.js';

const dir = tempDir('tsplice-elfw-b-');
const noteStack = { name: '.note.GNU-stack', type: SHT_PROGBITS, flags: 0n, addralign: 1, data: Buffer.alloc(0) };

function handBuilt(): Buffer {
  const b = new ObjectBuilder({ fileName: 'hand.s' });
  const msg = b.addSection({ name: '.rodata.msg', type: SHT_PROGBITS, flags: SHF_ALLOC, addralign: 1,
    data: Buffer.from('from the builder\0', 'latin1') });
  // An odd-sized section before a 64-aligned one: the writer must pad.
  b.addSection({ name: '.rodata.pad', type: SHT_PROGBITS, flags: SHF_ALLOC, addralign: 1, data: Buffer.from([1, 2, 3]) });
  const blob = b.addSection({ name: '.data.blob', type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_WRITE, addralign: 64,
    data: Buffer.alloc(64, 0x5a) });
  const zero = b.addSection({ name: '.bss.zero', type: SHT_NOBITS, flags: SHF_ALLOC | SHF_WRITE, addralign: 32, size: 128 });
  const ptrs = b.addSection({ name: '.data.ptrs', type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_WRITE, addralign: 8,
    data: Buffer.alloc(24) });
  // int get_blob_byte(int i) { return blob[i]; }  movslq %edi,%rdi; lea blob(%rip),%rax; movzbl (%rax,%rdi),%eax; ret
  const code = b.addSection({ name: '.text.get_blob_byte', type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_EXECINSTR,
    addralign: 16, data: Buffer.from('4863ff488d0500000000' + '0fb60438' + 'c3', 'hex') });
  const blobSym = b.addSymbol({ name: 'blob', type: STT_OBJECT, bind: STB_LOCAL, section: blob, value: 0n, size: 64 });
  b.addSymbol({ name: 'ptrs', type: STT_OBJECT, bind: STB_GLOBAL, section: ptrs, value: 0n, size: 24 });
  b.addSymbol({ name: 'zero_area', type: STT_OBJECT, bind: STB_GLOBAL, visibility: STV_HIDDEN, section: zero, value: 0n, size: 128 });
  b.addSymbol({ name: 'get_blob_byte', type: STT_FUNC, bind: STB_GLOBAL, section: code, value: 0n, size: 15 });
  b.addSymbol({ name: 'magic_abs', type: STT_OBJECT, bind: STB_GLOBAL, section: 'abs', value: 0x1234n, size: 0 });
  b.addSymbol({ name: 'shared_common', type: STT_OBJECT, bind: STB_GLOBAL, section: 'common', value: 16n, size: 8 });
  b.addRelocations(ptrs, [
    { offset: 0n, type: R_X86_64_64, symbol: b.sectionSymbol(msg), addend: 5n },
    { offset: 8n, type: R_X86_64_64, symbol: blobSym, addend: 0n },
    { offset: 16n, type: R_X86_64_64, symbol: b.sectionSymbol(zero), addend: 0n },
  ]);
  b.addRelocations(code, [{ offset: 6n, type: R_X86_64_PC32, symbol: blobSym, addend: -4n }]);
  b.addSection({ ...noteStack });
  return b.write();
}

const handPath = join(dir, 'hand.o');
const handBytes = handBuilt();
writeFileSync(handPath, handBytes);

test('a hand-built object: readelf accepts it and sees what was built', () => {
  const { stdout, stderr } = readelf(['-W', '-a'], handPath);
  assert.equal(stderr, '');
  assert.doesNotMatch(stdout, /warning|error|corrupt|invalid/i);
  const sections = readelfSections(stdout);
  for (const s of sections) assert.equal(s.offset % Math.max(1, s.align), 0, `${s.name} at ${s.offset} aligned to ${s.align}`);
  const blob = sections.find((s) => s.name === '.data.blob')!;
  assert.equal(blob.align, 64);
  const bss = sections.find((s) => s.name === '.bss.zero')!;
  assert.deepEqual([bss.type, bss.size], ['NOBITS', 128]);
  const symbols = readelfSymbols(stdout);
  const show = (n: string) => symbols.find((s) => s.name === n);
  assert.deepEqual([show('magic_abs')?.ndx, show('magic_abs')?.value], ['ABS', 0x1234n]);
  assert.deepEqual([show('shared_common')?.ndx, show('shared_common')?.value], ['COM', 16n]);
  assert.equal(show('zero_area')?.vis, 'HIDDEN');
  assert.match(stdout, /R_X86_64_64\s+0+ \.rodata\.msg \+ 5/);
  assert.match(stdout, /R_X86_64_PC32\s+0+ blob - 4/);
});

test('a hand-built object links and its relocations point where they should', () => {
  writeTree(dir, {
    'use.c': `
      #include <stdio.h>
      #include <stdint.h>
      extern const char *ptrs[3];
      extern long shared_common;
      extern char magic_abs[];
      int get_blob_byte(int);
      int main(void) {
        shared_common += 41;
        printf("%s|%x|%d|%d|%lx|%ld\\n", ptrs[0], get_blob_byte(63) & 0xff,
          (int)((uintptr_t)ptrs[1] % 64), ptrs[2][127], (unsigned long)(uintptr_t)magic_abs, shared_common + 1);
        return 0;
      }
    `,
  });
  gcc(dir, ['-O2', '-no-pie', 'use.c', 'hand.o', '-o', 'use']);
  const out = execFileSync(join(dir, 'use'), { encoding: 'utf8' });
  assert.equal(out, 'the builder|5a|0|0|1234|42\n');
});

test('our reader reads a hand-built object back', () => {
  const elf = parseElf(handBytes, 'hand.o');
  const ptrs = sectionByName(elf, '.data.ptrs')!;
  assert.deepEqual(relocationsFor(elf, ptrs).map((r) => `${r.offset} ${r.type} ${symbolDisplayName(elf, elf.symbols[r.symbolIndex])} ${r.addend}`),
    ['0 1 .rodata.msg 5', '8 1 blob 0', '16 1 .bss.zero 0']);
  assert.equal(elf.symbols.find((s) => s.name === 'magic_abs')?.shndx, SHN_ABS);
  assert.equal(elf.symbols.find((s) => s.name === 'shared_common')?.shndx, SHN_COMMON);
  assert.equal(elf.symbols.find((s) => s.name === 'zero_area')?.visibility, STV_HIDDEN);
  assert.equal(sectionByName(elf, '.bss.zero')?.size, 128);
  assert.ok(handBuilt().equals(handBytes), 'deterministic');
});

test('more than 65280 sections: extended indices that readelf, our reader and ld all follow', () => {
  const count = 65300;
  const b = new ObjectBuilder();
  let last: OutSection | undefined;
  for (let i = 0; i < count; i++) {
    // mov $i, %eax; ret
    const data = Buffer.from([0xb8, 0, 0, 0, 0, 0xc3]);
    data.writeUInt32LE(i, 1);
    last = b.addSection({ name: `.text.f${i}`, type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_EXECINSTR, addralign: 16, data });
  }
  const fLast = b.addSymbol({ name: 'f_last', type: STT_FUNC, bind: STB_LOCAL, section: last!, value: 0n, size: 6 });
  // A caller whose own section and relocation section also lie beyond 0xff00: call f_last; add $1, %eax; ret
  const caller = b.addSection({ name: '.text.caller', type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_EXECINSTR, addralign: 16,
    data: Buffer.from('e80000000083c001c3', 'hex') });
  b.addSymbol({ name: 'caller', type: STT_FUNC, bind: STB_GLOBAL, section: caller, value: 0n, size: 9 });
  b.addRelocations(caller, [{ offset: 1n, type: R_X86_64_PLT32, symbol: fLast, addend: -4n }]);
  b.addSection({ ...noteStack });
  const bytes = b.write();
  const path = join(dir, 'many.o');
  writeFileSync(path, bytes);

  assert.equal(bytes.readUInt16LE(60), 0, 'e_shnum is 0: the count is in section 0');
  assert.equal(bytes.readUInt16LE(62), SHN_XINDEX, 'e_shstrndx is SHN_XINDEX');
  const elf = parseElf(bytes, 'many.o');
  const callerIndex = sectionByName(elf, '.text.caller')!.index;
  assert.ok(callerIndex > SHN_LORESERVE);
  assert.ok(elf.sections.some((s) => s.type === SHT_SYMTAB_SHNDX));
  assert.equal(elf.symbols.find((s) => s.name === 'caller')?.shndx, callerIndex);
  const rel = relocationsFor(elf, elf.sections[callerIndex]);
  assert.equal(elf.symbols[rel[0].symbolIndex].name, 'f_last');
  assert.equal(elf.symbols.find((s) => s.name === 'f_last')?.shndx, count);

  const { stdout, stderr } = readelf(['-W', '-h', '-S', '-s', '-r'], path);
  assert.equal(stderr, '');
  assert.doesNotMatch(stdout, /warning|error|corrupt|invalid/i);
  assert.match(stdout, new RegExp(`Number of section headers:\\s+0 \\(${elf.sections.length}\\)`));
  const symbols = readelfSymbols(stdout);
  assert.equal(symbols.find((s) => s.name === 'caller')?.ndx, String(callerIndex));
  assert.match(stdout, /R_X86_64_PLT32\s+0+ f_last - 4/);

  writeTree(dir, { 'many-main.c': '#include <stdio.h>\nint caller(void);\nint main(void) { printf("%d\\n", caller()); return 0; }\n' });
  gcc(dir, ['-O2', 'many-main.c', 'many.o', '-o', 'many']);
  assert.equal(execFileSync(join(dir, 'many'), { encoding: 'utf8' }), `${count}\n`);
});

test('the builder refuses inconsistent input with a clear internal error', () => {
  const expectMisuse = (fn: () => unknown, pattern: RegExp) => assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TspliceError, String(e));
    assert.equal(e.code, 'internal');
    assert.match(e.message, pattern);
    return true;
  });
  const text = () => ({ name: '.text.x', type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_EXECINSTR, addralign: 16,
    data: Buffer.from('c3', 'hex') });

  const other = new ObjectBuilder().addSection(text());
  expectMisuse(() => new ObjectBuilder().addSymbol({ name: 'x', type: STT_FUNC, bind: STB_GLOBAL, section: other, value: 0n, size: 1 }),
    /not part of this object/);
  expectMisuse(() => new ObjectBuilder().addSection({ ...text(), addralign: 12 }), /not a power of two/);
  expectMisuse(() => new ObjectBuilder().addSymbol({ name: 'x', type: STT_FUNC, bind: STB_GLOBAL, section: 5, value: 0n, size: 0 }),
    /reserved/);

  const b1 = new ObjectBuilder();
  const t1 = b1.addSection(text());
  const stray = { name: 'stray', type: STT_FUNC, bind: STB_GLOBAL, value: 0n, size: 0 };
  b1.addRelocations(t1, [{ offset: 0n, type: R_X86_64_PC32, symbol: stray, addend: -4n }]);
  expectMisuse(() => b1.write(), /stray.*not added/);

  const b2 = new ObjectBuilder();
  const t2 = b2.addSection(text());
  const ext = b2.addSymbol({ name: 'ext', type: STT_FUNC, bind: STB_GLOBAL, value: 0n, size: 0 });
  b2.addRelocations(t2, [{ offset: 0n, type: R_X86_64_PC32, symbol: ext, addend: -4n }]);
  expectMisuse(() => b2.write(), /outside \.text\.x/);

  const b3 = new ObjectBuilder();
  const t3 = b3.addSection(text());
  b3.addSymbol({ name: 'dup', type: STT_FUNC, bind: STB_GLOBAL, section: t3, value: 0n, size: 1 });
  b3.addSymbol({ name: 'dup', type: STT_FUNC, bind: STB_GLOBAL, section: t3, value: 0n, size: 1 });
  expectMisuse(() => b3.write(), /dup is defined twice/);

  const b4 = new ObjectBuilder();
  const t4 = b4.addSection(text());
  b4.addSymbol({ name: 'big', type: STT_FUNC, bind: STB_GLOBAL, section: t4, value: 0n, size: 2 });
  expectMisuse(() => b4.write(), /lies outside section \.text\.x/);

  const b5 = new ObjectBuilder();
  const t5 = b5.addSection(text());
  const t6 = b5.addSection({ ...text(), name: '.text.y' });
  b5.addRelocations(t5, [], { name: '.rela.custom' });
  expectMisuse(() => b5.addRelocations(t6, [], { name: '.rela.custom' }), /already applies to \.text\.x/);
});
