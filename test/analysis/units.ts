// Build pre/post objects of one C translation unit the way tsplice's build
// does (-ffunction-sections -fdata-sections) and diff them.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseElf, type ElfFile } from '../../src/elf/reader.js';
import { diffUnit, type UnitDiff } from '../../src/analysis/diff.js';
import { compileObject } from '../helpers/cc.js';
import { tempDir } from '../helpers/tmp.js';

export const LEVELS = ['-O0', '-O2'] as const;
export type Level = (typeof LEVELS)[number];

let counter = 0;

/**
 * Compile `source` as `unit.c` in a fresh directory (so __FILE__ is the same
 * for pre and post) and parse the object.
 */
export function buildObject(source: string, level: Level, extraFlags: string[] = []): ElfFile {
  const dir = join(tempDir('tsplice-analysis-'), `b${counter++}`);
  const path = compileObject(dir, 'unit', source, [level, '-ffunction-sections', '-fdata-sections', ...extraFlags]);
  return parseElf(readFileSync(path), path);
}

export interface Sources {
  pre: string;
  post: string;
  /** The post source with #line directives restoring pre line numbers. */
  lines?: string;
  unit?: string;
  flags?: string[];
}

export function diffSources(s: Sources, level: Level): UnitDiff {
  return diffUnit({
    unit: s.unit ?? 'unit.c',
    pre: buildObject(s.pre, level, s.flags),
    post: buildObject(s.post, level, s.flags),
    lines: s.lines === undefined ? undefined : buildObject(s.lines, level, s.flags),
  });
}

/** "kind name" for every function record, sorted: the exact answer a test expects. */
export function functionSummary(d: UnitDiff): string[] {
  return d.functions.map((f) => `${f.kind} ${f.function}`).sort();
}

export function dataSummary(d: UnitDiff): string[] {
  return d.data.map((c) => `${c.kind} ${c.symbol}`).sort();
}

export function reasonOf(d: UnitDiff, fn: string): string {
  const rec = d.functions.find((f) => f.function === fn);
  if (!rec) throw new Error(`no record for ${fn} in ${JSON.stringify(functionSummary(d))}`);
  return rec.reason;
}
