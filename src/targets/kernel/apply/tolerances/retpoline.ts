// Retpolines (.retpoline_sites): with CONFIG_RETPOLINE an indirect call or
// jump through a register is compiled as a call/jmp to
// __x86_indirect_thunk_<reg>. At boot the kernel keeps the thunk or, when the
// chosen Spectre v2 mitigation allows, rewrites the site in place to the
// plain indirect `call *%reg` / `jmp *%reg` (optionally after an lfence),
// padded with NOPs.

import { FlowControl, Mnemonic, Register } from '../../../../x86/decode.js';
import { isPadding } from '../../../../x86/nop.js';
import type { MatchSite, StepResult, Tolerance } from '../../../../match/tolerance.js';
import type { SpecialSiteIndex } from '../special-sites.js';
import { rewritten, runSpan, sitesOf } from './site.js';

const REGISTERS: Record<string, number> = {
  rax: Register.RAX, rcx: Register.RCX, rdx: Register.RDX, rbx: Register.RBX, rsp: Register.RSP, rbp: Register.RBP,
  rsi: Register.RSI, rdi: Register.RDI, r8: Register.R8, r9: Register.R9, r10: Register.R10, r11: Register.R11,
  r12: Register.R12, r13: Register.R13, r14: Register.R14, r15: Register.R15,
};

export function retpolineTolerance(index: SpecialSiteIndex): Tolerance {
  return {
    name: 'kernel-retpoline',
    match(site: MatchSite): StepResult {
      const insn = site.preCode[site.index];
      const start = Number(insn.ip);
      if (insn.flow !== FlowControl.Call && insn.flow !== FlowControl.UnconditionalBranch) return undefined;
      const relocations = site.relocationsIn(start, start + insn.length);
      const thunk = relocations.length === 1 ? /^__x86_indirect_(?:call_)?thunk_(r\w+)$/.exec(relocations[0].symbolName) : null;
      if (!thunk && !sitesOf(index, site).retpolines.has(start)) return undefined;
      const register = thunk ? REGISTERS[thunk[1]] : undefined;
      const span = runSpan(site, site.runAddress, insn.length);
      if (!span) return undefined;
      const body = span.filter((i) => i && !isPadding(i));
      const [first, second] = body;
      const indirect = body.length === 2 && first?.mnemonic === Mnemonic.Lfence ? second : body.length === 1 ? first : undefined;
      const wanted = insn.flow === FlowControl.Call ? FlowControl.IndirectCall : FlowControl.IndirectBranch;
      if (!indirect || indirect.flow !== wanted || indirect.hasMemory) return undefined;
      if (register !== undefined && indirect.operands[0]?.register !== register) {
        return { mismatch: `the retpoline site at +0x${start.toString(16)} goes through another register than ${thunk![1]}` };
      }
      return rewritten(site, insn.length, insn.length);
    },
  };
}
