// tsplice demo: the live demo. Build a small threaded TCP server with a
// Heartbleed-style over-read, start it, show the leak, build the update from
// the bundled fix, apply it while the server keeps serving, show the fix with
// the same pid, undo it, and print the freeze times.

import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { TspliceError } from '../errors.js';
import { createProgress } from '../progress.js';
import { applyToProcess } from '../targets/process/apply-update.js';
import { undoFromProcess } from '../targets/process/undo-update.js';
import { createUpdate } from '../update/create.js';
import { readUpdate } from '../update/package.js';
import { parseCommand } from './args.js';
import type { Output } from './output.js';

export const DEMO_USAGE = 'tsplice demo [--keep] [--json]';

/** demo/server in the package, from src/cli or dist/src/cli. */
function demoSource(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../../demo/server', '../../../demo/server']) {
    const dir = join(here, up);
    if (existsSync(join(dir, 'Makefile'))) return dir;
  }
  throw new TspliceError('internal', 'the demo sources (demo/server) are missing from this installation');
}

function requireTools(): void {
  const missing = ['gcc', 'make', 'patch'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length > 0) {
    throw new TspliceError('bad_input', `the demo needs ${missing.join(', ')}: install with apt-get install ${missing.join(' ')}`);
  }
  if (process.getuid?.() !== 0) {
    throw new TspliceError('permission', 'the demo patches a running process with ptrace: run it as root');
  }
}

/** One request, one reply (the server closes the connection after replying). */
function request(port: number, line: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error('timed out')), timeoutMs);
    socket.on('connect', () => socket.write(line));
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (e) => { clearTimeout(timer); reject(e); });
    socket.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('latin1').trim()); });
  });
}

/** Steady traffic while the server is patched: every reply must be right, before, during and after. */
function startLoad(port: number): { stop: () => Promise<{ sent: number; failed: number }> } {
  let running = true;
  let sent = 0;
  let failed = 0;
  const loop = (async () => {
    while (running) {
      sent++;
      try {
        if ((await request(port, 'ECHO 5 hello')) !== 'ECHO hello') failed++;
      } catch {
        failed++;
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { sent, failed };
    },
  };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function demoCommand(argv: string[], out: Output): Promise<number> {
  const p = parseCommand('demo', argv, { keep: { type: 'boolean' }, json: { type: 'boolean' } }, DEMO_USAGE);
  requireTools();
  const progress = createProgress({ quiet: out.json });
  const work = mkdtempSync(join(tmpdir(), 'tsplice-demo-'));
  const src = join(work, 'echod');
  cpSync(demoSource(), src, { recursive: true });
  let pid = 0;
  try {
    progress.step('building the demo server (make)');
    execFileSync('make', ['-s'], { cwd: src, stdio: ['ignore', 'ignore', 'pipe'] });
    progress.done();

    // Started through sh so the server is not our child: tsplice traces it, and Node must not reap its stops.
    const started = execFileSync('sh', ['-c', './echod 0 > server.out 2> server.err & echo $!'], { cwd: src, encoding: 'utf8' });
    pid = Number(started.trim());
    let port = 0;
    for (let i = 0; i < 100 && port === 0; i++) {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(existsSync(join(src, 'server.out')) ? readFileSync(join(src, 'server.out'), 'utf8') : '');
      if (m) port = Number(m[1]);
      else await sleep(20);
    }
    if (port === 0) throw new TspliceError('internal', 'the demo server did not start');

    out.say(`1. started the demo server echod: pid ${pid}, 127.0.0.1:${port}`);
    out.say('   It echoes text back: "ECHO LEN TEXT" replies with the first LEN bytes of TEXT.');
    const normal = await request(port, 'ECHO 5 hello');
    const leak = await request(port, 'ECHO 64 hi');
    out.say(`   request "ECHO 5 hello" -> ${normal}`);
    out.say(`   request "ECHO 64 hi"   -> ${leak}`);
    out.say('   The bug: it trusts LEN and reads past the text into its secret API key (like Heartbleed).');

    const patchFile = join(src, 'fix-echo-overread.patch');
    out.say(`\n2. building the update from the fix (${patchFile}):`);
    out.say(readFileSync(patchFile, 'utf8').split('\n').filter((l) => /^[+-][^+-]/.test(l)).map((l) => `     ${l}`).join('\n'));
    const created = await createUpdate({ srcDir: src, patchFile, id: 'echo-overread-fix', outDir: work, progress });
    for (const f of created.manifest.functions) out.say(`   ${f.kind} ${f.object}:${f.function} (${f.reason})`);
    out.say(`   update written to ${created.path} in ${created.seconds.toFixed(1)} s`);

    out.say(`\n3. applying it to the running server (pid ${pid}) while it serves requests:`);
    const load = startLoad(port);
    await sleep(100);
    const applied = await applyToProcess(readUpdate(created.path), { pid, progress });
    await sleep(100);
    const traffic = await load.stop();
    for (const f of applied.functions) out.say(`   ${f.object}: ${f.function} 0x${f.from.toString(16)} -> new code at 0x${f.to.toString(16)}`);
    out.say(`   freeze time: ${applied.freezeMs.toFixed(3)} ms (the only moment the server was stopped); whole apply ${applied.totalMs.toFixed(0)} ms`);
    out.say(`   ${traffic.sent} requests served around the apply, ${traffic.failed} failed`);
    const fixedLeak = await request(port, 'ECHO 64 hi');
    const fixedNormal = await request(port, 'ECHO 5 hello');
    out.say(`   same pid ${pid}, still running: ${processAlive(pid) ? 'yes' : 'NO'}`);
    out.say(`   request "ECHO 64 hi"   -> ${fixedLeak}`);
    out.say(`   request "ECHO 5 hello" -> ${fixedNormal}`);
    const log = readFileSync(join(src, 'server.err'), 'utf8').trim().split('\n').pop() ?? '';
    if (log) out.say(`   server log: ${log}`);

    out.say(`\n4. undoing the update (tsplice undo ${applied.id} --pid ${pid}):`);
    const undone = await undoFromProcess(applied.id, { pid, progress });
    const leakAgain = await request(port, 'ECHO 64 hi');
    out.say(`   freeze time: ${undone.freezeMs.toFixed(3)} ms`);
    out.say(`   request "ECHO 64 hi"   -> ${leakAgain}`);

    const fixedOk = !fixedLeak.includes('api-key') && fixedNormal === 'ECHO hello' && leak.includes('api-key') &&
      leakAgain.includes('api-key') && traffic.failed === 0 && processAlive(pid);
    out.say(`\n${fixedOk ? 'The leak was fixed in the running server and taken back, without a restart.' : 'UNEXPECTED RESULT: see above.'}`);
    out.say(`freeze times: apply ${applied.freezeMs.toFixed(3)} ms, undo ${undone.freezeMs.toFixed(3)} ms`);
    if (p.values.keep) out.say(`(kept ${work}; the server is still running as pid ${pid})`);
    out.result({
      ok: fixedOk, pid, port, update: created.path,
      before: { leak }, after: { leak: fixedLeak, normal: fixedNormal }, afterUndo: { leak: leakAgain },
      applyFreezeMs: applied.freezeMs, undoFreezeMs: undone.freezeMs, applyTotalMs: applied.totalMs, traffic,
    });
    return fixedOk ? 0 : 1;
  } finally {
    if (!p.values.keep) {
      if (pid > 0 && processAlive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(work, { recursive: true, force: true });
    }
  }
}
