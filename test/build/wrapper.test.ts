import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { interpretArchiverRun, interpretCompilerRun } from '../../src/build/commands.js';
import { containingOutputs, inputKind, parseLinkerMap } from '../../src/build/linkmap.js';
import {
  type ToolRecord,
  installWrappers,
  readRecords,
  wrapperEnvironment,
  wrapperScript,
} from '../../src/build/wrapper.js';
import { writeTree } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';

/** Wrappers installed in a temp dir, and the environment of a build of `tree` through them. */
function setup(envOverrides: NodeJS.ProcessEnv = {}) {
  const dir = tempDir();
  const tree = join(dir, 'tree');
  const logDir = join(dir, 'log');
  mkdirSync(tree, { recursive: true });
  mkdirSync(logDir);
  const baseEnv = { ...process.env, ...envOverrides };
  const wrappers = installWrappers(join(dir, 'bin'), baseEnv);
  const env = wrapperEnvironment(
    wrappers,
    { logDir, treeDir: tree, mapTreeTo: '/original/src', sourceDateEpoch: 1000000000 },
    baseEnv,
  );
  return { dir, tree, logDir, wrappers, env };
}

function sectionNames(object: string): string[] {
  const out = execFileSync('readelf', ['-SW', object], { encoding: 'utf8' });
  return [...out.matchAll(/\]\s+(\S+)/g)].map((m) => m[1]);
}

function record(args: string[], cwd = '/t', kind: 'cc' | 'ar' = 'cc'): ToolRecord {
  return { kind, cwd, status: 0, tool: ['/usr/bin/gcc'], args, added: [], mapFile: undefined, time: 0n };
}

