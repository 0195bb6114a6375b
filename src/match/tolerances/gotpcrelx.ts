// Linker GOT relaxation (R_X86_64_GOTPCRELX / REX_GOTPCRELX): when the symbol
// turns out to be local to the linked object, ld rewrites the load through
// the GOT into a direct reference:
//   mov  foo@GOTPCREL(%rip),%reg  →  lea foo(%rip),%reg   or  mov $foo,%reg
//   call *foo@GOTPCREL(%rip)      →  addr32 call foo       (or call foo; nop)
//   jmp  *foo@GOTPCREL(%rip)      →  jmp foo; nop
//   test %reg,foo@GOTPCREL(%rip)  →  test $foo,%reg
//   binop foo@GOTPCREL(%rip),%reg →  binop $foo,%reg       (add, adc, and, cmp, or, sbb, sub, xor)
// The trailing nop is padding to the matcher.

import { isGotPcRelative } from '../../elf/x86_64.js';
import { FlowControl, Mnemonic, OpKind, type Insn } from '../../x86/decode.js';
import { symbolAt } from '../relocation.js';
import type { MatchSite, StepResult, Tolerance } from '../tolerance.js';

const BINOPS = new Set<number>([
  Mnemonic.Add, Mnemonic.Adc, Mnemonic.And, Mnemonic.Cmp, Mnemonic.Or, Mnemonic.Sbb, Mnemonic.Sub, Mnemonic.Xor,
]);

function registerOperand(insn: Insn): number | undefined {
  return insn.operands.find((o) => o.kind === OpKind.Register)?.register;
}

function immediateOperand(insn: Insn): bigint | undefined {
  return insn.operands.find((o) => o.immediate !== undefined)?.immediate;
}

export const gotpcrelxRelaxation: Tolerance = {
  name: 'gotpcrelx-relaxation',
  match(site: MatchSite): StepResult {
    const insn = site.preCode[site.index];
    const run = site.runAt(site.runAddress);
    if (!run || insn.ripTarget === undefined || !insn.displacement) return undefined;
    const start = Number(insn.ip);
    const relocations = site.relocationsIn(start, start + insn.length);
    const [r] = relocations;
    if (relocations.length !== 1 || !isGotPcRelative(r.type) || r.offset !== start + insn.displacement.offset) {
      return undefined;
    }
    const S = relaxedValue(insn, run, r.addend);
    if (S === undefined) return undefined;
    const outcome = symbolAt(r, BigInt.asUintN(64, S), site);
    if ('mismatch' in outcome) return outcome;
    return { preLength: insn.length, runLength: run.length, resolved: [{ relocation: r, resolution: outcome.resolution }] };
  },
};

/** The symbol address the rewritten instruction embeds, or undefined when `run` is not a relaxation of `pre`. */
function relaxedValue(pre: Insn, run: Insn, addend: bigint): bigint | undefined {
  // Direct call/jmp: ld keeps the addend and makes the field PC-relative: target = S + A + 4.
  if (pre.flow === FlowControl.IndirectCall || pre.flow === FlowControl.IndirectBranch) {
    const wanted = pre.flow === FlowControl.IndirectCall ? FlowControl.Call : FlowControl.UnconditionalBranch;
    if (run.flow !== wanted || run.branchTarget === undefined) return undefined;
    return run.branchTarget - addend - 4n;
  }
  const reg = registerOperand(pre);
  if (reg === undefined || registerOperand(run) !== reg) return undefined;
  if (pre.mnemonic === Mnemonic.Mov) {
    if (run.mnemonic === Mnemonic.Lea && run.ripTarget !== undefined && run.displacement) {
      // Same field, now the symbol itself: S = field + P - A, i.e. target - (end - P) - A.
      const P = run.ip + BigInt(run.displacement.offset);
      return run.ripTarget - (run.ip + BigInt(run.length) - P) - addend;
    }
    if (run.mnemonic === Mnemonic.Mov && !run.hasMemory) return immediateOperand(run); // R_X86_64_32(S), no addend
    return undefined;
  }
  if ((pre.mnemonic === Mnemonic.Test || BINOPS.has(pre.mnemonic)) && run.mnemonic === pre.mnemonic && !run.hasMemory) {
    return immediateOperand(run);
  }
  return undefined;
}
