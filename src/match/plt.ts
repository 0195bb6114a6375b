// PLT stubs of a linked object and the symbol each one reaches. A call in the
// pre object to `foo@PLT` may land on a stub in the running code; the stub's
// `jmp *slot(%rip)` names the GOT slot, and the dynamic relocation filling
// that slot (.rela.plt JUMP_SLOT, or .rela.dyn GLOB_DAT for .plt.got) names
// the symbol. Covers the classic .plt, the IBT .plt.sec (endbr64 first) and
// .plt.got.

import { SHF_EXECINSTR } from '../elf/constants.js';
import type { ElfFile } from '../elf/reader.js';
import { decodeAll, FlowControl, Mnemonic } from '../x86/decode.js';
import type { DynamicSlot } from './image.js';

export interface PltStub {
  /** Run-time address a call goes to (the endbr64 when there is one, else the jmp). */
  address: bigint;
  /** Run-time address of the GOT slot the stub jumps through. */
  slot: bigint;
  /** The symbol the slot is bound to, without version. */
  symbol: string;
  version?: string;
  /** Which section holds it (.plt, .plt.sec, .plt.got). */
  section: string;
}

export function findPltStubs(elf: ElfFile, bias: bigint, slots: Map<bigint, DynamicSlot>): Map<bigint, PltStub> {
  const stubs = new Map<bigint, PltStub>();
  for (const section of elf.sections) {
    if ((section.flags & SHF_EXECINSTR) === 0n || !/^\.(i?plt)(\.|$)/.test(section.name)) continue;
    const code = decodeAll(section.data, section.addr + bias);
    code.forEach((insn, i) => {
      if (insn.flow !== FlowControl.IndirectBranch || insn.ripTarget === undefined) return;
      const bound = slots.get(insn.ripTarget);
      if (!bound?.symbol) return; // PLT0's jump to the resolver, or an IRELATIVE slot with no name
      const previous = code[i - 1];
      const entry =
        previous && previous.mnemonic === Mnemonic.Endbr64 && previous.ip + BigInt(previous.length) === insn.ip
          ? previous.ip
          : insn.ip;
      const stub: PltStub = { address: entry, slot: insn.ripTarget, symbol: bound.symbol, section: section.name };
      if (bound.version) stub.version = bound.version;
      stubs.set(entry, stub);
    });
  }
  return stubs;
}
