// Guests run the compiled project (dist/): build it when the sources are newer.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './cli.js';

export const DIST_CLI = join(REPO_ROOT, 'bin/tsplice.mjs');
const DIST_ENTRY = join(REPO_ROOT, 'dist/src/cli/main.js');

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export function ensureBuilt(): void {
  if (existsSync(DIST_ENTRY) && statSync(DIST_ENTRY).mtimeMs >= newestSource(join(REPO_ROOT, 'src'))) return;
  try {
    execFileSync(process.execPath, [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
      cwd: REPO_ROOT, stdio: 'ignore',
    });
  } catch {
    // Type errors elsewhere in the tree still emit JavaScript; the check below decides.
  }
  assert.ok(existsSync(DIST_ENTRY), `${DIST_ENTRY} is missing: run npm run build`);
}