describe('compiler wrapper', () => {
  it('records argv exactly (spaces, quotes, newlines, empty) and adds the section flags', () => {
    const { tree, logDir, env } = setup();
    writeTree(tree, { 'odd name.c': 'const char *s = S; const char *q = Q; int n = N; int f(void) { return 1; }\n' });
    const args = ['-c', '-DS="a b"', `-DQ="it's"`, '-DN=1\n+2', '-o', 'out dir.o', 'odd name.c'];
    // Through the PATH shim, as a Makefile hard-coding "gcc" would run it.
    execFileSync('gcc', args, { cwd: tree, env });
    const records = readRecords(logDir);
    assert.equal(records.length, 1);
    const [r] = records;
    assert.equal(r.kind, 'cc');
    assert.equal(r.status, 0);
    assert.equal(r.cwd, tree);
    assert.deepEqual(r.args, args);
    assert.ok(r.tool[0].endsWith('/gcc') && !r.tool[0].startsWith(join(tree, '..')), r.tool[0]);
    assert.ok(r.added.includes('-ffunction-sections'));
    assert.ok(r.added.includes('-fdata-sections'));
    assert.ok(r.added.includes('-frandom-seed=out dir.o'));
    assert.ok(r.added.includes(`-ffile-prefix-map=${tree}=/original/src`));
    assert.equal(r.mapFile, undefined);
    assert.ok(sectionNames(join(tree, 'out dir.o')).includes('.text.f'));
    const meaning = interpretCompilerRun(r);
    assert.deepEqual(meaning.compiles.map((c) => [c.source, c.output]), [
      [join(tree, 'odd name.c'), join(tree, 'out dir.o')],
    ]);
  });

  it('passes failures through and records their status', () => {
    const { tree, logDir, env, wrappers } = setup();
    writeTree(tree, { 'bad.c': 'int x = ;\n' });
    const run = spawnSync(wrappers.variables.CC, ['-c', 'bad.c'], { cwd: tree, env, encoding: 'utf8' });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /error/);
    const [r] = readRecords(logDir);
    assert.equal(r.status, run.status);
    assert.deepEqual(interpretCompilerRun(r).compiles, []);
  });

  it('runs the compiler $CC names, with its extra words', () => {
    const { tree, logDir, env, wrappers } = setup({ CC: 'gcc -DFROM_CC=1' });
    writeTree(tree, { 'a.c': '#ifndef FROM_CC\n#error CC words lost\n#endif\nint a;\n' });
    execFileSync(wrappers.variables.CC, ['-c', 'a.c'], { cwd: tree, env });
    const [r] = readRecords(logDir);
    assert.deepEqual(r.tool.slice(1), ['-DFROM_CC=1']);
    assert.deepEqual(interpretCompilerRun(r).compiles.map((c) => c.output), [join(tree, 'a.o')]);
  });

  it('writes a linker map for links, and the map says which archive members were used', () => {
    const { tree, logDir, env } = setup();
    writeTree(tree, {
      'main.c': 'int used(void); int main(void) { return used(); }\n',
      'used.c': 'int used(void) { return 0; }\n',
      'unused.c': 'int unused(void) { return 1; }\n',
    });
    execFileSync('gcc', ['-c', 'main.c', 'used.c', 'unused.c'], { cwd: tree, env });
    execFileSync('ar', ['rcs', 'libx.a', 'used.o', 'unused.o'], { cwd: tree, env });
    execFileSync('cc', ['-o', 'app', 'main.o', '-L.', '-lx'], { cwd: tree, env });
    const records = readRecords(logDir);
    assert.deepEqual(records.map((r) => r.kind), ['cc', 'ar', 'cc']);
    const archive = interpretArchiverRun(records[1]);
    assert.deepEqual(archive, {
      cwd: tree,
      archive: join(tree, 'libx.a'),
      operation: 'replace',
      members: [join(tree, 'used.o'), join(tree, 'unused.o')],
      thin: false,
    });
    const link = interpretCompilerRun(records[2]).link;
    assert.ok(link?.mapFile);
    const map = parseLinkerMap(readFileSync(link.mapFile, 'utf8'), link.cwd);
    assert.ok(map.loaded.includes(join(tree, 'main.o')));
    assert.deepEqual(map.archiveMembers, [{ archive: join(tree, 'libx.a'), member: 'used.o' }]);
    const contained = containingOutputs([link], [archive]);
    assert.deepEqual(contained.get(join(tree, 'used.o')), [{ path: join(tree, 'app'), kind: 'executable' }]);
    assert.deepEqual(contained.get(join(tree, 'main.o')), [{ path: join(tree, 'app'), kind: 'executable' }]);
    assert.equal(contained.get(join(tree, 'unused.o')), undefined);
    assert.equal(inputKind(join(tree, 'libx.a')), 'archive');
    assert.equal(inputKind(join(tree, 'main.o')), 'object');
    assert.equal(inputKind(join(tree, 'app')), 'shared'); // a PIE
  });

  it('follows objects through relocatable links into shared libraries', () => {
    const { tree, logDir, env } = setup();
    writeTree(tree, { 'p.c': 'int p(void) { return 2; }\n', 'q.c': 'int q(void) { return 3; }\n' });
    execFileSync('gcc', ['-fPIC', '-c', 'p.c', 'q.c'], { cwd: tree, env });
    execFileSync('gcc', ['-r', '-o', 'pq.o', 'p.o', 'q.o'], { cwd: tree, env });
    execFileSync('gcc', ['-shared', '-o', 'libpq.so', 'pq.o'], { cwd: tree, env });
    const links = readRecords(logDir)
      .map((r) => interpretCompilerRun(r).link)
      .filter((l) => l !== undefined);
    assert.deepEqual(links.map((l) => l.kind), ['relocatable', 'shared']);
    const contained = containingOutputs(links, []);
    assert.deepEqual(contained.get(join(tree, 'p.o')), [{ path: join(tree, 'libpq.so'), kind: 'shared' }]);
  });

  it('is a POSIX sh script that records nothing without a log dir', () => {
    const script = wrapperScript('cc', ['/usr/bin/gcc']);
    assert.match(script, /^#!\/bin\/sh\n/);
    const { tree, wrappers } = setup();
    writeTree(tree, { 'z.c': 'int z;\n' });
    const env = { ...process.env, TSPLICE_LOG: '' };
    execFileSync(wrappers.variables.CC, ['-c', 'z.c'], { cwd: tree, env });
    assert.ok(sectionNames(join(tree, 'z.o')).includes('.bss.z'));
  });
});

