// tsplice create --kernel on real patches to the pinned Debian 6.1 kernel:
// each update is built (one kbuild run per file and side, the prepared tree
// comes from the cache), then all are loaded with insmod, one after the other,
// in one boot of that kernel under QEMU, each with a check that must differ
// before and after. Refused patches must be refused with unsupported_change,
// and a source that is not the target kernel's with no_match.
//
// Slow (about 2-3 minutes: eight single-file kernel builds and one VM boot;
// the first run also prepares the source tree, ~30 s, and downloads packages).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseElf } from '../../src/elf/reader.js';
import { SHF_RELA_LIVEPATCH, SHN_LIVEPATCH } from '../../src/elf/constants.js';
import { TspliceError } from '../../src/errors.js';
import { createKernelUpdate, type KernelCreateResult } from '../../src/targets/kernel/create.js';
import { ensurePreparedTree } from '../../src/targets/kernel/source-tree.js';
import { vmRun } from '../../src/targets/kernel/vm/index.js';
import { readUpdate } from '../../src/update/package.js';
import { DIST_CLI, ensureBuilt } from '../helpers/dist.js';
import { tempDir } from '../helpers/tmp.js';

const PATCHES = join(fileURLToPath(new URL('.', import.meta.url)), 'patches');

interface Case {
  id: string;
  /** Shell command whose output shows the change. */
  check: string;
  /** Its output before and after loading the livepatch module. */
  before: RegExp;
  after: RegExp;
}

const CASES: Case[] = [
  // A /proc file's output.
  { id: 'cmdline', check: 'cat /proc/cmdline', before: /^(?!.*tsplice=live)/s, after: /tsplice=live/ },
  // A new function called from a changed one.
  { id: 'meminfo-new-function', check: 'grep -c Tsplice: /proc/meminfo', before: /^0$/m, after: /^1$/m },
  // show_val_kb is inlined into meminfo_proc_show: only the caller exists to patch.
  { id: 'meminfo-inlined', check: 'grep MemTotal: /proc/meminfo', before: / kB$/m, after: / KiB$/m },
  // c_start is a static name in three files: sympos picks the one of fs/proc/consoles.c.
  { id: 'consoles-sympos', check: 'cat /proc/consoles', before: /ttyS0/, after: /^(?![\s\S]*ttyS0)/ },
  // A system call: __do_sys_newuname is notrace (inline), so its callers are redirected.
  { id: 'uname-version', check: 'uname -v', before: /Debian/, after: /^tsplice-live$/m },
  // A function of a loadable module (binfmt_misc), reaching the module's own static variable.
  {
    id: 'binfmt-misc-module', check: 'cat /proc/sys/fs/binfmt_misc/status',
    before: /^enabled$/m, after: /^enabled \(tsplice\)$/m,
  },
];

const out = tempDir('tsplice-kernel-create-');
const created = new Map<string, KernelCreateResult>();
let guest = '';
let guestExit = -1;

/**
 * The guest script, as an operator would do it: for each update, the check,
 * tsplice apply --kernel, the check, tsplice list, tsplice undo, the check.
 */
function guestScript(): string {
  const lines = [
    `T="node ${DIST_CLI}"`,
    'mount -t binfmt_misc none /proc/sys/fs/binfmt_misc',
  ];
  for (const c of CASES) {
    const path = created.get(c.id)?.path as string;
    lines.push(
      `echo "=== ${c.id} before"`, c.check,
      `echo "=== ${c.id} apply"`, `$T apply ${path} --kernel > /tmp/apply.out 2>&1 && echo "apply ok" || cat /tmp/apply.out`,
      `echo "=== ${c.id} after"`, c.check,
      `echo "=== ${c.id} list"`, `$T list --kernel`,
      `echo "=== ${c.id} undo"`, `$T undo ${c.id} --kernel > /tmp/undo.out 2>&1 && echo "undo ok" || cat /tmp/undo.out`,
      `echo "=== ${c.id} undone"`, c.check,
    );
  }
  lines.push('echo "=== end"');
  return lines.join('\n');
}

function section(id: string, when: 'before' | 'apply' | 'after' | 'list' | 'undo' | 'undone'): string {
  const start = guest.indexOf(`=== ${id} ${when}\n`);
  assert.notEqual(start, -1, `the guest printed no "${id} ${when}" section:\n${guest}`);
  const body = guest.slice(start).split('\n').slice(1);
  const end = body.findIndex((l) => l.startsWith('=== '));
  return body.slice(0, end).join('\n');
}

