// The bundled demo (demo/server: echod and fix-echo-overread.patch), built in
// a copy as its own Makefile builds it, and its update made with createUpdate
// (timed: the "create time" of the report).
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CreatedUpdate, createFrom, runMake } from './c-project.js';

export const DEMO_SOURCE = fileURLToPath(new URL('../demo/server', import.meta.url));
export const DEMO_PATCH = join(DEMO_SOURCE, 'fix-echo-overread.patch');

export interface BuiltDemo {
  dir: string;
  echod: string;
  update: CreatedUpdate;
  /** Seconds of each createUpdate run. */
  createSeconds: number[];
}

export async function buildDemo(workDir: string, createRuns: number): Promise<BuiltDemo> {
  const dir = join(workDir, 'demo-server');
  cpSync(DEMO_SOURCE, dir, { recursive: true, filter: (src) => !/\.(o|out)$|\/echod$/.test(src) });
  runMake(dir);
  const createSeconds: number[] = [];
  let update: CreatedUpdate | undefined;
  for (let i = 0; i < Math.max(1, createRuns); i++) {
    update = await createFrom(dir, DEMO_PATCH, join(workDir, 'demo-updates'));
    createSeconds.push(update.seconds);
  }
  return { dir, echod: join(dir, 'echod'), update: update as CreatedUpdate, createSeconds };
}
