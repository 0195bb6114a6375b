// A jump or jcc to another function: in the pre object (one section per
// function) the assembler must leave a rel32 field with a relocation; in the
// normal build the target may sit in the same .text, and the assembler then
// resolves it itself and may pick the 2-byte rel8 form.

import { isPcRelative } from '../../elf/x86_64.js';
import { sameBranchOperation } from '../../x86/compare.js';
import { symbolAt } from '../relocation.js';
import type { MatchSite, StepResult, Tolerance } from '../tolerance.js';

export const relaxedBranch: Tolerance = {
  name: 'short-vs-near-branch',
  match(site: MatchSite): StepResult {
    const insn = site.preCode[site.index];
    const run = site.runAt(site.runAddress);
    if (!run || insn.branchTarget === undefined || run.branchTarget === undefined || !insn.displacement) return undefined;
    if (!sameBranchOperation(insn, run) || run.length === insn.length) return undefined;
    const start = Number(insn.ip);
    const end = start + insn.length;
    const relocations = site.relocationsIn(start, end);
    const [r] = relocations;
    if (relocations.length !== 1 || !isPcRelative(r.type)) return undefined;
    if (r.offset !== start + insn.displacement.offset || r.size !== insn.displacement.size) return undefined;
    // Pre: target = end + field = S + A + (end - P), so S = target - A - (end - P).
    const S = run.branchTarget - r.addend - BigInt(end - r.offset);
    const outcome = symbolAt(r, S, site);
    if ('mismatch' in outcome) return outcome;
    return { preLength: insn.length, runLength: run.length, resolved: [{ relocation: r, resolution: outcome.resolution }] };
  },
};
