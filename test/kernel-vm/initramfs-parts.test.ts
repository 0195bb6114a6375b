// The pieces of the guest image that need no VM: the cpio writer (checked by
// extracting with busybox's cpio), the run script's quoting (run by the host's
// sh), and module dependency order (read from the pinned kernel's modules).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CpioWriter } from '../../src/targets/kernel/vm/cpio.js';
import { runScript, shellQuote } from '../../src/targets/kernel/vm/guest-init.js';
import { GuestTree } from '../../src/targets/kernel/vm/guest-tree.js';
import { ensureKernelImage } from '../../src/targets/kernel/vm/kernel-packages.js';
import { moduleLoadOrder } from '../../src/targets/kernel/vm/module-deps.js';
import { tempDir } from '../helpers/tmp.js';

function extract(archive: string, into: string): void {
  mkdirSync(into, { recursive: true });
  execFileSync('busybox', ['cpio', '-i', '-d', '-F', archive], { cwd: into, stdio: ['ignore', 'pipe', 'pipe'] });
}

test('cpio archives, also concatenated, extract to the files written', () => {
  const dir = tempDir();
  const big = Buffer.alloc(3 * (1 << 20) + 5, 7);
  writeFileSync(join(dir, 'big.bin'), big);
  const archive = join(dir, 'a.cpio');

  const first = new CpioWriter(archive);
  first.file('etc/hello.txt', 'hello\n');
  first.file('bin/run', '#!/bin/sh\n', 0o755);
  first.symlink('bin/link', 'run');
  first.hostFile('data/big.bin', { hostPath: join(dir, 'big.bin'), size: big.length }, 0o600);
  first.finish();
  assert.equal(first.size % 512, 0);

  const second = new CpioWriter(archive, { append: true });
  second.file('etc/hello.txt', 'replaced\n'); // a later archive wins, as in the kernel
  second.file('etc/odd name\twith tab', 'x');
  second.finish();

  // busybox cpio reads one archive; the kernel reads them all, so check each part.
  const out = join(dir, 'out');
  extract(archive, out);
  assert.equal(readFileSync(join(out, 'etc/hello.txt'), 'utf8'), 'hello\n');
  assert.equal(readlinkSync(join(out, 'bin/link')), 'run');
  assert.equal(lstatSync(join(out, 'bin/run')).mode & 0o777, 0o755);
  assert.deepEqual(readFileSync(join(out, 'data/big.bin')), big);

  const secondOnly = join(dir, 'second.cpio');
  writeFileSync(secondOnly, readFileSync(archive).subarray(first.size));
  const out2 = join(dir, 'out2');
  extract(secondOnly, out2);
  assert.equal(readFileSync(join(out2, 'etc/hello.txt'), 'utf8'), 'replaced\n');
  assert.equal(readFileSync(join(out2, 'etc/odd name\twith tab'), 'utf8'), 'x');
});

test('host paths keep their symlinked components and bring their shared libraries', () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'real', 'sub'), { recursive: true });
  writeFileSync(join(dir, 'real', 'sub', 'f.txt'), 'content');
  symlinkSync('real', join(dir, 'alias'));
  const archive = join(dir, 't.cpio');
  const cpio = new CpioWriter(archive);
  const tree = new GuestTree(cpio);
  tree.addHostPath(join(dir, 'alias', 'sub', 'f.txt'));
  tree.addHostPath('/bin/true');
  cpio.finish();

  const out = join(dir, 'out');
  extract(archive, out);
  assert.equal(readlinkSync(join(out, dir, 'alias')), 'real');
  assert.equal(readFileSync(join(out, dir, 'real', 'sub', 'f.txt'), 'utf8'), 'content');
  const listing = execFileSync('busybox', ['cpio', '-t', '-F', archive], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.match(listing, /libc\.so\.6/);
  assert.match(listing, /ld-linux-x86-64\.so\.2/);
});

test('run.sh passes every argument through unchanged', () => {
  const dir = tempDir();
  const args = ["it's", 'two words', '$HOME', '*', 'line\nbreak', '', '\\'];
  const script = runScript({
    command: ['sh', '-c', 'for a in "$@"; do printf "<%s>" "$a"; done; printf "%s" "$X"', 'argv0', ...args],
    cwd: dir,
    env: { X: "a'b c" },
  });
  writeFileSync(join(dir, 'run.sh'), script);
  const out = execFileSync('sh', [join(dir, 'run.sh')], { encoding: 'utf8' });
  assert.equal(out, args.map((a) => `<${a}>`).join('') + "a'b c");
  assert.equal(shellQuote("'"), `''\\'''`);
});

test('modules are loaded dependencies first', async () => {
  const image = await ensureKernelImage();
  const order = moduleLoadOrder(image.modulesDir, ['virtio_console', 'virtio_pci']);
  const names = order.map((path) => path.slice(path.lastIndexOf('/') + 1, -3));
  for (const name of ['virtio', 'virtio_ring', 'virtio_console', 'virtio_pci', 'virtio_pci_modern_dev']) {
    assert.ok(names.includes(name), `${name} in ${names.join(' ')}`);
  }
  assert.equal(new Set(names).size, names.length);
  assert.ok(names.indexOf('virtio_ring') < names.indexOf('virtio_console'));
  assert.ok(names.indexOf('virtio_pci_modern_dev') < names.indexOf('virtio_pci'));
  assert.throws(() => moduleLoadOrder(image.modulesDir, ['no_such_module']), { code: 'bad_input' });
});
