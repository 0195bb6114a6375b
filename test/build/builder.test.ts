import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { before, describe, it } from 'node:test';
import { type PrePostBuild, buildPrePost } from '../../src/build/builder.js';
import { TspliceError } from '../../src/errors.js';
import { tempDir } from '../helpers/tmp.js';
import { SMALL_PROJECT, makePatch, writeProject } from './fixtures.js';

/** 2001-09-09 01:46:40 UTC, as __DATE__ " " __TIME__ prints it. */
const EPOCH = 1000000000;
const EPOCH_STAMP = 'Sep  9 2001 01:46:40';

/** Bytes of one section of an object (objcopy), to compare code between builds. */
function sectionBytes(object: string, section: string): Buffer {
  const out = `${object}.${section.replace(/\//g, '_')}.bin`;
  execFileSync('objcopy', ['-O', 'binary', `--only-section=${section}`, object, out]);
  return readFileSync(out);
}

function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(dir)) out.set(name, readFileSync(join(dir, name), 'latin1'));
  return out;
}

/** A project in a temp dir, a patch to `after`, and a work dir. */
function prepare(project: Record<string, string>, after: Record<string, string>) {
  const root = tempDir();
  const srcDir = join(root, 'src');
  writeProject(srcDir, project);
  const patchFile = join(root, 'fix.patch');
  writeFileSync(patchFile, makePatch(join(root, 'mk'), project, after));
  return { srcDir, patchFile, workDir: join(root, 'work') };
}

