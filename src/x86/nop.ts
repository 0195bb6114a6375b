// Which instructions are padding. Assemblers fill alignment gaps (.p2align)
// with NOPs of any length and encoding, and the amount of filling changes
// whenever the code before it changes size (a jump relaxed to rel8), so run-pre
// matching skips padding on both sides instead of comparing it.

import { Mnemonic, OpKind, Register, type Insn } from './decode.js';

const GPR64 = new Set<number>([
  Register.RAX, Register.RCX, Register.RDX, Register.RBX, Register.RSP, Register.RBP, Register.RSI, Register.RDI,
  Register.R8, Register.R9, Register.R10, Register.R11, Register.R12, Register.R13, Register.R14, Register.R15,
]);

/**
 * True for instructions that do nothing and exist only to pad: every NOP form
 * (90, 66 90, 0f 1f /0 with any prefixes) and the 64-bit `lea 0(%reg),%reg`
 * filler some assemblers use. `xchg %eax,%eax` is not a NOP in 64-bit mode
 * (it clears the upper half), and neither is a 32-bit lea.
 */
export function isPadding(insn: Insn): boolean {
  if (insn.invalid) return false;
  if (insn.mnemonic === Mnemonic.Nop) return true;
  if (insn.mnemonic === Mnemonic.Lea && insn.operands.length === 2 && insn.operands[0].kind === OpKind.Register) {
    const dest = insn.operands[0].register ?? Register.None;
    return (
      GPR64.has(dest) && insn.memoryBase === dest && insn.memoryIndex === Register.None &&
      insn.memoryDisplacement === 0n
    );
  }
  return false;
}
