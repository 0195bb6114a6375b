// Start C programs as live targets for the process back end's tests.
//
// A target is started through `sh -c 'prog &'`, so it is not a child of this
// Node process: Node's own child reaper would otherwise collect ptrace stops.
// That is also how tsplice meets its targets in real use.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after } from 'node:test';
import { gcc, writeTree } from '../helpers/cc.js';

export interface TargetProgram {
  pid: number;
  binary: string;
  output: string;
  /** Everything the program printed so far. */
  text(): string;
  kill(): void;
}

/** Compile source (with -pthread) and run it; waits until it prints `readyLine`. */
export async function startProgram(
  dir: string,
  name: string,
  source: string,
  options: { readyLine?: RegExp; flags?: string[] } = {},
): Promise<TargetProgram> {
  writeTree(dir, { [`${name}.c`]: source });
  const binary = join(dir, name);
  gcc(dir, ['-O2', '-pthread', ...(options.flags ?? []), `${name}.c`, '-o', binary]);
  const output = join(dir, `${name}.out`);
  const launched = execFileSync('sh', ['-c', `'${binary}' > '${output}' 2>&1 < /dev/null & echo $!`], { encoding: 'utf8', cwd: dir });
  let pid = Number(launched.trim());
  const text = (): string => (existsSync(output) ? readFileSync(output, 'utf8') : '');
  const program: TargetProgram = {
    pid,
    binary,
    output,
    text,
    kill: () => {
      try {
        process.kill(program.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
  after(() => program.kill());
  const ready = options.readyLine ?? /^ready/m;
  await waitFor(() => ready.test(text()), `${name} to start`);
  // A program may announce a different pid (e.g. a forked child) as "ready PID".
  const announced = /^ready (\d+)/m.exec(text());
  if (announced) {
    pid = Number(announced[1]);
    const launcherPid = program.pid;
    program.pid = pid;
    after(() => {
      try {
        process.kill(launcherPid, 'SIGKILL');
      } catch {
        // already gone
      }
    });
  }
  return program;
}

export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Run-time address and size of a function in a running program, from nm and the load base in maps. */
export function functionAddress(pid: number, binary: string, symbol: string): { address: bigint; size: number } {
  const nm = execFileSync('nm', ['-S', '--defined-only', binary], { encoding: 'utf8' });
  const line = nm.split('\n').find((l) => l.endsWith(` ${symbol}`) && /^[0-9a-f]+ [0-9a-f]+ [tT] /.test(l));
  if (!line) throw new Error(`no function ${symbol} in ${binary}`);
  const [value, size] = line.split(' ');
  const header = execFileSync('readelf', ['-h', binary], { encoding: 'utf8' });
  let base = 0n;
  if (/Type:\s+DYN/.test(header)) {
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n');
    const first = maps.find((l) => l.endsWith(binary));
    if (!first) throw new Error(`${binary} is not mapped in ${pid}`);
    base = BigInt('0x' + first.split('-')[0]);
  }
  return { address: base + BigInt('0x' + value), size: parseInt(size, 16) };
}
