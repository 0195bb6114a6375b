// Take an applied update back: freeze, check that no thread is in (or will
// return into) the update's new code, restore the original bytes at every
// old entry, resume; then free the new code and the record. Last in, first
// out: a later update may call into or jump over this one's code.

import { switchCode } from '../../apply/switch.js';
import { decodeJmpRel32 } from '../../apply/trampoline.js';
import { TspliceError } from '../../errors.js';
import { type Progress, silentProgress } from '../../progress.js';
import { readRecords, removeRecord, type StoredRecord } from './record.js';
import { remoteMunmap } from './remote-syscall.js';
import { ProcessSession } from './session.js';
import { processSwitchTarget } from './switch-target.js';
import { goneInstead } from './threads.js';

export interface ProcessUndoOptions {
  pid: number;
  retries?: number;
  retryDelayMs?: number;
  progress?: Progress;
}

export interface ProcessUndoResult {
  id: string;
  pid: number;
  functions: Array<{ object: string; function: string; at: bigint }>;
  freezeMs: number;
  tries: number;
  totalMs: number;
}

export async function undoFromProcess(id: string, options: ProcessUndoOptions): Promise<ProcessUndoResult> {
  try {
    return await undoInner(id, options);
  } catch (e) {
    throw goneInstead(options.pid, e, `the undo of update ${id}`);
  }
}

async function undoInner(id: string, options: ProcessUndoOptions): Promise<ProcessUndoResult> {
  const started = process.hrtime.bigint();
  const progress = options.progress ?? silentProgress;
  const { pid } = options;
  const records = readRecords(pid);
  const record = records.find((r) => r.id === id);
  if (!record) {
    throw new TspliceError('not_applied', `update ${id} is not applied to process ${pid}` +
      (records.length > 0 ? ` (applied: ${records.map((r) => r.id).join(', ')})` : ' (no update is applied to it)'),
      { pid, id });
  }
  const later = records.filter((r) => r.order > record.order);
  if (later.length > 0) {
    throw new TspliceError('bad_input', `update ${id} cannot be undone before the updates applied after it: ` +
      `undo ${later.map((r) => r.id).reverse().join(', then ')} first (updates are undone last in, first out)`,
      { pid, id, later: later.map((r) => r.id) });
  }

  const session = ProcessSession.attach(pid);
  try {
    checkJumpsIntact(session, record);
    progress.step('switching back (freeze, stack check, original code)');
    const switched = await switchCode(processSwitchTarget(session), {
      writes: record.redirects.map((r) => ({ addr: r.from, bytes: Buffer.from(r.original, 'hex') })),
      busy: record.codeRegions.map((r, i) => ({ name: `new code of ${id} (region ${i})`, start: r.start, end: r.start + r.size })),
      retries: options.retries,
      retryDelayMs: options.retryDelayMs,
    });
    progress.done();
    removeRecord(session, record);
    for (const region of record.codeRegions) remoteMunmap(session, region);
    return {
      id, pid, freezeMs: switched.freezeMs, tries: switched.tries,
      functions: record.redirects.map((r) => ({ object: r.object, function: r.name, at: r.from })),
      totalMs: Number(process.hrtime.bigint() - started) / 1e6,
    };
  } catch (e) {
    progress.fail();
    throw e;
  } finally {
    session.detach();
  }
}

/** Every old entry must still hold the jump this update wrote; anything else means someone else changed the code. */
function checkJumpsIntact(session: ProcessSession, record: StoredRecord): void {
  for (const r of record.redirects) {
    const bytes = session.memory.read(r.from, 5);
    if (decodeJmpRel32(r.from, bytes) !== r.to) {
      throw new TspliceError('internal', `the jump of update ${record.id} at 0x${r.from.toString(16)} (${r.name}) was ` +
        'changed by something other than tsplice; the update cannot be undone safely', { id: record.id, function: r.name });
    }
  }
}