async function rejects(promise: Promise<unknown>): Promise<TspliceError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof TspliceError, `expected a TspliceError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the promise to reject');
}

describe('buildPrePost on a program with a static and a shared library', () => {
  const after: Record<string, string> = {
    ...SMALL_PROJECT,
    'util.c': SMALL_PROJECT['util.c'].replace('a + b', 'a + b + 1'),
    'shared.c': SMALL_PROJECT['shared.c'].replace('a * b', 'a * b * 2'),
    'unused.c': SMALL_PROJECT['unused.c'].replace('a - 7', 'a - 8'),
    // Two lines added in helper(): check() below it only sees __LINE__ move.
    'helper.c': SMALL_PROJECT['helper.c'].replace(
      'int helper(int x)\n{\n',
      'int helper(int x)\n{\n\tif (x > 1000)\n\t\treturn -1;\n',
    ),
    // A comment edited in place: stamp.o is rebuilt, but with the same __DATE__/__TIME__.
    'stamp.c': SMALL_PROJECT['stamp.c'].replace('/* built at: */', '/* stamp: */'),
    'extra.c': '#include "common.h"\n\nint extra_fn(int x)\n{\n\treturn x ^ 5;\n}\n',
    Makefile: SMALL_PROJECT.Makefile.replace(
      'app: main.o helper.o stamp.o libutil.a libshared.so\n\t$(CC) -o $@ main.o helper.o stamp.o',
      'app: main.o helper.o stamp.o extra.o libutil.a libshared.so\n\t$(CC) -o $@ main.o helper.o stamp.o extra.o',
    ),
  };
  let result: PrePostBuild;
  // Made here, not in before(): a temp dir belongs to the suite, which outlives the hook.
  const p = prepare(SMALL_PROJECT, after);
  const srcDir = p.srcDir;
  const srcBefore = snapshot(srcDir);

  before(async () => {
    const start = performance.now();
    result = await buildPrePost({ ...p, sourceDateEpoch: EPOCH });
    const seconds = ((performance.now() - start) / 1000).toFixed(2);
    // Reported, not asserted: the goal is a few seconds for a small project.
    console.log(`# whole pre/post/lines flow on the small project: ${seconds}s ${JSON.stringify(result.timings)}`);
  });

  it('builds every object in pre and rebuilds only what the patch touched in post and lines', () => {
    const objects = (b: PrePostBuild['pre']) => b.objects.map((o) => o.object).sort();
    assert.deepEqual(objects(result.pre), ['helper.o', 'main.o', 'shared.o', 'stamp.o', 'unused.o', 'util.o']);
    const rebuilt = ['extra.o', 'helper.o', 'shared.o', 'stamp.o', 'unused.o', 'util.o'];
    assert.deepEqual(objects(result.post), rebuilt);
    assert.deepEqual(objects(result.lines), rebuilt);
    assert.deepEqual(result.patchedFiles.sort(), [
      'Makefile',
      'extra.c',
      'helper.c',
      'shared.c',
      'stamp.c',
      'unused.c',
      'util.c',
    ]);
    assert.deepEqual(
      result.pre.links.map((l) => [l.output, l.kind]).sort(),
      [
        ['app', 'executable'],
        ['libshared.so', 'shared'],
      ],
    );
    assert.deepEqual(result.pre.archives, [{ archive: 'libutil.a', operation: 'replace', members: ['util.o', 'unused.o'] }]);
  });

  it('keeps the project CFLAGS and adds the section flags', () => {
    const util = result.pre.objects.find((o) => o.object === 'util.o');
    assert.ok(util);
    assert.deepEqual(util.args, ['-O2', '-g', '-DMAGIC=1234', '-c', '-o', 'util.o', 'util.c']);
    assert.ok(util.added.includes('-ffunction-sections'));
    assert.ok(sectionBytes(util.path, '.text.util_add').length > 0);
  });

  it('lists the changed objects with the files that contain them', () => {
    const summary = result.changed.map((c) => ({
      object: c.object,
      isNew: c.isNew,
      linkedInto: c.linkedInto.map((o) => `${o.path}:${o.kind}`),
    }));
    assert.deepEqual(summary, [
      { object: 'extra.o', isNew: true, linkedInto: ['app:executable'] },
      { object: 'helper.o', isNew: false, linkedInto: ['app:executable'] },
      { object: 'shared.o', isNew: false, linkedInto: ['libshared.so:shared'] },
      // In libutil.a, but nothing uses it: the linker left it out of app.
      { object: 'unused.o', isNew: false, linkedInto: [] },
      { object: 'util.o', isNew: false, linkedInto: ['app:executable'] },
    ]);
    const extra = result.changed[0];
    assert.equal(extra.preObject, undefined);
    assert.equal(extra.source, 'extra.c');
    for (const c of result.changed.slice(1)) {
      assert.equal(c.preObject, join(result.pre.dir, c.object));
      assert.equal(c.postObject, join(result.post.dir, c.object));
      assert.equal(c.linesObject, join(result.lines.dir, c.object));
      assert.ok(!readFileSync(c.preObject).equals(readFileSync(c.postObject)), c.object);
    }
  });

  it('gives the lines build the pre code for a function that only saw __LINE__ move', () => {
    const helper = result.changed.find((c) => c.object === 'helper.o');
    assert.ok(helper?.preObject);
    const pre = sectionBytes(helper.preObject, '.text.check');
    assert.ok(pre.length > 0);
    assert.ok(!sectionBytes(helper.postObject, '.text.check').equals(pre), 'post check() should differ (moved lines)');
    assert.ok(sectionBytes(helper.linesObject, '.text.check').equals(pre), 'lines check() should equal pre');
    // The function the patch really changed differs in lines too.
    assert.ok(!sectionBytes(helper.linesObject, '.text.helper').equals(sectionBytes(helper.preObject, '.text.helper')));
    assert.match(readFileSync(join(result.lines.dir, 'helper.c'), 'utf8'), /^#line 6$/m);
  });

  it('makes __DATE__/__TIME__ and build paths identical in pre and post', () => {
    // The lines tree is built with exactly pre's flags (post adds -mno-direct-extern-access for shipping).
    const pre = readFileSync(join(result.pre.dir, 'stamp.o'));
    const lines = readFileSync(join(result.lines.dir, 'stamp.o'));
    assert.ok(pre.equals(lines), 'stamp.o was rebuilt identically');
    const post = readFileSync(join(result.post.dir, 'stamp.o'));
    assert.ok(post.includes(Buffer.from(EPOCH_STAMP)), 'post takes the same stamp');
    assert.ok(pre.includes(Buffer.from(EPOCH_STAMP)), 'the stamp comes from SOURCE_DATE_EPOCH');
    assert.ok(pre.includes(Buffer.from(srcDir)), 'debug info names the original source dir');
    assert.ok(!pre.includes(Buffer.from(result.pre.dir)), 'and not the pre tree');
    assert.ok(!result.changed.some((c) => c.object === 'stamp.o'));
  });

  it('leaves the source dir alone', () => {
    assert.deepEqual(snapshot(srcDir), srcBefore);
  });
});

