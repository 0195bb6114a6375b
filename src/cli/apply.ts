// tsplice apply UPDATE (--pid PID | --all) [--retries N] [--json]

import { TspliceError, asTspliceError } from '../errors.js';
import { createProgress } from '../progress.js';
import { applyToProcess, type ProcessApplyResult } from '../targets/process/apply-update.js';
import { threadName } from '../targets/process/threads.js';
import { readUpdate } from '../update/package.js';
import { intOption, parseCommand } from './args.js';
import { bigintReplacer, type Output } from './output.js';
import { TARGET_OPTIONS, processesMapping, targetChoice } from './target-args.js';

export const APPLY_USAGE = 'tsplice apply UPDATE (--pid PID | --all | --kernel) [--retries N] [--timeout SECONDS] [--json]';

const hex = (v: bigint) => `0x${v.toString(16)}`;

export async function applyCommand(argv: string[], out: Output): Promise<number> {
  const p = parseCommand('apply', argv, { ...TARGET_OPTIONS, retries: { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean' } }, APPLY_USAGE);
  if (p.positionals.length !== 1) throw new TspliceError('bad_input', `apply takes exactly one update file\nusage: ${APPLY_USAGE}`);
  const target = targetChoice(p, 'apply', APPLY_USAGE, true);
  if (target.kind === 'kernel') return (await import('./kernel-commands.js')).applyKernel(p, out);
  const pkg = readUpdate(p.positionals[0]);
  if (pkg.manifest.target.kind !== 'process') {
    throw new TspliceError('bad_input', `${p.positionals[0]} is a ${pkg.manifest.target.kind} update: use --kernel`);
  }
  const retries = intOption(p, 'retries', 5, 1);
  const progress = createProgress({ quiet: out.json });

  if (target.kind === 'pid') {
    const result = await applyToProcess(pkg, { pid: target.pid, retries, progress });
    out.result({ ok: true, ...result });
    report(out, result);
    return 0;
  }

  const names = pkg.manifest.objects.flatMap((o) => [o.name, ...(o.soname ? [o.soname] : [])]);
  const pids = processesMapping(names);
  if (pids.length === 0) {
    throw new TspliceError('no_match', `no running process maps ${names.join(' or ')}`, { objects: names });
  }
  const results: Array<{ pid: number; ok: boolean; result?: ProcessApplyResult; error?: { code: string; message: string } }> = [];
  for (const pid of pids) {
    try {
      const result = await applyToProcess(pkg, { pid, retries, progress });
      results.push({ pid, ok: true, result });
      report(out, result);
    } catch (e) {
      const err = asTspliceError(e);
      results.push({ pid, ok: false, error: { code: err.code, message: err.message } });
      out.say(`process ${pid} (${threadName(pid, pid)}): not patched: [${err.code}] ${err.message}`);
    }
  }
  const failed = results.filter((r) => !r.ok).length;
  out.result(JSON.parse(JSON.stringify({ ok: failed === 0, processes: results }, bigintReplacer)));
  out.say(`${results.length - failed} of ${results.length} processes patched`);
  return failed === 0 ? 0 : 1;
}

function report(out: Output, r: ProcessApplyResult): void {
  out.say(`applied update ${r.id} to process ${r.pid} (${threadName(r.pid, r.pid)}):`);
  for (const f of r.functions) out.say(`  ${f.object}: ${f.function}  ${hex(f.from)} -> ${hex(f.to)}`);
  for (const s of r.skippedObjects) out.say(`  (${s} is not mapped by this process: skipped)`);
  out.say(`freeze time: ${r.freezeMs.toFixed(3)} ms (${r.tries} ${r.tries === 1 ? 'try' : 'tries'}); whole apply ${r.totalMs.toFixed(0)} ms`);
}
