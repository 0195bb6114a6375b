// PLT stubs of a linked object and the symbol each one reaches. A call in the
// pre object to `foo@PLT` may land on a stub in the running code; the stub's
// `jmp *slot(%rip)` names the GOT slot, and the dynamic relocation filling
// that slot (.rela.plt JUMP_SLOT, or .rela.dyn GLOB_DAT for .plt.got) names
// the symbol. Covers the classic .plt, the IBT .plt.sec (endbr64 first) and
// .plt.got. A stub of the program's own IFUNC has an IRELATIVE slot with no
// symbol: its addend is the resolver, which the IFUNC symbol names.

import { SHF_EXECINSTR, SHN_UNDEF, STT_GNU_IFUNC } from '../elf/constants.js';
import type { ElfFile } from '../elf/reader.js';
import { R_X86_64_IRELATIVE } from '../elf/x86_64.js';
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
  /** The slot is an IRELATIVE one: the stub calls an IFUNC the object itself defines (maybe a static one). */
  irelative?: boolean;
}

export function findPltStubs(elf: ElfFile, bias: bigint, slots: Map<bigint, DynamicSlot>): Map<bigint, PltStub> {
  const stubs = new Map<bigint, PltStub>();
  const ifuncs = ifuncNamesByResolver(elf);
  for (const section of elf.sections) {
    if ((section.flags & SHF_EXECINSTR) === 0n || !/^\.(i?plt)(\.|$)/.test(section.name)) continue;
    const code = decodeAll(section.data, section.addr + bias);
    code.forEach((insn, i) => {
      if (insn.flow !== FlowControl.IndirectBranch || insn.ripTarget === undefined) return;
      const bound = slots.get(insn.ripTarget);
      const irelative = bound?.type === R_X86_64_IRELATIVE;
      const symbol = irelative ? ifuncs.get(bound.addend) : bound?.symbol;
      // PLT0's jump to the resolver, or an IRELATIVE slot whose IFUNC has no name (stripped).
      if (!bound || symbol === undefined) return;
      const previous = code[i - 1];
      const entry =
        previous && previous.mnemonic === Mnemonic.Endbr64 && previous.ip + BigInt(previous.length) === insn.ip
          ? previous.ip
          : insn.ip;
      const stub: PltStub = { address: entry, slot: insn.ripTarget, symbol, section: section.name };
      if (bound.version) stub.version = bound.version;
      if (irelative) stub.irelative = true;
      stubs.set(entry, stub);
    });
  }
  return stubs;
}

/** The IFUNC symbols of the object by their resolver's link-time address (an IRELATIVE addend); unique names only. */
function ifuncNamesByResolver(elf: ElfFile): Map<bigint, string> {
  const names = new Map<bigint, string | null>();
  for (const sym of [...elf.symbols, ...elf.dynamicSymbols]) {
    if (sym.type !== STT_GNU_IFUNC || sym.shndx === SHN_UNDEF || sym.name === '') continue;
    const name = sym.name.replace(/@.*$/, '');
    const known = names.get(sym.value);
    // Two names for one resolver (aliases) cannot tell the stub's symbol apart: keep neither.
    names.set(sym.value, known === undefined || known === name ? name : null);
  }
  const out = new Map<bigint, string>();
  for (const [value, name] of names) if (name !== null) out.set(value, name);
  return out;
}
