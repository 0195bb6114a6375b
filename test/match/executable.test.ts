// Run-pre matching against executables read from the linked file: -O0 and
// -O2, PIE and non-PIE, with and without IBT (endbr64 + .plt.sec).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { writeTree } from '../helpers/cc.js';
import { MAIN_C, UTIL_C } from './sources.js';
import { tempDir } from '../helpers/tmp.js';
import {
  build, disassemble, dynamicRelocations, fileStringAddress, literalAddress, loadFile, loadPre, matchFile, nmAddress,
  tpoffFromReadelf,
} from './fixture.js';

const dir = tempDir();
writeTree(dir, { 'util.c': UTIL_C, 'main.c': MAIN_C });

const configs: Array<{ name: string; flags: string[]; link?: string[]; pie: boolean }> = [
  { name: 'O0-pie', flags: ['-O0'], pie: true },
  { name: 'O2-pie', flags: ['-O2'], pie: true },
  { name: 'O0-nopie', flags: ['-O0', '-no-pie'], pie: false },
  { name: 'O2-nopie', flags: ['-O2', '-no-pie'], pie: false },
  { name: 'O2-ibt', flags: ['-O2', '-fcf-protection'], link: ['-Wl,-z,ibtplt'], pie: true },
];

for (const config of configs) {
  test(`executable ${config.name}: functions match and symbols resolve`, () => {
    const built = build(dir, ['util.c', 'main.c'], config.name, config.flags, config.link);
    const exe = built.output;
    const m = matchFile(built.objects[0], exe);

    for (const fn of ['report', 'step', 'helper', 'finish']) {
      assert.equal(m.functions.get(fn)?.address, nmAddress(exe, fn), `${fn} matched at its symbol`);
    }
    // Static function, static and global data, by relocations of the pre code.
    assert.equal(m.symbols.get('helper')?.address, nmAddress(exe, 'helper'));
    assert.equal(m.symbols.get('finish')?.address, nmAddress(exe, 'finish'));
    assert.equal(m.symbols.get('hidden_total')?.address, nmAddress(exe, 'hidden_total'));
    assert.equal(m.symbols.get('counter')?.address, nmAddress(exe, 'counter'));

    // String literals: where the pre code's literal is, the linked file has the same text.
    const preElf = loadPre(built.objects[0]);
    for (const text of ['report %d\n', 'total %d %s\n', 'units']) {
      assert.equal(literalAddress(m, preElf, text), fileStringAddress(exe, text), `literal ${JSON.stringify(text)}`);
    }

    // glibc functions through the PLT.
    const { elf } = loadFile(exe);
    for (const fn of ['printf', 'fprintf']) {
      const plt = m.symbols.get(fn)?.plt;
      assert.equal(plt?.symbol, fn);
      const section = elf.sections.find((s) => plt!.stub >= s.addr && plt!.stub < s.addr + BigInt(s.size));
      assert.match(section?.name ?? '', config.name.includes('ibt') ? /^\.plt\.sec$/ : /^\.plt/);
    }

    // stderr: non-PIC code refers to it directly; the linker made a copy in the executable.
    assert.equal(m.symbols.get('stderr')?.address, nmAddress(exe, 'stderr'));
    assert.ok(dynamicRelocations(exe).some((l) => /R_X86_64_COPY.*stderr/.test(l)), 'stderr is copy-relocated');

    // TLS in an executable: offsets from the thread pointer.
    assert.equal(m.symbols.get('tls_hits')?.tls?.tpoff, tpoffFromReadelf(exe, 'tls_hits'));
    assert.equal(m.symbols.get('tls_local')?.tls?.tpoff, tpoffFromReadelf(exe, 'tls_local'));

    // The function as a whole: same size as the running symbol.
    assert.ok((m.functions.get('report')?.size ?? 0) > 0);
  });
}

test('a tail call that the normal build turned into a short jump still matches', () => {
  const built = build(dir, ['util.c', 'main.c'], 'tail', ['-O2']);
  const exe = built.output;
  // Independent check that the fixture has the case: objdump shows a 2-byte jmp (eb) from step to finish.
  assert.match(disassemble(exe, 'step'), /\teb [0-9a-f]{2}\s+\tjmp\s+[0-9a-f]+ <finish>/);
  const m = matchFile(built.objects[0], exe);
  assert.equal(m.symbols.get('finish')?.address, nmAddress(exe, 'finish'));
  assert.equal(m.functions.get('step')?.address, nmAddress(exe, 'step'));
});