before(async () => {
  const started = Date.now();
  const tree = await ensurePreparedTree();
  process.stderr.write(`# prepared tree: ${tree.preparedSeconds > 0 ? `${tree.preparedSeconds.toFixed(1)} s` : 'cached'}\n`);
  for (const c of CASES) {
    const result = await createKernelUpdate({ patchFile: join(PATCHES, `${c.id}.patch`), id: c.id, outDir: out });
    process.stderr.write(`# create ${c.id}: ${result.seconds.toFixed(1)} s\n`);
    created.set(c.id, result);
  }
  ensureBuilt();
  const vm = await vmRun({
    command: ['sh', '-c', guestScript()], copy: [out], modules: ['binfmt_misc'], quiet: true,
    progress: false, timeoutMs: 240_000,
  });
  guest = vm.stdout + vm.stderr;
  guestExit = vm.exitCode;
  process.stderr.write(`# guest: ${(vm.totalMs / 1000).toFixed(1)} s; all: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
});

for (const c of CASES) {
  test(`${c.id}: tsplice apply --kernel changes the behaviour, undo takes it back`, () => {
    assert.equal(guestExit, 0, guest);
    const was = section(c.id, 'before');
    assert.match(was, c.before, `before applying ${c.id}`);
    assert.doesNotMatch(was, c.after, `before applying ${c.id}`);
    assert.equal(section(c.id, 'apply'), 'apply ok', `tsplice apply of ${c.id} (verify, load, transition)`);
    assert.match(section(c.id, 'after'), c.after, `after applying ${c.id}`);
    assert.match(section(c.id, 'list'), new RegExp(`^1\\. ${c.id} \\(applied\\)`, 'm'), `tsplice list after applying ${c.id}`);
    assert.equal(section(c.id, 'undo'), 'undo ok', `tsplice undo of ${c.id}`);
    const undone = section(c.id, 'undone');
    assert.match(undone, c.before, `after undoing ${c.id}`);
    assert.doesNotMatch(undone, c.after, `after undoing ${c.id}`);
  });
}

test('the manifest records the kernel, the objects and sympos', () => {
  const consoles = readUpdate(created.get('consoles-sympos')?.path as string).manifest;
  const { buildId, ...target } = consoles.target as { buildId?: string };
  assert.deepEqual(target, {
    kind: 'kernel', release: '6.1.0-50-cloud-amd64', version: '6.1.176-1',
    module: { name: 'tsplice_consoles_sympos', file: 'module/tsplice_consoles_sympos.ko' },
  });
  assert.match(buildId ?? '', /^[0-9a-f]{40}$/, 'the build id of the vmlinux matched against');
  const cStart = consoles.functions.find((f) => f.function === 'c_start');
  assert.equal(cStart?.object, 'vmlinux');
  assert.equal(cStart?.sympos, 2, 'fs/proc/consoles.c has the second c_start in address order');

  const uname = readUpdate(created.get('uname-version')?.path as string).manifest;
  const redirected = uname.functions.filter((f) => f.sympos !== undefined).map((f) => f.function).sort();
  assert.deepEqual(redirected, ['__ia32_sys_newuname', '__x64_sys_newuname']);

  const binfmt = readUpdate(created.get('binfmt-misc-module')?.path as string).manifest;
  assert.deepEqual(binfmt.objects.map((o) => [o.name, o.kind]), [['binfmt_misc', 'module']]);
  assert.ok(binfmt.units[0].pre && binfmt.units[0].post, 'pre and post objects are packed for apply-time matching');
});

test('the module reaches non-exported symbols through klp relocations and livepatch symbols', () => {
  const checks: Array<[string, string, string]> = [
    ['cmdline', 'vmlinux', '.klp.sym.vmlinux.saved_command_line,0'],
    ['binfmt-misc-module', 'binfmt_misc', '.klp.sym.binfmt_misc.enabled,0'],
  ];
  for (const [id, object, symbol] of checks) {
    const result = created.get(id) as KernelCreateResult;
    const { files, manifest } = readUpdate(result.path);
    const target = manifest.target;
    if (target.kind !== 'kernel') assert.fail('not a kernel update');
    const ko = parseElf(files.get(target.module.file) as Buffer, target.module.file);
    const sym = ko.symbols.find((s) => s.name === symbol);
    assert.equal(sym?.shndx, SHN_LIVEPATCH, `${symbol} is a livepatch symbol`);
    const klpSections = ko.sections.filter((s) => s.name.startsWith(`.klp.rela.${object}.`));
    assert.ok(klpSections.length > 0, `${id}: a .klp.rela.${object}.* section`);
    for (const s of klpSections) assert.notEqual(s.flags & SHF_RELA_LIVEPATCH, 0n);
    // Exported symbols stay ordinary undefined references.
    assert.ok(ko.symbols.some((s) => s.name === '__fentry__' && s.shndx === 0));
  }
});

async function refusal(patch: string, options: { sourceDir?: string } = {}): Promise<TspliceError> {
  try {
    await createKernelUpdate({ patchFile: join(PATCHES, patch), outDir: out, ...options });
  } catch (e) {
    assert.ok(e instanceof TspliceError, String(e));
    return e;
  }
  assert.fail(`${patch} was not refused`);
}

test('a change to __init code is refused', async () => {
  const e = await refusal('refused-init.patch');
  assert.equal(e.code, 'unsupported_change');
  assert.match(e.message, /proc_cmdline_init.*\.init\.text.*__init code runs once at boot/s);
});

test('a change to a global\'s initial value is refused', async () => {
  const e = await refusal('refused-global-value.patch');
  assert.equal(e.code, 'unsupported_change');
  assert.match(e.message, /overflowuid/);
  assert.match(e.message, /hooks/);
});

test('a source tree that is not the target kernel\'s gives no_match, naming the function', async () => {
  const tree = await ensurePreparedTree();
  const other = join(tempDir('tsplice-other-source-'), 'linux');
  execFileSync('cp', ['-al', tree.dir, other]);
  // Another build of the file: saved_command_line read one byte further (the patch still applies).
  const file = join(other, 'fs/proc/cmdline.c');
  const text = readFileSync(file, 'utf8');
  unlinkSync(file);
  writeFileSync(file, text.replace('#include <linux/seq_file.h>\n',
    '#include <linux/seq_file.h>\n#define saved_command_line (saved_command_line + 1)\n'));
  const e = await refusal('cmdline.patch', { sourceDir: other });
  assert.equal(e.code, 'no_match');
  assert.match(e.message, /cmdline_proc_show/);
});
