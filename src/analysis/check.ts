// Changes a plain code update cannot carry.
//
// New code is loaded next to the old; variables that already exist in the
// target stay where they are, with the values the program gave them. So a
// patch that changes an existing variable's initial value, size or layout
// would run new code against old data: refuse it unless the update brings
// hooks that convert the data (see DESIGN.md, Hooks). New variables are fine:
// they travel with the new code.

import { TspliceError } from '../errors.js';
import type { DataChange, UnitDiff } from './diff.js';

export interface SupportOptions {
  /** The update supplies hooks that migrate changed data itself. */
  hooks?: boolean;
}

/** A data change that needs hooks, or undefined when the update can carry it as it is. */
export function whyUnsupported(change: DataChange): string | undefined {
  if (change.kind !== 'changed') return undefined;
  const what = change.global ? 'global variable' : 'static variable';
  if (change.writable) {
    return `${change.unit}: ${what} ${change.symbol} changes (${change.reason}); the running copy keeps its old ` +
      'value and layout';
  }
  // Other units keep reading the old copy of an exported constant, while the new code would read the new one.
  if (change.global) {
    return `${change.unit}: global constant ${change.symbol} changes (${change.reason}); code in other units ` +
      'keeps reading the old value';
  }
  return undefined;
}

/** Throw unsupported_change naming every variable whose change needs hooks. */
export function checkSupportedChanges(diffs: UnitDiff | UnitDiff[], options: SupportOptions = {}): void {
  if (options.hooks) return;
  const list = Array.isArray(diffs) ? diffs : [diffs];
  const problems = list.flatMap((d) => d.data).map((c) => ({ change: c, why: whyUnsupported(c) }))
    .filter((p): p is { change: DataChange; why: string } => p.why !== undefined);
  if (problems.length === 0) return;
  const names = problems.map((p) => p.change.symbol);
  throw new TspliceError('unsupported_change',
    `the patch changes existing data, which a live update cannot do on its own:\n` +
    problems.map((p) => `  - ${p.why}`).join('\n') +
    `\nhooks will be needed: add pre_apply/apply hooks to the update that convert ${names.join(', ')} in the ` +
    'running target, or change the patch so it keeps existing variables as they are (add new ones instead)',
    { variables: problems.map((p) => ({ unit: p.change.unit, symbol: p.change.symbol, reason: p.change.reason })) });
}
