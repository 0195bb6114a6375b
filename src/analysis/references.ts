// What else of the post object a changed function needs, for the linker.
//
// Read-only data (strings, constants, tables) and `.cold` parts are loaded
// with the new code; so are functions and variables the patch adds. Existing
// functions and writable variables are not: the new code must use the
// running target's copies, which run-pre matching resolves.

import type { ElfFile, ElfSection } from '../elf/reader.js';
import type { UnitDiff } from './diff.js';
import { indexObject, sectionRole, targetEntity, type ObjectIndex, type SectionRole } from './object.js';

export interface SectionReference {
  /** Index of the section in the post object. */
  index: number;
  section: string;
  role: SectionRole;
  /** The function or variable it holds, when one symbol names it. */
  symbol?: string;
  /** Load this section with the update (true), or resolve references to it in the running target (false). */
  ship: boolean;
}

/**
 * Sections of the post object referenced by function `functionName` (a post
 * symbol name, as in FunctionChange.function), directly or through the
 * sections shipped with it (a string table's strings, a new variable's
 * initialiser), in order of discovery. The function's own section is not listed.
 */
export function referencedSections(post: ElfFile | ObjectIndex, functionName: string, diff: UnitDiff): SectionReference[] {
  const index = 'elf' in post ? post : indexObject(post);
  const fn = index.functions.find((f) => f.name === functionName);
  if (!fn) return [];
  const newFunctions = new Set(diff.functions.filter((c) => c.kind === 'new').map((c) => c.function));
  const newData = new Set(diff.data.filter((c) => c.kind === 'new').map((c) => c.symbol));
  const cold = new Set(fn.coldParts.map((c) => c.section.index));

  const found = new Map<number, SectionReference>();
  const queue: ElfSection[] = [fn.section, ...fn.coldParts.map((c) => c.section)];
  const visited = new Set<number>(queue.map((s) => s.index));
  while (queue.length > 0) {
    const from = queue.shift() as ElfSection;
    for (const r of index.relocs.get(from.index) ?? []) {
      const target = r.targetSection;
      if (!target || target.index === fn.section.index) continue;
      const role = sectionRole(target);
      const entity = targetEntity(index, r);
      let ship: boolean;
      if (role === 'text') ship = cold.has(target.index) || (entity !== undefined && newFunctions.has(entity.name));
      else if (role === 'data') ship = entity !== undefined && newData.has(entity.name);
      else ship = role !== 'other';
      const known = found.get(target.index);
      if (known) {
        known.ship ||= ship;
      } else {
        found.set(target.index, { index: target.index, section: target.name, role, symbol: entity?.name, ship });
      }
      // Follow what a shipped non-code section points at; a new function has its own list.
      if (ship && role !== 'text' && !visited.has(target.index)) {
        visited.add(target.index);
        queue.push(target);
      }
    }
  }
  return [...found.values()];
}
