// npm run bench: freeze time, whole apply time, call overhead and a soak
// against the demo server, then kernel create and apply → transition times in
// a QEMU guest, as one table (or --json). Progress goes to stderr.
// Everything started is killed at the end, on failure and on Ctrl-C.
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { measureCallOverhead } from './call-overhead.js';
import { Cleanup } from './cleanup.js';
import { buildDemo } from './demo-server.js';
import { type FreezeResult, freezeTargets, measureFreeze } from './freeze.js';
import { freezeGoal, freezeGrowth } from './goals.js';
import { measureKernel } from './kernel.js';
import { describeMachine } from './machine.js';
import { type BenchOptions, USAGE, parseOptions } from './options.js';
import { type BenchResults, type ProcessResults, renderReport, reportJson } from './report.js';
import { runSoak, type SoakResult } from './soak.js';
import { buildTargetProject } from './target-project.js';

async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseOptions(argv);
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: note: not root; ptrace of the targets needs root or kernel.yama.ptrace_scope=0\n');
  }
  const started = Date.now();
  const log = (text: string): void => {
    process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${text}\n`);
  };
  const cleanup = new Cleanup();
  const workDir = mkdtempSync(join(tmpdir(), 'tsplice-bench-'));
  cleanup.addDir(workDir);
  try {
    const machine = describeMachine();
    const loadStart = loadavg()[0];
    const processes = options.kernelOnly ? undefined : await measureProcesses(cleanup, workDir, options, machine.cores, log);
    const kernel = options.kernel
      ? await measureKernel(workDir, { runs: options.kernelRuns, cycles: options.kernelCycles }, log)
      : undefined;

    const results: BenchResults = {
      startedAt: new Date(started).toISOString(),
      seconds: (Date.now() - started) / 1000,
      machine,
      loadAverage: { start: loadStart, end: loadavg()[0] },
      options,
      processes,
      kernel,
    };
    process.stdout.write(options.json ? reportJson(results) : renderReport(results));
    return kernel?.error === undefined ? 0 : 1;
  } catch (e) {
    process.stderr.write(`bench: failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  } finally {
    cleanup.run();
  }
}

/** Sections 1-4: freeze time, whole apply time, call overhead and the soak, against processes. */
async function measureProcesses(cleanup: Cleanup, workDir: string, options: BenchOptions, cores: number,
  log: (text: string) => void): Promise<ProcessResults> {
  log('building the benchmark targets and their update');
  const project = await buildTargetProject(workDir);

  const freeze: FreezeResult[] = [];
  for (const target of freezeTargets(cores)) {
    log(`freeze time: ${target.label}, ${options.cycles} apply/undo cycles`);
    freeze.push(await measureFreeze(cleanup, project, target, options.cycles, log));
  }

  log(`call overhead: ${options.callRounds} rounds per phase`);
  const callOverhead = await measureCallOverhead(cleanup, project, options.callRounds, log);

  log(`building the demo server and creating its update (${options.createRuns} time${options.createRuns > 1 ? 's' : ''})`);
  const demo = await buildDemo(workDir, options.createRuns);

  let soak: SoakResult | undefined;
  if (options.soak > 0) {
    log(`soak: ${options.soak} apply/undo cycles against echod at ${options.rate} requests/s`);
    soak = await runSoak(cleanup, demo, { cycles: options.soak, rate: options.rate }, log);
  }
  return {
    freeze,
    growth: freezeGrowth(freeze),
    freezeGoal: freezeGoal(freeze),
    callOverhead,
    create: { benchProjectSeconds: project.update.seconds, demoSeconds: demo.createSeconds },
    soak,
  };
}

process.exitCode = await main(process.argv.slice(2));
