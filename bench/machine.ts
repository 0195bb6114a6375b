// The machine and the tools the numbers came from, for the report's header.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { TOOL_VERSION } from '../src/version.js';

export interface MachineInfo {
  cores: number;
  cpu: string;
  memoryGiB: number;
  kernel: string;
  distribution: string;
  node: string;
  gcc: string;
  tsplice: string;
  koffi: string;
  icedX86: string;
}

const require = createRequire(import.meta.url);

export function describeMachine(): MachineInfo {
  return {
    cores: availableParallelism(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    distribution: osRelease(),
    node: process.version,
    gcc: commandOutput('gcc', ['-dumpfullversion']),
    tsplice: TOOL_VERSION,
    koffi: packageVersion('koffi'),
    icedX86: packageVersion('iced-x86'),
  };
}

function osRelease(): string {
  try {
    const text = readFileSync('/etc/os-release', 'utf8');
    return /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function commandOutput(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'not found';
  }
}

/** A dependency's version, from the package.json above its entry point (some packages do not export it). */
function packageVersion(name: string): string {
  try {
    let dir = dirname(require.resolve(name));
    for (;;) {
      const manifest = join(dir, 'package.json');
      if (existsSync(manifest)) {
        const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name && pkg.version) return pkg.version;
      }
      const parent = dirname(dir);
      if (parent === dir) return 'unknown';
      dir = parent;
    }
  } catch {
    return 'unknown';
  }
}
