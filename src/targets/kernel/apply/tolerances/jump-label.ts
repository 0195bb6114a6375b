// Static keys (__jump_table): each site is a 2- or 5-byte NOP or a jmp to
// the "yes" label, and the kernel flips it between the two whenever the key
// changes. The object has whichever the key's default asked for.

import { FlowControl } from '../../../../x86/decode.js';
import { isPadding } from '../../../../x86/nop.js';
import type { MatchSite, StepResult, Tolerance } from '../../../../match/tolerance.js';
import type { SpecialSiteIndex } from '../special-sites.js';
import { paddingEndsAt, rewritten, sitesOf } from './site.js';

export function jumpLabelTolerance(index: SpecialSiteIndex): Tolerance {
  return {
    name: 'kernel-jump-label',
    match(site: MatchSite): StepResult {
      const sites = sitesOf(index, site).jumpLabels;
      if (sites.size === 0) return undefined;
      const insn = site.preCode[site.index];
      const start = Number(insn.ip);
      const run = site.runAt(site.runAddress);
      const own = sites.get(start);
      if (own && insn.flow === FlowControl.UnconditionalBranch) {
        // A jmp in the object: the running site is a jmp to the same label, or a NOP (skipped already).
        if (run && run.flow === FlowControl.UnconditionalBranch && run.branchTarget !== undefined) {
          const targets = own.target !== undefined ? [{ pre: BigInt(own.target), run: run.branchTarget }] : [];
          return rewritten(site, insn.length, run.length, { targets });
        }
        if (paddingEndsAt(site, site.runAddress, insn.length)) return rewritten(site, insn.length, 0);
        return undefined;
      }
      // A NOP in the object (skipped by the matcher as padding): the running site may be a jmp.
      if (!run || run.flow !== FlowControl.UnconditionalBranch || run.branchTarget === undefined) return undefined;
      for (let j = site.index - 1; j >= 0 && isPadding(site.preCode[j]); j--) {
        const nop = site.preCode[j];
        const label = sites.get(Number(nop.ip));
        if (!label || nop.length !== run.length) continue;
        const targets = label.target !== undefined ? [{ pre: BigInt(label.target), run: run.branchTarget }] : [];
        return { preLength: 0, runLength: run.length, resolved: [], targets };
      }
      return undefined;
    },
  };
}
