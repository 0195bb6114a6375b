// Small C projects for the benchmark: write the files, build them with make
// (the "running build"), write a patch as `diff -u` would, and turn it into
// an update with tsplice's own createUpdate.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createUpdate } from '../src/update/create.js';

export function writeTree(dir: string, files: Readonly<Record<string, string>>): void {
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  }
}

/** Build with make, as the program's own build would; throws with make's output on failure. */
export function runMake(dir: string): void {
  const made = spawnSync('make', ['-s'], { cwd: dir, encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`make in ${dir} failed:\n${made.stdout}${made.stderr}`);
}

/** A unified diff (a/FILE, b/FILE) turning before into after, written to patchPath. */
export function writePatch(workDir: string, file: string, before: string, after: string, patchPath: string): void {
  const a = join(workDir, 'patch-before');
  const b = join(workDir, 'patch-after');
  writeFileSync(a, before);
  writeFileSync(b, after);
  const diff = spawnSync('diff', ['-u', '--label', `a/${file}`, '--label', `b/${file}`, a, b], { encoding: 'utf8' });
  // diff exits 1 when the files differ, which is the point.
  if (diff.status !== 1) throw new Error(`diff failed (${diff.status}): ${diff.stderr}`);
  writeFileSync(patchPath, diff.stdout);
}

export interface CreatedUpdate {
  path: string;
  id: string;
  seconds: number;
}

export async function createFrom(srcDir: string, patchFile: string, outDir: string): Promise<CreatedUpdate> {
  const started = process.hrtime.bigint();
  const created = await createUpdate({ srcDir, patchFile, outDir });
  return { path: created.path, id: created.manifest.id, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

/** Compile one C file into an executable (tools of the benchmark itself, not patch targets). */
export function compileTool(dir: string, source: string, output: string, flags: string[] = []): void {
  execFileSync('gcc', ['-O2', '-Wall', '-pthread', ...flags, source, '-o', output], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}
