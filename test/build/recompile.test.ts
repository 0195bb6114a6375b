import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CompileCommand, recompileArgs } from '../../src/build/commands.js';

function compile(args: string[], added: string[] = [], source = '/t/src/b.c'): CompileCommand {
  return { cwd: '/t/src', source, output: '/t/src/b.o', tool: ['/usr/bin/gcc'], args, added, depFile: undefined };
}

describe('recompileArgs', () => {
  it('keeps the flags, replaces the output and appends the extra flags', () => {
    const c = compile(['-O2', '-I', 'inc', '-c', '-o', 'b.o', 'b.c'], ['-ffunction-sections', '-frandom-seed=b.o']);
    assert.deepEqual(recompileArgs(c, '/w/b.o', ['-mno-direct-extern-access']), [
      '-O2', '-I', 'inc', '-c', 'b.c', '-ffunction-sections', '-frandom-seed=b.o', '-o', '/w/b.o', '-mno-direct-extern-access',
    ]);
    assert.deepEqual(recompileArgs(compile(['-c', '-ob.o', 'b.c']), '/w/b.o', []), ['-c', 'b.c', '-o', '/w/b.o']);
  });

  it('drops the other sources of the same run and every dependency-file option', () => {
    const c = compile(
      ['-MMD', '-MP', '-MT', 'x', '-MFdeps/b.d', '-Wp,-MD,deps/b.pp', '-c', 'a.c', 'b.c', 'sub/c.c'],
      ['-MD', '-MF', '/logs/1.d'],
    );
    assert.deepEqual(recompileArgs(c, '/w/b.o', []), ['-c', 'b.c', '-o', '/w/b.o']);
  });

  it('reads response files, and keeps option values that look like sources', () => {
    const files: Record<string, string> = { '/t/src/args.rsp': '-O1 "-DNAME=a b" -o b.o' };
    const c = compile(['@args.rsp', '-include', 'pre.c', '-x', 'c', 'b.in', '-c'], [], '/t/src/b.in');
    assert.deepEqual(recompileArgs(c, '/w/b.o', [], (p) => files[p]), [
      '-O1', '-DNAME=a b', '-include', 'pre.c', '-x', 'c', 'b.in', '-c', '-o', '/w/b.o',
    ]);
  });
});
