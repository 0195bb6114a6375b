// tsplice undo ID (--pid PID | --kernel) [--retries N] [--timeout SECONDS] [--json]

import { TspliceError } from '../errors.js';
import { createProgress } from '../progress.js';
import { threadName } from '../targets/process/threads.js';
import { undoFromProcess } from '../targets/process/undo-update.js';
import { intOption, parseCommand } from './args.js';
import type { Output } from './output.js';
import { TARGET_OPTIONS, targetChoice } from './target-args.js';

export const UNDO_USAGE = 'tsplice undo ID (--pid PID | --kernel) [--retries N] [--timeout SECONDS] [--json]';

export async function undoCommand(argv: string[], out: Output): Promise<number> {
  const p = parseCommand('undo', argv, { ...TARGET_OPTIONS, retries: { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean' } }, UNDO_USAGE);
  if (p.positionals.length !== 1) throw new TspliceError('bad_input', `undo takes exactly one update id\nusage: ${UNDO_USAGE}`);
  const target = targetChoice(p, 'undo', UNDO_USAGE, false);
  if (target.kind === 'kernel') return (await import('./kernel-commands.js')).undoKernel(p, out);
  if (target.kind !== 'pid') throw new TspliceError('bad_input', UNDO_USAGE);
  const result = await undoFromProcess(p.positionals[0], {
    pid: target.pid, retries: intOption(p, 'retries', 5, 1), progress: createProgress({ quiet: out.json }),
  });
  out.result({ ok: true, ...result });
  out.say(`undid update ${result.id} in process ${result.pid} (${threadName(result.pid, result.pid)}): ` +
    `${result.functions.map((f) => f.function).join(', ')} restored`);
  out.say(`freeze time: ${result.freezeMs.toFixed(3)} ms (${result.tries} ${result.tries === 1 ? 'try' : 'tries'})`);
  return 0;
}
