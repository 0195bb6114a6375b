// Start a target program the way tsplice meets one in real use: not a child
// of this Node process (libuv's child reaper would take ptrace stops meant
// for the session), through `sh -c '... &'`. `timeout -s KILL` bounds its
// life even if the benchmark itself is killed; the program announces its own
// pid (the one to patch) on its ready line.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Cleanup } from './cleanup.js';

export interface LaunchOptions {
  /** Program and arguments. */
  argv: string[];
  cwd: string;
  /** File that collects the program's stdout and stderr. */
  output: string;
  /** Hard limit on the program's life. */
  limitSeconds: number;
  /** Matches the ready line; its first group is the program's pid. */
  ready: RegExp;
  /** Default 10 s. */
  readyTimeoutMs?: number;
}

export interface LaunchedProgram {
  pid: number;
  /** Everything the program wrote so far. */
  text(): string;
  /** Still running (not exited, not a zombie). */
  alive(): boolean;
}

export async function launchDetached(cleanup: Cleanup, options: LaunchOptions): Promise<LaunchedProgram> {
  const words = ['timeout', '-s', 'KILL', String(Math.ceil(options.limitSeconds)), ...options.argv].map(shellQuote);
  const script = `${words.join(' ')} > ${shellQuote(options.output)} 2>&1 < /dev/null & echo $!`;
  const watchdog = Number(execFileSync('sh', ['-c', script], { cwd: options.cwd, encoding: 'utf8' }).trim());
  cleanup.addPid(watchdog);
  const text = (): string => (existsSync(options.output) ? readFileSync(options.output, 'utf8') : '');
  const deadline = Date.now() + (options.readyTimeoutMs ?? 10000);
  let match = options.ready.exec(text());
  while (!match) {
    if (Date.now() > deadline || !isAlive(watchdog)) {
      throw new Error(`${options.argv.join(' ')} did not start; it printed: ${text().slice(0, 500) || '(nothing)'}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
    match = options.ready.exec(text());
  }
  const pid = Number(match[1]);
  cleanup.addPid(pid);
  return { pid, text, alive: () => isAlive(pid) };
}

/** A process exists and is not a zombie waiting for its parent. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
