// tsplice list (--pid PID | --kernel) [--json]

import { existsSync } from 'node:fs';
import { TspliceError } from '../errors.js';
import { readRecords } from '../targets/process/record.js';
import { threadName } from '../targets/process/threads.js';
import { parseCommand } from './args.js';
import type { Output } from './output.js';
import { TARGET_OPTIONS, targetChoice } from './target-args.js';

export const LIST_USAGE = 'tsplice list (--pid PID | --kernel) [--json]';

const hex = (v: bigint) => `0x${v.toString(16)}`;

export async function listCommand(argv: string[], out: Output): Promise<number> {
  const p = parseCommand('list', argv, { ...TARGET_OPTIONS, json: { type: 'boolean' } }, LIST_USAGE);
  if (p.positionals.length > 0) throw new TspliceError('bad_input', `list takes no arguments\nusage: ${LIST_USAGE}`);
  const target = targetChoice(p, 'list', LIST_USAGE, false);
  if (target.kind === 'kernel') return (await import('./kernel-commands.js')).listKernel(p, out);
  if (target.kind !== 'pid') throw new TspliceError('bad_input', LIST_USAGE);
  const { pid } = target;
  if (!existsSync(`/proc/${pid}`)) throw new TspliceError('target_gone', `there is no process ${pid}`, { pid });
  const records = readRecords(pid);
  out.result({
    ok: true, pid,
    updates: records.map((r) => ({
      id: r.id, order: r.order, appliedAt: r.appliedAt, objects: r.objects, freezeMs: r.freezeMs,
      functions: r.redirects.map((x) => ({ object: x.object, function: x.name, from: x.from, to: x.to })),
    })),
  });
  if (records.length === 0) out.say(`no update is applied to process ${pid} (${threadName(pid, pid)})`);
  else out.say(`updates applied to process ${pid} (${threadName(pid, pid)}), oldest first:`);
  for (const r of records) {
    out.say(`  ${r.id}  applied ${r.appliedAt}  freeze ${r.freezeMs.toFixed(3)} ms`);
    for (const x of r.redirects) out.say(`      ${x.object}: ${x.name}  ${hex(x.from)} -> ${hex(x.to)}`);
  }
  return 0;
}
