// apply/undo/list --kernel: the kernel back end (livepatch) is not wired in yet.

import { TspliceError } from '../errors.js';
import type { Parsed } from './args.js';
import type { Output } from './output.js';

function notYet(command: string): never {
  throw new TspliceError('unsupported_change',
    `${command} --kernel is not available in this version of tsplice yet; process targets (--pid) are`);
}

export function applyKernel(_p: Parsed, _out: Output): number {
  return notYet('apply');
}

export function undoKernel(_p: Parsed, _out: Output): number {
  return notYet('undo');
}

export function listKernel(_p: Parsed, _out: Output): number {
  return notYet('list');
}
