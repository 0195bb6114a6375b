// Build the benchmark's C project (fixtures/target-project.ts) and make its
// update: looper and calltimer, both patched by one update of work().
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type CreatedUpdate, createFrom, runMake, writePatch, writeTree } from './c-project.js';
import { TARGET_PROJECT, WORK_POST, WORK_PRE } from './fixtures/target-project.js';

export interface BuiltTargetProject {
  dir: string;
  looper: string;
  calltimer: string;
  update: CreatedUpdate;
}

export async function buildTargetProject(workDir: string): Promise<BuiltTargetProject> {
  const dir = join(workDir, 'target-project');
  mkdirSync(dir, { recursive: true });
  writeTree(dir, TARGET_PROJECT);
  runMake(dir);
  const patch = join(workDir, 'work-constant.patch');
  writePatch(workDir, 'work.c', WORK_PRE, WORK_POST, patch);
  const update = await createFrom(dir, patch, join(workDir, 'updates'));
  return { dir, looper: join(dir, 'looper'), calltimer: join(dir, 'calltimer'), update };
}
