// Everything the benchmark starts (target programs, watchdogs, the load
// client) and every directory it makes is registered here, and torn down
// once: at the end of the run, on an error, on Ctrl-C or SIGTERM.
import { readFileSync, rmSync } from 'node:fs';

export class Cleanup {
  /** pid → its start time, so a pid reused by someone else's process is never killed. */
  private readonly pids = new Map<number, string | undefined>();
  private readonly dirs = new Set<string>();
  private done = false;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\nbench: ${signal}: stopping everything it started\n`);
    this.run();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  private readonly onExit = (): void => this.run();

  /** Install the handlers; call run() (or let the process exit) to clean up. */
  constructor() {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    process.on('SIGHUP', this.onSignal);
    process.on('exit', this.onExit);
  }

  addPid(pid: number): void {
    this.pids.set(pid, startTime(pid));
  }

  /** Kill one registered process now (it stays forgotten afterwards). */
  kill(pid: number): void {
    if (this.pids.has(pid)) killIfSame(pid, this.pids.get(pid));
    this.pids.delete(pid);
  }

  addDir(dir: string): void {
    this.dirs.add(dir);
  }

  /** Kill every registered process and remove every directory; safe to call twice. */
  run(): void {
    if (this.done) return;
    this.done = true;
    // Newest first: a program goes before the `timeout` watchdog that started it, which then reaps it.
    for (const [pid, started] of [...this.pids].reverse()) killIfSame(pid, started);
    this.pids.clear();
    for (const dir of this.dirs) rmSync(dir, { recursive: true, force: true });
    this.dirs.clear();
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    process.off('SIGHUP', this.onSignal);
    process.off('exit', this.onExit);
  }
}

/** Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function killIfSame(pid: number, started: string | undefined): void {
  if (started === undefined || startTime(pid) !== started) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
