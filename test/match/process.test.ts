// Run-pre matching against a live process through /proc/PID/mem: a PIE
// executable and a shared library at their load biases, with GOT slots as
// the dynamic linker filled them.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PT_LOAD } from '../../src/elf/constants.js';
import { parseElf, type ElfFile } from '../../src/elf/reader.js';
import { createRunningImage } from '../../src/match/image.js';
import { ProcessMemoryReader } from '../../src/match/memory.js';
import { preFunctions } from '../../src/match/pre.js';
import { matchUnit } from '../../src/match/unit.js';
import { writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';
import { build, loadPre, nmAddress, tpoffFromReadelf } from './fixture.js';
import { LIB_C, UTIL_C } from './sources.js';

const dir = tempDir();
writeTree(dir, {
  'util.c': UTIL_C,
  'lib.c': LIB_C,
  'main.c': `
    #include <stdio.h>
    #include <unistd.h>
    int report(int);
    int lib_api(int);
    int main(void) {
      fputs("", stderr);
      report(1);
      lib_api(2);
      printf("ready\\n");
      fflush(stdout);
      pause();
      return 0;
    }
  `,
});

/** Load bias of `path` in process `pid`: where its first page is mapped minus its lowest link address. */
function loadBias(pid: number, path: string, elf: ElfFile): bigint {
  const line = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .find((l) => l.endsWith(` ${path}`) && l.split(/\s+/)[2] === '00000000');
  if (!line) throw new Error(`${path} is not mapped in ${pid}`);
  const start = BigInt('0x' + line.split('-')[0]);
  const lowest = elf.segments.filter((p) => p.type === PT_LOAD).reduce((m, p) => (p.vaddr < m ? p.vaddr : m), 2n ** 64n);
  return start - (lowest & ~0xfffn);
}

function startAndWait(exe: string): Promise<ChildProcess> {
  const child = spawn(exe, [], { stdio: ['ignore', 'pipe', 'ignore'] });
  after(() => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`fixture exited early (${code})`)));
  });
}

test('matching a running process through /proc/PID/mem', async () => {
  const lib = build(dir, ['lib.c'], 'libproc.so', ['-O2', '-fPIC'], ['-shared']);
  const app = build(dir, ['util.c', 'main.c'], 'proc-app', ['-O2'], ['-L.', '-lproc', `-Wl,-rpath,${dir}`]);
  const child = await startAndWait(app.output);
  const pid = child.pid!;
  const reader = new ProcessMemoryReader(pid);
  try {
    const exeElf = parseElf(readFileSync(app.output), app.output);
    const exeBias = loadBias(pid, app.output, exeElf);
    assert.notEqual(exeBias, 0n, 'PIE loaded at a random address');
    const exe = createRunningImage(exeElf, exeBias, app.output);
    const m = matchUnit(preFunctions(loadPre(app.objects[0])), exe, reader);
    for (const fn of ['report', 'step', 'helper', 'finish']) {
      assert.equal(m.functions.get(fn)?.address, nmAddress(app.output, fn) + exeBias);
    }
    assert.equal(m.symbols.get('hidden_total')?.address, nmAddress(app.output, 'hidden_total') + exeBias);
    const stderrCopy = nmAddress(app.output, 'stderr') + exeBias;
    assert.equal(m.symbols.get('stderr')?.address, stderrCopy);
    assert.equal(m.symbols.get('tls_hits')?.tls?.tpoff, tpoffFromReadelf(app.output, 'tls_hits'));

    const libPath = join(dir, 'libproc.so');
    const libElf = parseElf(readFileSync(libPath), libPath);
    const libBias = loadBias(pid, libPath, libElf);
    const shared = createRunningImage(libElf, libBias, libPath);
    const l = matchUnit(preFunctions(loadPre(lib.objects[0])), shared, reader);
    assert.equal(l.functions.get('lib_api')?.address, nmAddress(libPath, 'lib_api') + libBias);
    // GOT slots as bound by ld.so: stderr is the executable's copy, lib_counter the library's own.
    assert.equal(l.symbols.get('stderr')?.got?.value, stderrCopy);
    assert.equal(l.symbols.get('lib_counter')?.got?.value, nmAddress(libPath, 'lib_counter') + libBias);
    assert.equal(l.symbols.get('lib_other')?.plt?.symbol, 'lib_other');
  } finally {
    reader.close();
  }
});
