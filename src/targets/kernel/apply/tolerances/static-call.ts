// Inline static calls (.static_call_sites): `call __SCT__<name>` (or a tail
// `jmp`) is rewritten by static_call_update() into a direct call/jmp to the
// current target, a 5-byte NOP when the target is NULL, or `ret` for a tail
// call to nothing.

import { FlowControl } from '../../../../x86/decode.js';
import type { MatchSite, StepResult, Tolerance } from '../../../../match/tolerance.js';
import type { SpecialSiteIndex } from '../special-sites.js';
import { paddingEndsAt, rewritten, sitesOf } from './site.js';

export function staticCallTolerance(index: SpecialSiteIndex): Tolerance {
  return {
    name: 'kernel-static-call',
    match(site: MatchSite): StepResult {
      const insn = site.preCode[site.index];
      const start = Number(insn.ip);
      if (insn.flow !== FlowControl.Call && insn.flow !== FlowControl.UnconditionalBranch) return undefined;
      const relocations = site.relocationsIn(start, start + insn.length);
      const toTrampoline = relocations.length === 1 && relocations[0].symbolName.startsWith('__SCT__');
      if (!toTrampoline && !sitesOf(index, site).staticCalls.has(start)) return undefined;
      const run = site.runAt(site.runAddress);
      if (run && run.flow === insn.flow && run.length === insn.length && run.branchTarget !== undefined) {
        return rewritten(site, insn.length, run.length);
      }
      if (run && insn.flow === FlowControl.UnconditionalBranch && run.flow === FlowControl.Return) {
        return rewritten(site, insn.length, run.length);
      }
      if (paddingEndsAt(site, site.runAddress, insn.length)) return rewritten(site, insn.length, 0);
      return { mismatch: `the static call site at +0x${start.toString(16)} is not a call, a NOP or a ret` };
    },
  };
}
