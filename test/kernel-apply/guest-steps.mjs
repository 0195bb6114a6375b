// Runs inside the test guest: a list of apply/list/undo steps against the
// live kernel through tsplice's kernel API (dist/), one JSON line per step.
// Usage: node guest-steps.mjs STEPS.json   (TSPLICE_ROOT: the project root)
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const api = await import(pathToFileURL(join(process.env.TSPLICE_ROOT, 'dist/src/targets/kernel/apply/index.js')).href);

function readPackage(dir) {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  const files = new Map(manifest.files.map((f) => [f, readFileSync(join(dir, f))]));
  return { manifest, files, path: dir };
}

const bigints = (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v);

async function run(step) {
  switch (step.op) {
    case 'apply': return api.applyKernelUpdate(readPackage(step.package), { timeoutMs: step.timeoutMs });
    case 'undo': return api.undoKernelUpdate(step.id, { timeoutMs: step.timeoutMs });
    case 'list': return api.listKernelUpdates();
    case 'cmdline': return readFileSync('/proc/cmdline', 'utf8');
    case 'loaded': return {
      modules: readdirSync('/sys/module').filter((m) => m.startsWith('tsplice_')),
      livepatches: existsSync('/sys/kernel/livepatch') ? readdirSync('/sys/kernel/livepatch') : [],
    };
    default: throw new Error(`unknown step ${step.op}`);
  }
}

for (const step of JSON.parse(readFileSync(process.argv[2], 'utf8'))) {
  let line;
  try {
    line = { step, ok: true, result: await run(step) };
  } catch (e) {
    line = { step, ok: false, error: { code: e.code ?? 'exception', message: e.message, details: e.details ?? {} } };
  }
  process.stdout.write(JSON.stringify(line, bigints) + '\n');
}