describe('interpretCompilerRun', () => {
  it('names the objects of -c without -o after the sources, in the cwd', () => {
    const m = interpretCompilerRun(record(['-O2', '-I', 'inc', '-c', 'src/a.c', '../b.cc', '-MD', '-MF', 'x.d']));
    assert.deepEqual(
      m.compiles.map((c) => [c.source, c.output]),
      [
        ['/t/src/a.c', '/t/a.o'],
        ['/b.cc', '/t/b.o'],
      ],
    );
    assert.equal(m.link, undefined);
  });

  it('ignores preprocessing, assembly output and queries', () => {
    for (const args of [['-E', 'a.c'], ['-S', 'a.c'], ['-M', 'a.c'], ['--version'], ['-print-file-name=libc.so']]) {
      const m = interpretCompilerRun(record(args));
      assert.deepEqual(m, { compiles: [], link: undefined }, args.join(' '));
    }
  });

  it('reads links: kind, inputs, libraries, inline sources, response files', () => {
    const shared = interpretCompilerRun(record(['-shared', '-o', 'lib/libz.so', 'a.o', 'b.a', '-Lx', '-lm'])).link;
    assert.equal(shared?.kind, 'shared');
    assert.equal(shared?.output, '/t/lib/libz.so');
    assert.deepEqual(shared?.inputs, ['/t/a.o', '/t/b.a']);
    assert.deepEqual(shared?.libraries, [{ name: 'm', static: false }]);
    assert.deepEqual(shared?.libraryDirs, ['/t/x']);

    const exe = interpretCompilerRun(record(['main.c', '-Wl,-Bstatic', '-lfoo', '-Wl,-Bdynamic', '-l', 'bar'])).link;
    assert.equal(exe?.kind, 'executable');
    assert.equal(exe?.output, '/t/a.out');
    assert.deepEqual(exe?.inlineSources, ['/t/main.c']);
    assert.deepEqual(exe?.libraries, [
      { name: 'foo', static: true },
      { name: 'bar', static: false },
    ]);

    const dir = tempDir();
    writeFileSync(join(dir, 'objs.rsp'), 'one.o "two words.o"\n-o out\n');
    const rsp = interpretCompilerRun(record(['@objs.rsp'], dir), (p) => readFileSync(p, 'utf8')).link;
    assert.deepEqual(rsp?.inputs, [join(dir, 'one.o'), join(dir, 'two words.o')]);
    assert.equal(rsp?.output, join(dir, 'out'));
  });
});

describe('interpretArchiverRun', () => {
  it('understands the usual ar spellings', () => {
    const members = (args: string[]) => interpretArchiverRun(record(args, '/t', 'ar'));
    assert.deepEqual(members(['rcs', 'l.a', 'x.o'])?.members, ['/t/x.o']);
    assert.deepEqual(members(['-rcs', 'l.a', 'x.o'])?.archive, '/t/l.a');
    assert.deepEqual(members(['-r', '-c', '-s', 'l.a', 'x.o', 'y.o'])?.members, ['/t/x.o', '/t/y.o']);
    assert.deepEqual(members(['--plugin', '/p.so', 'cr', 'l.a', 'x.o'])?.members, ['/t/x.o']);
    assert.equal(members(['qcT', 'l.a', 'x.o'])?.thin, true);
    assert.equal(members(['qcT', 'l.a', 'x.o'])?.operation, 'append');
    assert.equal(members(['rb', 'x.o', 'l.a', 'y.o'])?.archive, '/t/l.a');
    assert.equal(members(['d', 'l.a', 'x.o'])?.operation, 'delete');
    assert.equal(members(['t', 'l.a']), undefined);
    assert.equal(members(['x', 'l.a']), undefined);
  });
});
