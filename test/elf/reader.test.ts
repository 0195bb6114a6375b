import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ET_DYN, ET_EXEC, ET_REL, STT_FUNC, STB_LOCAL } from '../../src/elf/constants.js';
import { parseElf, relocationsFor, sectionByName, symbolDisplayName } from '../../src/elf/reader.js';
import { R_X86_64_PLT32, relocationName } from '../../src/elf/x86_64.js';
import { TspliceError } from '../../src/errors.js';
import { gcc, writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
writeTree(dir, {
  'lib.c': `
    #include <stdio.h>
    __thread int counter;
    static int helper(int x) { return x * 3 + counter; }
    int lib_value(int x) { counter++; fprintf(stderr, "v\\n"); return helper(x); }
  `,
  'main.c': `
    #include <stdio.h>
    int lib_value(int);
    static int twice(int x) { return 2 * x; }
    int main(void) { printf("%d\\n", twice(lib_value(1))); return 0; }
  `,
});
gcc(dir, ['-O2', '-c', '-ffunction-sections', '-fdata-sections', 'lib.c', '-o', 'lib.o']);
gcc(dir, ['-O2', '-fPIC', '-shared', '-Wl,--build-id', 'lib.c', '-o', 'libv.so']);
gcc(dir, ['-O2', 'main.c', '-L.', '-lv', '-o', 'app-pie']);
gcc(dir, ['-O2', '-no-pie', 'main.c', '-L.', '-lv', '-o', 'app-nopie']);

/** readelf's view of a symbol table, to check ours against an independent reader. */
function readelfSymbols(path: string, table: '.symtab' | '.dynsym'): string[] {
  const out = execFileSync('readelf', ['-W', '--syms', path], { encoding: 'utf8' });
  const section = out.split(/\n(?=Symbol table ')/).find((s) => s.startsWith(`Symbol table '${table}'`)) ?? '';
  return section
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => /^\d+:$/.test(f[0] ?? ''))
    .map((f) => `${BigInt('0x' + f[1]).toString(16)} ${f[7] ?? ''}`.trim());
}

test('relocatable object: sections, symbols, relocations', () => {
  const elf = parseElf(readFileSync(join(dir, 'lib.o')), 'lib.o');
  assert.equal(elf.type, ET_REL);
  const text = sectionByName(elf, '.text.lib_value');
  assert.ok(text, 'function section present');
  const relocs = relocationsFor(elf, text);
  const calls = relocs.filter((r) => r.type === R_X86_64_PLT32).map((r) => elf.symbols[r.symbolIndex].name);
  assert.ok(calls.includes('fwrite') || calls.includes('fprintf'), `calls: ${calls}`);
  const helper = elf.symbols.find((s) => s.name === 'lib_value');
  assert.equal(helper?.type, STT_FUNC);
  const expected = readelfSymbols(join(dir, 'lib.o'), '.symtab');
  const ours = elf.symbols.map((s) => `${s.value.toString(16)} ${symbolDisplayName(elf, s)}`.trim());
  assert.deepEqual(ours, expected);
  assert.equal(relocationName(R_X86_64_PLT32), 'R_X86_64_PLT32');
});

test('executables (PIE and not) and shared objects', () => {
  const pie = parseElf(readFileSync(join(dir, 'app-pie')), 'app-pie');
  const nopie = parseElf(readFileSync(join(dir, 'app-nopie')), 'app-nopie');
  const so = parseElf(readFileSync(join(dir, 'libv.so')), 'libv.so');
  assert.equal(pie.type, ET_DYN);
  assert.equal(nopie.type, ET_EXEC);
  assert.equal(so.type, ET_DYN);
  assert.ok(pie.needed.includes('libv.so'));
  assert.match(so.buildId ?? '', /^[0-9a-f]{40}$/);
  const twice = nopie.symbols.find((s) => s.name === 'twice' || s.name.startsWith('twice.'));
  if (twice) assert.equal(twice.bind, STB_LOCAL);
  assert.deepEqual(
    so.dynamicSymbols.map((s) => `${s.value.toString(16)} ${s.name}${s.version ? '@' + s.version : ''}`.trim()),
    readelfSymbols(join(dir, 'libv.so'), '.dynsym').map((s) => s.replace(/ \(\d+\)$/, '')),
  );
  const fprintf = so.dynamicSymbols.find((s) => s.name === 'fprintf' || s.name === 'fwrite');
  assert.match(fprintf?.version ?? '', /^GLIBC_/);
  assert.ok(pie.dynamicRelocations.has('.rela.dyn'));
});

test('malformed input is a bad_input error naming the file', () => {
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['text', Buffer.from('hello, this is not an ELF file at all, but it is long enough to hold a header....')],
    ['elf32', Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]), Buffer.alloc(60)])],
  ];
  const real = readFileSync(join(dir, 'lib.o'));
  const badShoff = Buffer.from(real);
  badShoff.writeBigUInt64LE(BigInt(real.length + 100), 40);
  cases.push(['section table past end', badShoff]);
  cases.push(['truncated', real.subarray(0, real.length - 10)]);
  for (const [label, buf] of cases) {
    assert.throws(() => parseElf(buf, `case-${label}`), (e: unknown) => {
      assert.ok(e instanceof TspliceError, `${label}: ${e}`);
      assert.equal(e.code, 'bad_input');
      assert.match(e.message, new RegExp(`^case-${label}: (malformed ELF file|.*)`));
      return true;
    });
  }
});

test('fuzz: thousands of truncations and byte flips never crash or hang', () => {
  const inputs = ['lib.o', 'libv.so', 'app-pie'].map((f) => readFileSync(join(dir, f)));
  // Deterministic PRNG so a failure is reproducible from the printed iteration.
  let seed = 0x9e3779b9;
  const rand = (n: number): number => {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed % n;
  };
  let parsed = 0;
  let rejected = 0;
  for (let i = 0; i < 3000; i++) {
    const base = inputs[i % inputs.length];
    let buf: Buffer;
    if (i % 3 === 0) {
      buf = base.subarray(0, rand(base.length));
    } else {
      buf = Buffer.from(base);
      const flips = 1 + rand(8);
      for (let f = 0; f < flips; f++) {
        // Bias half the flips towards the headers, where the structure lives.
        const pos = f % 2 === 0 ? rand(Math.min(buf.length, 128)) : rand(buf.length);
        buf[pos] = rand(256);
      }
      if (i % 3 === 2) {
        const shoff = Number(buf.readBigUInt64LE(40));
        if (shoff > 0 && shoff < buf.length - 64) {
          const pos = shoff + rand(buf.length - shoff);
          buf[pos] = rand(256);
        }
      }
    }
    try {
      parseElf(buf, `fuzz-${i}`);
      parsed++;
    } catch (e) {
      if (!(e instanceof TspliceError) || e.code !== 'bad_input') {
        assert.fail(`iteration ${i}: unexpected ${e instanceof Error ? e.stack : e}`);
      }
      rejected++;
    }
  }
  assert.ok(rejected > 500, `most corruptions are detected (rejected ${rejected}, parsed ${parsed})`);
});
