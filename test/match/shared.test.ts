// Run-pre matching of position-independent code: in a shared library (PLT to
// its own globals, GOT, general- and local-dynamic TLS) and linked into
// executables, where the linker relaxed GOT loads and TLS sequences.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { writeTree } from '../helpers/cc.js';
import { LIB_C } from './sources.js';
import { tempDir } from '../helpers/tmp.js';
import { build, disassemble, dynamicRelocations, matchFile, nmAddress, tpoffFromReadelf } from './fixture.js';

const APP_C = `
int lib_api(int);
int main(int argc, char **argv) { (void)argv; return lib_api(argc); }
`;

const dir = tempDir();
writeTree(dir, { 'lib.c': LIB_C, 'app.c': APP_C });

/** The slot of a dynamic relocation of `type` naming `symbol` (or none), from readelf. */
function relocationSlot(path: string, type: string, symbol: string | undefined): bigint {
  const line = dynamicRelocations(path).find((l) => {
    const f = l.trim().split(/\s+/);
    return f[2] === type && (symbol === undefined ? !/^[a-zA-Z_]/.test(f[4] ?? '') : (f[4] ?? '').replace(/@.*/, '') === symbol);
  });
  if (!line) throw new Error(`${path}: no ${type} relocation for ${symbol ?? '(no symbol)'}`);
  return BigInt('0x' + line.trim().split(/\s+/)[0]);
}

for (const level of ['-O0', '-O2']) {
  test(`shared library ${level}: PLT, GOT and dynamic TLS resolve`, () => {
    const built = build(dir, ['lib.c'], `lib${level}.so`, [level, '-fPIC'], ['-shared']);
    const lib = built.output;
    const m = matchFile(built.objects[0], lib);

    for (const fn of ['lib_api', 'lib_other', 'lib_helper']) assert.equal(m.functions.get(fn)?.address, nmAddress(lib, fn));
    assert.equal(m.symbols.get('lib_helper')?.address, nmAddress(lib, 'lib_helper'));
    assert.equal(m.symbols.get('lib_static')?.address, nmAddress(lib, 'lib_static'));

    // A global function of the library itself is called through the PLT (it could be interposed).
    const other = m.symbols.get('lib_other');
    assert.equal(other?.plt?.symbol, 'lib_other');
    assert.equal(other?.address, nmAddress(lib, 'lib_other'));

    // Global data and stderr through GOT slots filled by GLOB_DAT relocations.
    assert.equal(m.symbols.get('lib_counter')?.got?.slot, relocationSlot(lib, 'R_X86_64_GLOB_DAT', 'lib_counter'));
    assert.equal(m.symbols.get('stderr')?.got?.slot, relocationSlot(lib, 'R_X86_64_GLOB_DAT', 'stderr'));
    assert.equal(m.symbols.get('fprintf')?.plt?.symbol, 'fprintf');

    // TLS: general dynamic for the global (GOT pair with DTPMOD64 naming it), local dynamic for the static.
    assert.equal(m.symbols.get('lib_tls')?.tls?.gdSlot, relocationSlot(lib, 'R_X86_64_DTPMOD64', 'lib_tls'));
    const tlsStatic = m.symbols.get('lib_tls_static')?.tls;
    const moduleSlot = relocationSlot(lib, 'R_X86_64_DTPMOD64', undefined);
    if (level === '-O0') {
      // gcc -O0 uses general dynamic for static TLS too.
      assert.equal(tlsStatic?.gdSlot, moduleSlot);
    } else {
      assert.equal(tlsStatic?.dtpoff, nmAddress(lib, 'lib_tls_static'));
      assert.equal(tlsStatic?.ldSlot, moduleSlot);
    }
    assert.equal(m.symbols.get('__tls_get_addr')?.plt?.symbol, '__tls_get_addr');
  });
}

for (const pie of [true, false]) {
  test(`-fPIC code linked into a ${pie ? 'PIE' : 'non-PIE'} executable: GOT and TLS relaxations`, () => {
    const name = pie ? 'app-pic-pie' : 'app-pic-nopie';
    const built = build(dir, ['lib.c', 'app.c'], name, ['-O2', '-fPIC', pie ? '-pie' : '-no-pie']);
    const exe = built.output;
    const api = disassemble(exe, 'lib_api');
    // The fixture really has the relaxed forms.
    assert.match(api, /mov\s+%fs:0x0,%rax/, 'TLS sequences relaxed to local-exec');
    assert.doesNotMatch(api, /__tls_get_addr/);
    const m = matchFile(built.objects[0], exe);

    assert.equal(m.functions.get('lib_api')?.address, nmAddress(exe, 'lib_api'));
    // GOTPCRELX relaxed (lea or mov $imm): a plain address now.
    assert.equal(m.symbols.get('lib_counter')?.address, nmAddress(exe, 'lib_counter'));
    // Calls to lib_other went direct.
    assert.equal(m.symbols.get('lib_other')?.address, nmAddress(exe, 'lib_other'));
    // GD→LE and LD→LE: thread-pointer offsets.
    assert.equal(m.symbols.get('lib_tls')?.tls?.tpoff, tpoffFromReadelf(exe, 'lib_tls'));
    assert.equal(m.symbols.get('lib_tls_static')?.tls?.tpoff, tpoffFromReadelf(exe, 'lib_tls_static'));
  });
}

test('initial-exec TLS: relaxed to local-exec for own variables, GOT slot for a library variable', () => {
  writeTree(dir, {
    'tlslib.c': '__thread int shared_tls = 3;\n',
    'ie.c': `
      extern __thread int shared_tls;
      __thread int own_tls;
      int bump(int x) { own_tls += x; shared_tls += own_tls; return shared_tls; }
      int main(int argc, char **argv) { (void)argv; return bump(argc); }
    `,
  });
  build(dir, ['tlslib.c'], 'libtlsv.so', ['-O2', '-fPIC'], ['-shared']);
  const built = build(dir, ['ie.c'], 'app-ie', ['-O2', '-ftls-model=initial-exec'], ['-L.', '-ltlsv']);
  const exe = built.output;
  const m = matchFile(built.objects[0], exe);
  assert.equal(m.symbols.get('own_tls')?.tls?.tpoff, tpoffFromReadelf(exe, 'own_tls'));
  assert.equal(m.symbols.get('shared_tls')?.tls?.ieSlot, relocationSlot(exe, 'R_X86_64_TPOFF64', 'shared_tls'));
});
