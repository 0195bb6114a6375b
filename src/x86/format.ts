// Text for messages: an instruction as objdump would print it (AT&T syntax),
// with the bytes, so a mismatch report can be read without a disassembler.

import iced from 'iced-x86';
import type { Insn } from './decode.js';

const { Decoder, DecoderOptions, Formatter, FormatterSyntax } = iced;

/**
 * `mov 0x2e4e(%rip),%edx [8b 15 4e 2e 00 00]  # 0x4030`: the RIP-relative
 * target is appended unless `showTarget` is false (a relocated field's target
 * means nothing before linking).
 */
export function formatInsn(insn: Insn, showTarget = true): string {
  const hex = [...insn.bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  if (insn.invalid) return `(bad) [${hex}]`;
  const decoder = new Decoder(64, insn.bytes, DecoderOptions.None);
  const formatter = new Formatter(FormatterSyntax.Gas);
  try {
    formatter.ripRelativeAddresses = true;
    decoder.ip = insn.ip;
    const instr = decoder.decode();
    try {
      const text = formatter.format(instr);
      const target = showTarget && insn.ripTarget !== undefined ? `  # 0x${insn.ripTarget.toString(16)}` : '';
      return `${text} [${hex}]${target}`;
    } finally {
      instr.free();
    }
  } finally {
    formatter.free();
    decoder.free();
  }
}
