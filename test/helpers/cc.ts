// Compile C fixtures with the machine's gcc at test time.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Write files (path relative to dir → content) into dir. */
export function writeTree(dir: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  }
}

/** Run gcc with args in dir; throws with gcc's stderr on failure. */
export function gcc(dir: string, args: string[]): void {
  execFileSync('gcc', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Compile one C source string to an object file; returns its path. */
export function compileObject(dir: string, name: string, source: string, flags: string[] = ['-O2']): string {
  writeTree(dir, { [`${name}.c`]: source });
  const out = join(dir, `${name}.o`);
  gcc(dir, ['-c', ...flags, `${name}.c`, '-o', out]);
  return out;
}
