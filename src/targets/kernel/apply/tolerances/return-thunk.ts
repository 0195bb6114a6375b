// Return thunks (.return_sites): with CONFIG_RETHUNK every `ret` is compiled
// as `jmp __x86_return_thunk`. At boot the kernel rewrites each site to the
// thunk the CPU needs (a `jmp` to another thunk: retbleed, SRSO...) or, on a
// CPU that needs none, back to `ret` followed by int3 padding.

import { FlowControl, Mnemonic } from '../../../../x86/decode.js';
import type { MatchSite, StepResult, Tolerance } from '../../../../match/tolerance.js';
import type { SpecialSiteIndex } from '../special-sites.js';
import { rewritten, runSpan, sitesOf } from './site.js';

export function returnThunkTolerance(index: SpecialSiteIndex): Tolerance {
  return {
    name: 'kernel-return-thunk',
    match(site: MatchSite): StepResult {
      const insn = site.preCode[site.index];
      const start = Number(insn.ip);
      if (insn.flow !== FlowControl.UnconditionalBranch || insn.branchTarget === undefined) return undefined;
      const relocations = site.relocationsIn(start, start + insn.length);
      const toThunk = relocations.length === 1 && /return_thunk$/.test(relocations[0].symbolName);
      if (!toThunk && !sitesOf(index, site).returnThunks.has(start)) return undefined;
      const run = site.runAt(site.runAddress);
      if (!run) return undefined;
      if (run.flow === FlowControl.UnconditionalBranch && run.branchTarget !== undefined && run.length === insn.length) {
        return rewritten(site, insn.length, run.length);
      }
      if (run.flow === FlowControl.Return) {
        // ret, then int3 up to the size of the jmp it replaced.
        const span = runSpan(site, site.runAddress, insn.length);
        if (span && span.slice(1).every((i) => i?.mnemonic === Mnemonic.Int3)) return rewritten(site, insn.length, insn.length);
        return rewritten(site, insn.length, run.length);
      }
      return { mismatch: `the return site at +0x${start.toString(16)} is neither a jmp to a return thunk nor a ret` };
    },
  };
}
