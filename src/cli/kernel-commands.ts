// apply / undo / list with --kernel: the livepatch back end, run on the
// machine whose kernel is patched (or in a `tsplice vm run` guest).

import { TspliceError } from '../errors.js';
import { createProgress } from '../progress.js';
import { applyKernelUpdate, formatKernelUpdates, listKernelUpdates, undoKernelUpdate } from '../targets/kernel/apply/index.js';
import { readUpdate } from '../update/package.js';
import { intOption, type Parsed } from './args.js';
import type { Output } from './output.js';

/** --timeout SECONDS for the livepatch transition (default: the back end's). */
function timeoutMs(p: Parsed): number | undefined {
  return p.values.timeout === undefined ? undefined : intOption(p, 'timeout', 30, 1) * 1000;
}

export async function applyKernel(p: Parsed, out: Output): Promise<number> {
  const pkg = readUpdate(p.positionals[0]);
  if (pkg.manifest.target.kind !== 'kernel') {
    throw new TspliceError('bad_input', `${p.positionals[0]} is an update for processes: use --pid PID or --all`);
  }
  const result = await applyKernelUpdate(pkg, { timeoutMs: timeoutMs(p), progress: createProgress({ quiet: out.json }) });
  out.result({ ok: true, ...result });
  out.say(`applied update ${result.id} to the running kernel (livepatch module ${result.module}):`);
  for (const f of result.functions) out.say(`  ${f.object === 'vmlinux' ? '' : `${f.object}:`}${f.function}`);
  out.say(`verified against live memory in ${result.verifyMs.toFixed(0)} ms; loaded in ${result.loadMs.toFixed(0)} ms; ` +
    `transition complete after ${result.transitionMs.toFixed(0)} ms`);
  return 0;
}

export async function undoKernel(p: Parsed, out: Output): Promise<number> {
  const result = await undoKernelUpdate(p.positionals[0], { timeoutMs: timeoutMs(p), progress: createProgress({ quiet: out.json }) });
  out.result({ ok: true, ...result });
  out.say(`undid update ${result.id} (livepatch module ${result.module} disabled and unloaded` +
    `${result.transitionMs > 0 ? `, transition ${result.transitionMs.toFixed(0)} ms` : ''})`);
  return 0;
}

export function listKernel(_p: Parsed, out: Output): number {
  const updates = listKernelUpdates();
  out.result({ ok: true, updates });
  process.stdout.write(out.json ? '' : formatKernelUpdates(updates));
  return 0;
}
