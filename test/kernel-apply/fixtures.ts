// Kernel updates for the apply/list/undo tests, made by hand until
// `tsplice create --kernel` exists: small livepatch modules (the layout of
// samples/livepatch/livepatch-sample.c) built with kbuild against the pinned
// kernel's headers, and pre objects of fs/proc/cmdline.c compiled from the
// pinned linux-source with the same compiler, as the create side does.

import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureKernelHeaders, ensureKernelSourceTarball, kernelRelease, KERNEL_PIN } from '../../src/targets/kernel/vm/index.js';
import { writeTree } from '../helpers/cc.js';



/** A livepatch module replacing one vmlinux function with `body` (same signature as `signature`). */
function livepatchSource(oldName: string, signature: string, body: string, includes: string[] = []): string {
  return `
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
${includes.map((i) => `#include <${i}>`).join('\n')}

static ${signature.replace('NAME', `livepatch_${oldName}`)}
{
${body}
}

static struct klp_func funcs[] = {
	{ .old_name = "${oldName}", .new_func = livepatch_${oldName} }, { }
};
static struct klp_object objs[] = { { .funcs = funcs }, { } };
static struct klp_patch patch = { .mod = THIS_MODULE, .objs = objs };

static int livepatch_init(void) { return klp_enable_patch(&patch); }
static void livepatch_exit(void) { }
module_init(livepatch_init);
module_exit(livepatch_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
`;
}

const CMDLINE_SIGNATURE = 'int NAME(struct seq_file *m, void *v)';

export interface KernelFixtures {
  /** Package directories (manifest.json + files) by name. */
  packages: Record<'a' | 'b' | 'other' | 'busy', string>;
  release: string;
}

export const CMDLINE_UNIT = 'fs/proc/cmdline.o';

/**
 * kbuild of an external directory against the headers. Debian's flavour
 * Makefile only includes the -common one; naming that one with -f works
 * whatever path the flavour Makefile holds.
 */
function kbuild(buildDir: string, dir: string, targets: string[], extra: string[] = []): void {
  const common = join(buildDir, '..', `linux-headers-${KERNEL_PIN.abi}-common`, 'Makefile');
  execFileSync('make', ['-s', '-C', buildDir, '-f', common, `M=${dir}`, 'CC=gcc-12', ...extra, ...targets], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Write an update package as a directory: the manifest and its files. */
function writePackage(dir: string, manifest: Record<string, unknown>, files: Record<string, Buffer>): string {
  mkdirSync(dir, { recursive: true });
  for (const [path, data] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), data);
  }
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, files: Object.keys(files) }, null, 2));
  return dir;
}

export async function buildKernelFixtures(dir: string): Promise<KernelFixtures> {
  const headers = await ensureKernelHeaders();
  const tarball = await ensureKernelSourceTarball();
  const release = kernelRelease();

  // Pre objects: cmdline.c as shipped, and changed (another kernel build, as far as this function goes).
  const source = join(dir, 'source');
  mkdirSync(source, { recursive: true });
  const top = 'linux-source-6.1';
  execFileSync('tar', ['xJf', tarball, '-C', source, `${top}/fs/proc/cmdline.c`, `${top}/fs/proc/internal.h`]);
  const flags = ['ccflags-y=-ffunction-sections -fdata-sections'];
  const pre = join(dir, 'pre');
  const otherPre = join(dir, 'pre-other');
  for (const d of [pre, otherPre]) {
    mkdirSync(d, { recursive: true });
    copyFileSync(join(source, top, 'fs/proc/internal.h'), join(d, 'internal.h'));
    writeFileSync(join(d, 'Kbuild'), '# single objects only\n');
  }
  const cmdline = readFileSync(join(source, top, 'fs/proc/cmdline.c'), 'utf8');
  writeFileSync(join(pre, 'cmdline.c'), cmdline);
  const changed = cmdline.replace("seq_putc(m, '\\n');", "seq_putc(m, ' ');");
  if (changed === cmdline) throw new Error('fixture: fs/proc/cmdline.c no longer has the line the test changes');
  writeFileSync(join(otherPre, 'cmdline.c'), changed);
  kbuild(headers.buildDir, pre, ['cmdline.o'], flags);
  kbuild(headers.buildDir, otherPre, ['cmdline.o'], flags);

  // Livepatch modules.
  const modules = join(dir, 'modules');
  const say = (text: string) => `\tseq_printf(m, "%s\\n", "${text}");\n\treturn 0;`;
  writeTree(modules, {
    'tsplice_a.c': livepatchSource('cmdline_proc_show', CMDLINE_SIGNATURE, say('patched by update a'), ['linux/seq_file.h']),
    'tsplice_b.c': livepatchSource('cmdline_proc_show', CMDLINE_SIGNATURE, say('patched by update b'), ['linux/seq_file.h']),
    'tsplice_other.c': livepatchSource('cmdline_proc_show', CMDLINE_SIGNATURE, say('never loaded'), ['linux/seq_file.h']),
    // kthreadd (pid 2) sleeps inside kthreadd() for ever: a transition replacing it cannot complete.
    // The replacement is never called (kthreadd runs once, at boot).
    'tsplice_busy.c': livepatchSource('kthreadd', 'int NAME(void *unused)', '\treturn 0;'),
    Kbuild: 'obj-m := tsplice_a.o tsplice_b.o tsplice_other.o tsplice_busy.o\n',
  });
  kbuild(headers.buildDir, modules, ['modules', '-j2']);

  const manifest = (id: string, withPre: boolean) => ({
    format: 'tsplice-update/1',
    id,
    target: { kind: 'kernel', release, version: KERNEL_PIN.version, module: { name: `tsplice_${id}`, file: `tsplice_${id}.ko` } },
    units: withPre ? [{ unit: CMDLINE_UNIT, source: 'fs/proc/cmdline.c', pre: `pre/${CMDLINE_UNIT}` }] : [],
    functions: [
      withPre
        ? { object: 'vmlinux', unit: CMDLINE_UNIT, function: 'cmdline_proc_show', sympos: 0, kind: 'changed',
          pre: { symbol: 'cmdline_proc_show', section: '.text.cmdline_proc_show' } }
        : { object: 'vmlinux', function: 'kthreadd', sympos: 0, kind: 'changed' },
    ],
  });
  const ko = (name: string) => readFileSync(join(modules, `${name}.ko`));
  const preObject = readFileSync(join(pre, 'cmdline.o'));
  const packages = {
    a: writePackage(join(dir, 'pkg-a'), manifest('a', true), { 'tsplice_a.ko': ko('tsplice_a'), [`pre/${CMDLINE_UNIT}`]: preObject }),
    b: writePackage(join(dir, 'pkg-b'), manifest('b', true), { 'tsplice_b.ko': ko('tsplice_b'), [`pre/${CMDLINE_UNIT}`]: preObject }),
    other: writePackage(join(dir, 'pkg-other'), manifest('other', true), {
      'tsplice_other.ko': ko('tsplice_other'), [`pre/${CMDLINE_UNIT}`]: readFileSync(join(otherPre, 'cmdline.o')),
    }),
    busy: writePackage(join(dir, 'pkg-busy'), manifest('busy', false), { 'tsplice_busy.ko': ko('tsplice_busy') }),
  };
  return { packages, release };
}
