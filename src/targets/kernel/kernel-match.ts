// Run-pre matching at create time: the pre code of each changed function
// must be, byte for byte, the code of the target kernel's function (from the
// -dbg vmlinux or the module's .ko), apart from what linking and the kernel's
// build tools legitimately change: relocation fields, and the ftrace entry
// (`call __fentry__` in one, a 5-byte NOP in the other). This proves the
// source the update was built from is the source of the running build, and
// picks which of several same-named local functions is the one patched.

import { SHN_UNDEF } from '../../elf/constants.js';
import { relocationsFor, type ElfFile, type ElfSymbol } from '../../elf/reader.js';
import { relocationFieldSize } from '../../elf/x86_64.js';
import type { KernelSymbol, KernelSymbols } from './kernel-symbols.js';

const CALL = 0xe8;
const NOP5 = [Buffer.from([0x0f, 0x1f, 0x44, 0x00, 0x00]), Buffer.from([0x66, 0x0f, 0x1f, 0x44, 0x00])];

/** undefined when the kernel's copy is the pre code; else the first difference, in words. */
export function comparePreCode(pre: ElfFile, preSymbol: ElfSymbol, kernel: KernelSymbols, candidate: KernelSymbol): string | undefined {
  if (candidate.size !== preSymbol.size) {
    return `${preSymbol.name} is ${preSymbol.size} bytes in the update's source but ${candidate.size} in ${kernel.object}`;
  }
  const section = pre.sections[preSymbol.shndx];
  const start = Number(preSymbol.value);
  const mine = section.data.subarray(start, start + preSymbol.size);
  const theirs = kernel.bytes(candidate);
  const masked = new Uint8Array(preSymbol.size);
  // Where the ftrace call is: at a __fentry__ relocation, or (objtool turned it into a NOP and dropped
  // the relocation) at the entry, after an endbr64 when there is one.
  const fentry = new Set<number>([0, 4]);
  for (const r of relocationsFor(pre, section)) {
    const offset = Number(r.offset) - start;
    if (offset < 0 || offset >= preSymbol.size) continue;
    const size = relocationFieldSize(r.type);
    for (let i = 0; i < size && offset + i < masked.length; i++) masked[offset + i] = 1;
    const sym = pre.symbols[r.symbolIndex];
    if (sym?.name === '__fentry__' && sym.shndx === SHN_UNDEF && offset >= 1) fentry.add(offset - 1);
  }
  for (let i = 0; i < mine.length; i++) {
    if (fentry.has(i) && isFentrySlot(mine, i) && isFentrySlot(theirs, i)) {
      i += 4;
      continue;
    }
    if (masked[i] || mine[i] === theirs[i]) continue;
    return `${preSymbol.name}+0x${i.toString(16)}: the update's pre code has ${hex(mine, i)}, ${kernel.object} has ${hex(theirs, i)}`;
  }
  return undefined;
}

function isFentrySlot(code: Buffer, at: number): boolean {
  if (at < 0 || at + 5 > code.length) return false;
  if (code[at] === CALL) return true;
  const five = code.subarray(at, at + 5);
  return NOP5.some((n) => n.equals(five));
}

function hex(code: Buffer, at: number): string {
  return [...code.subarray(at, Math.min(at + 4, code.length))].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}
