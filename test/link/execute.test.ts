// Linked code runs: a test program maps a block, says where it is and where
// its own symbols are, receives the bytes tsplice's linker made for that
// address and calls the function in them. The function uses a string literal,
// a global of the program, a thread-local of the program, libc's snprintf (far
// away: through a call stub) and a new static variable (placed in the block).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseElf } from '../../src/elf/reader.js';
import { layoutBlock } from '../../src/link/layout.js';
import { linkBlock } from '../../src/link/link.js';
import type { SymbolResolver } from '../../src/link/resolution.js';
import { compileObject, gcc, writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';

const HOST = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
int shared_counter = 5;
__thread int tls_counter = 100;
int main(int argc, char **argv) {
  alarm(30);
  if (argc < 3) return 1;
  size_t size = strtoul(argv[1], 0, 0), entry = strtoul(argv[2], 0, 0);
  /* Near our own data, so that 32-bit PC-relative references reach it. */
  uintptr_t hint = ((uintptr_t)&shared_counter + 0x10000000) & ~(uintptr_t)0xfff;
  char *block = mmap((void *)hint, size, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED) return 3;
  printf("block %p\\nshared_counter %p\\nsnprintf %p\\ntls_counter %ld\\n", (void *)block, (void *)&shared_counter,
         dlsym(RTLD_DEFAULT, "snprintf"), (long)((char *)&tls_counter - (char *)__builtin_thread_pointer()));
  fflush(stdout);
  for (size_t got = 0; got < size;) {
    ssize_t n = read(0, block + got, size - got);
    if (n <= 0) return 4;
    got += (size_t)n;
  }
  int (*fn)(char *, int) = (int (*)(char *, int))(block + entry);
  char buf[80];
  for (int i = 0; i < 2; i++) {
    int r = fn(buf, sizeof buf);
    printf("%d %s\\n", r, buf);
  }
  printf("shared_counter=%d tls_counter=%d\\n", shared_counter, tls_counter);
  return 0;
}
`;

const PATCHED = `
#include <stdio.h>
extern int shared_counter;
extern __thread int tls_counter;
static int calls;
int patched(char *out, int n) {
  calls++;
  shared_counter += 10;
  tls_counter += 1;
  return snprintf(out, n, "value=%d calls=%d tls=%d", shared_counter, calls, tls_counter);
}
`;

interface HostFacts {
  block: bigint;
  shared_counter: bigint;
  snprintf: bigint;
  tls_counter: bigint;
}

/** Start the host, answer its announcement with `produce`, return everything it printed. */
function runHost(exe: string, args: string[], produce: (facts: HostFacts) => Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(exe, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    let out = '';
    let answered = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      const lines = out.split('\n');
      if (answered || lines.length < 5) return;
      answered = true;
      try {
        const value = (name: string): bigint => {
          const line = lines.find((l) => l.startsWith(`${name} `));
          if (!line) throw new Error(`host did not print ${name}: ${out}`);
          return BigInt(line.slice(name.length + 1));
        };
        const facts: HostFacts = {
          block: value('block'), shared_counter: value('shared_counter'), snprintf: value('snprintf'),
          tls_counter: value('tls_counter'),
        };
        child.stdin.end(produce(facts));
      } catch (e) {
        child.kill('SIGKILL');
        reject(e);
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`host exited with ${code ?? signal}: ${out}`));
    });
  });
}

const VARIANTS: Array<{ name: string; unit: string[]; host: string[] }> = [
  { name: 'O2 -fPIC (TLS general-dynamic relaxed to local-exec)', unit: ['-O2', '-fPIC'], host: ['-fPIE', '-pie'] },
  { name: 'O0 PIE (TLS initial-exec through a local GOT slot)', unit: ['-O0'], host: ['-fPIE', '-pie'] },
  { name: 'O2 non-PIC in a non-PIE program (absolute addresses)', unit: ['-O2', '-fno-pic'], host: ['-no-pie'] },
];

for (const variant of VARIANTS) {
  test(`linked code runs in a real process: ${variant.name}`, async () => {
    const dir = tempDir();
    writeTree(dir, { 'host.c': HOST });
    gcc(dir, ['-O1', ...variant.host, 'host.c', '-o', 'host']);
    const objPath = compileObject(dir, 'patched', PATCHED, [...variant.unit, '-ffunction-sections', '-fdata-sections']);
    const elf = parseElf(readFileSync(objPath), objPath);
    const layout = layoutBlock({ elf, install: ['.text.patched'], newSections: ['.bss.calls'] });
    const entry = layout.sections.find((p) => p.section.name === '.text.patched')?.offset;
    assert.equal(entry, 0);
    assert.ok(layout.sections.some((p) => p.section.name === '.bss.calls' && p.sectionClass === 'data'));

    const asked: string[] = [];
    const slots: string[] = [];
    const output = await runHost(join(dir, 'host'), [String(layout.size), String(entry)], (facts) => {
      const resolver: SymbolResolver = (ref) => {
        asked.push(`${ref.name}:${ref.access}`);
        switch (ref.name) {
          case 'shared_counter': return { kind: 'address', value: facts.shared_counter };
          case 'snprintf': return { kind: 'address', value: facts.snprintf };
          case 'tls_counter': return { kind: 'tpoff', value: facts.tls_counter };
          default: return undefined;
        }
      };
      const block = linkBlock(layout, facts.block, resolver);
      assert.equal(block.functions.get('patched'), facts.block);
      // libc is far from the block: the call goes through a stub.
      assert.ok(block.gotSlots.some((g) => g.holds === 'stub' && g.symbol === 'snprintf' && g.value === facts.snprintf));
      slots.push(...block.gotSlots.map((g) => g.holds));
      return block.bytes;
    });
    assert.deepEqual(output.split('\n').slice(4), [
      '24 value=15 calls=1 tls=101',
      '24 value=25 calls=2 tls=102',
      'shared_counter=25 tls_counter=102',
      '',
    ]);
    assert.ok(asked.includes('snprintf:call'));
    const tlsAccess = variant.unit.includes('-fPIC') ? 'tls_counter:tlsgd' : 'tls_counter:gottpoff';
    assert.ok(asked.includes(tlsAccess), `${tlsAccess} asked (${asked.join(', ')})`);
    if (tlsAccess.endsWith('gottpoff')) assert.ok(slots.includes('tpoff'), 'initial-exec TLS uses a local slot');
    assert.ok(!asked.some((a) => a.startsWith('calls:')), 'the new static is placed, not looked up');
  });
}
