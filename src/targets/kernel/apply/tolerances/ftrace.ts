// ftrace: the compiler emits `call __fentry__` at each traceable function's
// entry (listed in __mcount_loc). At boot the kernel turns every one into a
// 5-byte NOP; while something traces the function (a live patch already
// applied to it, a tracer, a kprobe) the NOP is a call to an ftrace
// trampoline instead.

import { FlowControl } from '../../../../x86/decode.js';
import type { MatchSite, StepResult, Tolerance } from '../../../../match/tolerance.js';
import type { SpecialSiteIndex } from '../special-sites.js';
import { hex, paddingEndsAt, rewritten, sitesOf } from './site.js';

const FENTRY_CALL_LENGTH = 5;

export function ftraceTolerance(index: SpecialSiteIndex): Tolerance {
  return {
    name: 'kernel-ftrace-site',
    match(site: MatchSite): StepResult {
      const insn = site.preCode[site.index];
      const start = Number(insn.ip);
      const relocations = site.relocationsIn(start, start + insn.length);
      const callsFentry = relocations.length === 1 && relocations[0].symbolName === '__fentry__';
      if (insn.flow !== FlowControl.Call || insn.length !== FENTRY_CALL_LENGTH) return undefined;
      if (!callsFentry && !sitesOf(index, site).ftrace.has(start)) return undefined;
      const run = site.runAt(site.runAddress);
      if (run && run.flow === FlowControl.Call && run.length === FENTRY_CALL_LENGTH) {
        return rewritten(site, insn.length, run.length); // traced: a call to an ftrace trampoline
      }
      if (paddingEndsAt(site, site.runAddress, FENTRY_CALL_LENGTH)) return rewritten(site, insn.length, 0);
      return { mismatch: `the ftrace site at +${hex(start)} is neither a 5-byte NOP nor a call to an ftrace trampoline` };
    },
  };
}
