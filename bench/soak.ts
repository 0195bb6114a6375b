// Soak: many apply/undo cycles of the demo fix against echod while a
// separate C client keeps up a steady request load on 127.0.0.1. Every reply
// must be the unpatched or the patched server's correct answer; the server
// must never go away.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { compileTool } from './c-project.js';
import type { Cleanup } from './cleanup.js';
import { type CycleRun, runCycles } from './cycles.js';
import type { BuiltDemo } from './demo-server.js';
import { DEMO_REQUESTS } from './fixtures/demo-requests.js';
import { type LoadCounts, loadClientSource } from './fixtures/load-client.js';
import { launchDetached } from './launch.js';

export interface SoakOptions {
  cycles: number;
  /** Requests per second (one client thread: echod's handler shares one buffer between threads). */
  rate: number;
}

export interface SoakResult {
  cyclesRequested: number;
  run: CycleRun;
  load: LoadCounts;
  /** Connection errors, I/O errors and timeouts, and wrong replies. */
  failedRequests: number;
  /** 1 if the server died (it cannot crash twice). */
  crashes: number;
  /** The server is alive but did not answer a PING within 5 s after the soak. */
  hung: boolean;
  seconds: number;
}

export async function runSoak(cleanup: Cleanup, demo: BuiltDemo, options: SoakOptions,
  log: (text: string) => void): Promise<SoakResult> {
  const limitSeconds = 120 + options.cycles;
  const server = await launchDetached(cleanup, {
    argv: [demo.echod, '0'], cwd: demo.dir, output: join(demo.dir, 'echod.out'), limitSeconds,
    ready: /listening on 127\.0\.0\.1:\d+ pid=(\d+)/,
  });
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(server.text())?.[1]);
  const loadDir = join(demo.dir, 'load');
  mkdirSync(loadDir, { recursive: true });
  writeFileSync(join(loadDir, 'load.c'), loadClientSource(DEMO_REQUESTS));
  compileTool(loadDir, 'load.c', 'load');

  const started = Date.now();
  const client = spawn(join(loadDir, 'load'), [
    String(port), String(options.rate), '1', String(Math.ceil(options.rate * limitSeconds)), String(limitSeconds),
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (client.pid !== undefined) cleanup.addPid(client.pid);
  let stdout = '';
  let stderr = '';
  client.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  client.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => client.on('close', () => resolve()));
  try {
    await sleep(300); // the load is flowing before the first freeze
    const run = await runCycles({
      updatePath: demo.update.path, pid: server.pid, cycles: options.cycles, retries: 20, retryDelayMs: 20,
      onCycle: (n) => {
        if (n % 100 === 0) log(`  soak: ${n}/${options.cycles} cycles`);
      },
    });
    await sleep(300); // and keeps flowing after the last undo
    client.kill('SIGTERM');
    await Promise.race([exited, sleep(15000)]);
    const line = stdout.trim().split('\n').pop() ?? '';
    let load: LoadCounts;
    try {
      load = JSON.parse(line) as LoadCounts;
    } catch {
      throw new Error(`the load client printed no counts (stdout: ${stdout.slice(-200)}; stderr: ${stderr.slice(-500)})`);
    }
    if (load.wrongReplies > 0) log(`  soak: wrong replies, first ones:\n${stderr.trim()}`);
    const alive = server.alive();
    const answers = alive && (await ping(port)) === 'PONG \n';
    return {
      cyclesRequested: options.cycles, run, load, failedRequests: load.connectErrors + load.ioErrors + load.wrongReplies,
      crashes: alive && !run.targetGone ? 0 : 1, hung: alive && !answers, seconds: (Date.now() - started) / 1000,
    };
  } finally {
    if (client.exitCode === null && client.pid !== undefined) cleanup.kill(client.pid);
    cleanup.kill(server.pid);
  }
}

/** One PING to the server; its reply, or undefined after an error or 5 s. */
function ping(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let reply = '';
    const socket = connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(undefined);
    }, 5000);
    socket.on('connect', () => socket.write('PING\n'));
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    socket.on('error', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(reply);
    });
  });
}
