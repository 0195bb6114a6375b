// Boots the pinned Debian kernel under QEMU (TCG) and runs commands in it. The
// kernel package is downloaded into the cache on the first run (about 26 MB).

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isTspliceError } from '../../src/errors.js';
import { kernelRelease } from '../../src/targets/kernel/vm/kernel-packages.js';
import { vmRun } from '../../src/targets/kernel/vm/vm-run.js';
import { tempDir } from '../helpers/tmp.js';

const quiet = { quiet: true, progress: false } as const;

test('the guest runs the pinned kernel; stdout, stderr and exit status come back separately', async () => {
  const result = await vmRun({ ...quiet, command: ['sh', '-c', 'uname -r; echo "to stderr" >&2; exit 3'] });
  assert.equal(result.stdout, `${kernelRelease()}\n`);
  assert.equal(result.stderr, 'to stderr\n');
  assert.equal(result.exitCode, 3);
  assert.equal(result.release, kernelRelease());
  // The console carried the kernel's messages, none of which leaked into stdout.
  assert.match(result.console, /Power down/);
});

test('copied host files are at the same path in the guest, and node runs there', async () => {
  const dir = tempDir();
  const file = join(dir, 'hello.txt');
  writeFileSync(file, 'hello from the host\n');
  mkdirSync(join(dir, 'tree', 'deeper'), { recursive: true });
  writeFileSync(join(dir, 'tree', 'deeper', 'data.json'), JSON.stringify({ answer: 42 }));
  const script = [
    "const fs = require('fs');",
    `const text = fs.readFileSync(${JSON.stringify(file)}, 'utf8');`,
    `const data = JSON.parse(fs.readFileSync(${JSON.stringify(join(dir, 'tree', 'deeper', 'data.json'))}, 'utf8'));`,
    "console.log(JSON.stringify({ text, answer: data.answer, node: process.version, release: require('os').release() }));",
  ].join('\n');
  const result = await vmRun({ ...quiet, copy: [file, join(dir, 'tree')], command: ['node', '-e', script] });
  assert.equal(result.stderr, '');
  assert.equal(result.exitCode, 0);
  assert.deepEqual(JSON.parse(result.stdout), {
    text: 'hello from the host\n',
    answer: 42,
    node: process.version,
    release: kernelRelease(),
  });
});

// Reads linux_banner through /proc/kcore at the address /proc/kallsyms gives:
// real addresses and a readable kcore, as apply-time matching will need.
const READ_BANNER = `
const fs = require('fs');
const line = fs.readFileSync('/proc/kallsyms', 'utf8').split('\\n').find((l) => l.endsWith(' linux_banner'));
const address = BigInt('0x' + line.split(' ')[0]);
const fd = fs.openSync('/proc/kcore', 'r');
const header = Buffer.alloc(64);
fs.readSync(fd, header, 0, 64, 0);
const phoff = header.readBigUInt64LE(0x20), phentsize = header.readUInt16LE(0x36), phnum = header.readUInt16LE(0x38);
const table = Buffer.alloc(phentsize * phnum);
fs.readSync(fd, table, 0, table.length, phoff);
for (let i = 0; i < phnum; i++) {
  const p = table.subarray(i * phentsize);
  const vaddr = p.readBigUInt64LE(16), size = p.readBigUInt64LE(40);
  if (p.readUInt32LE(0) !== 1 || address < vaddr || address >= vaddr + size) continue;
  const banner = Buffer.alloc(80);
  fs.readSync(fd, banner, 0, banner.length, p.readBigUInt64LE(8) + (address - vaddr));
  console.log(JSON.stringify({ address: address.toString(16), banner: banner.toString('latin1').split('\\n')[0] }));
}
`;

test('/proc/kallsyms has real addresses, /proc/kcore reads kernel memory, livepatch and modules are there', async () => {
  const result = await vmRun({
    ...quiet,
    modules: ['loop'],
    command: [
      'sh',
      '-c',
      'node -e "$0" && test -d /sys/kernel/livepatch && echo livepatch && test -d /sys/module/loop && echo loop',
      READ_BANNER,
    ],
  });
  assert.equal(result.stderr, '');
  assert.equal(result.exitCode, 0);
  const [first, ...rest] = result.stdout.trim().split('\n');
  const { address, banner } = JSON.parse(first) as { address: string; banner: string };
  assert.match(address, /^ffffffff[89a-f][0-9a-f]{7}$/);
  assert.ok(banner.startsWith(`Linux version ${kernelRelease()} `), banner);
  assert.deepEqual(rest, ['livepatch', 'loop']);
});

test('a guest that does not finish in time is killed with a clear error', async () => {
  await assert.rejects(vmRun({ ...quiet, command: ['sleep', '1000'], timeoutMs: 1500 }), (e: unknown) => {
    assert.ok(isTspliceError(e));
    assert.equal(e.code, 'target_gone');
    assert.equal(e.details.reason, 'timeout');
    assert.match(e.message, /did not finish within 1\.5 s/);
    return true;
  });
});

test('without QEMU the error says how to install it', async () => {
  const path = process.env.PATH;
  process.env.PATH = tempDir();
  try {
    await assert.rejects(vmRun({ ...quiet, command: ['true'] }), (e: unknown) => {
      assert.ok(isTspliceError(e));
      assert.equal(e.code, 'bad_input');
      assert.match(e.message, /apt-get install qemu-system-x86/);
      return true;
    });
  } finally {
    process.env.PATH = path;
  }
});