describe('buildPrePost with a Makefile that hard-codes gcc', () => {
  const project: Record<string, string> = {
    Makefile: [
      'CC = gcc',
      'CFLAGS = -O1 -DHARD=1',
      'prog: a.o sub/b.o',
      '\tgcc -o prog a.o sub/b.o',
      'a.o: a.c',
      '\tgcc $(CFLAGS) -c a.c',
      'sub/b.o: sub/b.c',
      '\tcd sub && gcc $(CFLAGS) -c b.c',
      '',
    ].join('\n'),
    'a.c': 'int b(int);\nint main(void) { return b(HARD); }\n',
    'sub/b.c': 'int b(int x) { return x + 1; }\n',
  };

  it('records the compiles through the gcc on PATH', async () => {
    const after = { ...project, 'sub/b.c': 'int b(int x) { return x + 2; }\n' };
    const result = await buildPrePost(prepare(project, after));
    assert.deepEqual(result.pre.objects.map((o) => o.object).sort(), ['a.o', 'sub/b.o']);
    assert.equal(result.changed.length, 1);
    const [b] = result.changed;
    assert.equal(b.object, 'sub/b.o');
    assert.equal(b.source, 'sub/b.c');
    assert.deepEqual(b.args, ['-O1', '-DHARD=1', '-c', 'b.c']);
    assert.deepEqual(b.linkedInto, [{ path: 'prog', kind: 'executable' }]);
    assert.ok(sectionBytes(b.postObject, '.text.b').length > 0);
  });

  it('rebuilds objects that include a patched header although the Makefile does not say so', async () => {
    const withHeader: Record<string, string> = {
      ...project,
      // a.c makes its own dependency file (-MMD), sub/b.c relies on the wrapper's.
      Makefile: project.Makefile.replace('gcc $(CFLAGS) -c a.c', 'gcc $(CFLAGS) -MMD -c a.c'),
      'inc.h': '#define STEP 1\n#define OTHER 5\n',
      'a.c': `#include "inc.h"\nint other = OTHER;\n${project['a.c']}`,
      'sub/b.c': '#include "../inc.h"\nint b(int x) { return x + STEP; }\n',
    };
    const after = { ...withHeader, 'inc.h': '#define STEP 3\n#define OTHER 5\n' };
    const result = await buildPrePost(prepare(withHeader, after));
    assert.deepEqual(result.post.objects.map((o) => o.object).sort(), ['a.o', 'sub/b.o']);
    // a.o was rebuilt identically: only b.o changed.
    assert.deepEqual(result.changed.map((c) => c.object), ['sub/b.o']);
    assert.deepEqual(result.changed[0].linkedInto, [{ path: 'prog', kind: 'executable' }]);
  });

  it('refuses a build that bypasses the wrappers', async () => {
    const bypass: Record<string, string> = {
      ...project,
      Makefile: project.Makefile.replace(/\tgcc /g, '\t/usr/bin/gcc ').replace(/&& gcc/, '&& /usr/bin/gcc'),
    };
    const err = await rejects(buildPrePost(prepare(bypass, { ...bypass, 'a.c': `${bypass['a.c']}\n` })));
    assert.equal(err.code, 'bad_input');
    assert.match(err.message, /compiled nothing through tsplice's compiler wrapper/);
  });
});

describe('buildPrePost failures', () => {
  it('refuses a patch that does not apply before building anything, and names the hunk', async () => {
    const after = { ...SMALL_PROJECT, 'util.c': SMALL_PROJECT['util.c'].replace('a + b', 'a - b') };
    const p = prepare(SMALL_PROJECT, after);
    writeFileSync(join(p.srcDir, 'util.c'), SMALL_PROJECT['util.c'].replace('a + b', 'b + a'));
    const srcBefore = snapshot(p.srcDir);
    const err = await rejects(buildPrePost(p));
    assert.equal(err.code, 'bad_input');
    assert.match(err.message, /util\.c: hunk #1 FAILED/);
    assert.deepEqual(snapshot(p.srcDir), srcBefore);
    assert.ok(!existsSync(join(p.workDir, 'logs', 'pre')), 'no build was started');
  });

  it('reports a patched source that does not build, with the compiler output', async () => {
    const after = { ...SMALL_PROJECT, 'util.c': SMALL_PROJECT['util.c'].replace('a + b;', 'a + ;') };
    const err = await rejects(buildPrePost(prepare(SMALL_PROJECT, after)));
    assert.equal(err.code, 'bad_input');
    assert.match(err.message, /the patched source does not build/);
    assert.match(err.message, /util\.c:5.*error/);
    assert.equal(err.details.tree, 'post');
  });

  it('reports a source that does not build as it is', async () => {
    const broken: Record<string, string> = { ...SMALL_PROJECT, 'main.c': 'this is not C\n' };
    const err = await rejects(buildPrePost(prepare(broken, { ...broken, 'util.c': `${broken['util.c']}\n` })));
    assert.equal(err.code, 'bad_input');
    assert.match(err.message, /the source does not build as it is/);
    assert.match(err.message, /main\.c/);
  });
});

describe('buildPrePost on a source dir that was already built', () => {
  it('still compiles (and records) every object in pre', async () => {
    const after = { ...SMALL_PROJECT, 'util.c': SMALL_PROJECT['util.c'].replace('a + b', 'a + b + 1') };
    const p = prepare(SMALL_PROJECT, after);
    execFileSync('make', ['-s'], { cwd: p.srcDir });
    const result = await buildPrePost(p);
    assert.equal(result.pre.objects.length, 6);
    assert.deepEqual(result.changed.map((c) => [c.object, c.linkedInto.map((o) => o.path)]), [['util.o', ['app']]]);
  });
});

describe('buildPrePost: the original code of changed objects, compiled as updates ship it', () => {
  // Two sources compiled by one command with their own dependency files: the
  // recompile must take only its source and leave the build's files alone.
  const project: Record<string, string> = {
    Makefile: [
      'CFLAGS = -O2 -g',
      'prog: main.o calc.o',
      '\t$(CC) -o prog main.o calc.o',
      'main.o calc.o: main.c calc.c',
      '\t$(CC) $(CFLAGS) -MMD -c main.c calc.c',
      '',
    ].join('\n'),
    'main.c': 'int limit = 3;\nint noisy(int);\nint twice(int);\nint main(int c, char **v) { (void)v; return noisy(c) + twice(c); }\n',
    'calc.c': [
      '#include <stdio.h>',
      'extern int limit;',
      'int noisy(int x)',
      '{',
      '\tif (x > limit)',
      '\t\tfprintf(stderr, "%d\\n", x);',
      '\treturn x;',
      '}',
      'int twice(int x)',
      '{',
      '\treturn x * 2;',
      '}',
      '',
    ].join('\n'),
  };

  it('compiles the pre version of each changed object again with the shipping flags, into its own file', async () => {
    const after = { ...project, 'calc.c': project['calc.c'].replace('x * 2', 'x * 3') };
    const p = prepare(project, after);
    const result = await buildPrePost(p);
    assert.deepEqual(result.changed.map((c) => c.object), ['calc.o']);
    const [calc] = result.changed;
    assert.ok(calc.preObject && calc.preShippedObject);
    assert.ok(!calc.preShippedObject.startsWith(result.pre.dir + '/'), calc.preShippedObject);
    // Only the one object was made (no dependency file, no object of main.c, which the same command compiled).
    assert.deepEqual(readdirSync(dirname(calc.preShippedObject)), ['calc.o']);
    // noisy() is unchanged but reads stderr and limit: built as shipped, it is the post code; the original is not.
    const shipped = sectionBytes(calc.preShippedObject, '.text.noisy');
    assert.ok(shipped.equals(sectionBytes(calc.postObject, '.text.noisy')), 'pre-shipped noisy() equals post noisy()');
    assert.ok(!shipped.equals(sectionBytes(calc.preObject, '.text.noisy')), 'the original noisy() reads the data directly');
    // The changed function is still the original in it.
    assert.ok(sectionBytes(calc.preShippedObject, '.text.twice').equals(sectionBytes(calc.preObject, '.text.twice')));
    const relocations = execFileSync('readelf', ['-rW', calc.preShippedObject], { encoding: 'utf8' });
    assert.match(relocations, /R_X86_64_REX_GOTPCRELX\s+\S+\s+stderr/);
    assert.match(relocations, /R_X86_64_REX_GOTPCRELX\s+\S+\s+limit/);
    // The pre tree's own files are untouched: its object, and the dependency file the build made.
    const preCalc = result.pre.objects.find((o) => o.object === 'calc.o');
    assert.ok(preCalc && readFileSync(preCalc.path).equals(readFileSync(calc.preObject)));
    assert.match(readFileSync(join(result.pre.dir, 'calc.d'), 'utf8'), /^calc\.o:/);
  });
});
