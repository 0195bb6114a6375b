// Linker TLS relaxations in executables. The pre object may use a more
// general TLS model than the linked program needs, and ld rewrites the access
// sequence in place (same length):
//   IE→LE  mov x@gottpoff(%rip),%reg → mov $tpoff,%reg
//          add x@gottpoff(%rip),%reg → add $tpoff,%reg | lea tpoff(%reg),%reg
//   GD→LE  lea x@tlsgd(%rip),%rdi; call __tls_get_addr → mov %fs:0,%rax; lea tpoff(%rax),%rax
//   GD→IE  lea x@tlsgd(%rip),%rdi; call __tls_get_addr → mov %fs:0,%rax; add x@gottpoff(%rip),%rax
//   LD→LE  lea x@tlsld(%rip),%rdi; call __tls_get_addr → mov %fs:0,%rax (with padding prefixes)
// (DTPOFF32 fields after a relaxed LD hold TP offsets; relocation.ts reads them so.)
// What is recorded is what new code needs: the TP offset or the GOT slot.

import { R_X86_64_GOTTPOFF, R_X86_64_TLSGD, R_X86_64_TLSLD } from '../../elf/x86_64.js';
import { FlowControl, Mnemonic, OpKind, Register, type Insn } from '../../x86/decode.js';
import type { PreRelocation } from '../pre.js';
import type { MatchSite, StepResult, Tolerance } from '../tolerance.js';

function registerOperand(insn: Insn): number | undefined {
  return insn.operands.find((o) => o.kind === OpKind.Register)?.register;
}

function immediateOperand(insn: Insn): bigint | undefined {
  return insn.operands.find((o) => o.immediate !== undefined)?.immediate;
}

/** `mov %fs:0,%rax`, the thread pointer load that replaces a __tls_get_addr call. */
function isThreadPointerLoad(insn: Insn): boolean {
  return (
    insn.mnemonic === Mnemonic.Mov && registerOperand(insn) === Register.RAX && insn.hasMemory &&
    insn.memorySegment === Register.FS && insn.memoryBase === Register.None && insn.memoryIndex === Register.None &&
    insn.memoryDisplacement === 0n
  );
}

export const initialExecToLocalExec: Tolerance = {
  name: 'tls-ie-to-le',
  match(site: MatchSite): StepResult {
    const insn = site.preCode[site.index];
    const run = site.runAt(site.runAddress);
    if (!run || insn.ripTarget === undefined) return undefined;
    const start = Number(insn.ip);
    const relocations = site.relocationsIn(start, start + insn.length);
    const [r] = relocations;
    if (relocations.length !== 1 || r.type !== R_X86_64_GOTTPOFF) return undefined;
    const reg = registerOperand(insn);
    if (reg === undefined) return undefined;
    let tpoff: bigint | undefined;
    if (insn.mnemonic === Mnemonic.Mov && run.mnemonic === Mnemonic.Mov && !run.hasMemory && registerOperand(run) === reg) {
      tpoff = immediateOperand(run);
    } else if (insn.mnemonic === Mnemonic.Add) {
      if (run.mnemonic === Mnemonic.Add && !run.hasMemory && registerOperand(run) === reg) tpoff = immediateOperand(run);
      if (run.mnemonic === Mnemonic.Lea && registerOperand(run) === reg && run.memoryBase === reg &&
          run.memoryIndex === Register.None) {
        tpoff = run.memoryDisplacement;
      }
    }
    if (tpoff === undefined) return undefined;
    return {
      preLength: insn.length,
      runLength: run.length,
      resolved: [{ relocation: r, resolution: { tls: { tpoff: BigInt.asIntN(64, tpoff) } } }],
    };
  },
};

/** The pre `lea x@tlsgd/tlsld(%rip),%rdi` and the `call __tls_get_addr` after it. */
function dynamicTlsSequence(site: MatchSite, type: number): { tls: PreRelocation; call: Insn; others: PreRelocation[] } | undefined {
  const lea = site.preCode[site.index];
  const call = site.preCode[site.index + 1];
  if (!call || lea.mnemonic !== Mnemonic.Lea || (call.flow !== FlowControl.Call && call.flow !== FlowControl.IndirectCall)) {
    return undefined;
  }
  const start = Number(lea.ip);
  const [r, ...rest] = site.relocationsIn(start, start + lea.length);
  if (!r || r.type !== type || rest.length > 0) return undefined;
  const others = site.relocationsIn(Number(call.ip), Number(call.ip) + call.length);
  if (!others.every((o) => o.symbolName === '__tls_get_addr')) return undefined;
  return { tls: r, call, others };
}

export const generalDynamicRelaxed: Tolerance = {
  name: 'tls-gd-relaxed',
  match(site: MatchSite): StepResult {
    const seq = dynamicTlsSequence(site, R_X86_64_TLSGD);
    const first = site.runAt(site.runAddress);
    if (!seq || !first || !isThreadPointerLoad(first)) return undefined;
    const second = site.runAt(site.runAddress + BigInt(first.length));
    if (!second || registerOperand(second) !== Register.RAX) return undefined;
    const lea = site.preCode[site.index];
    const step = { preLength: lea.length + seq.call.length, runLength: first.length + second.length, dropped: seq.others };
    if (second.mnemonic === Mnemonic.Lea && second.memoryBase === Register.RAX && second.memoryIndex === Register.None) {
      return { ...step, resolved: [{ relocation: seq.tls, resolution: { tls: { tpoff: second.memoryDisplacement } } }] };
    }
    if (second.mnemonic === Mnemonic.Add && second.ripTarget !== undefined) {
      return { ...step, resolved: [{ relocation: seq.tls, resolution: { tls: { ieSlot: second.ripTarget } } }] };
    }
    return undefined;
  },
};

export const localDynamicRelaxed: Tolerance = {
  name: 'tls-ld-relaxed',
  match(site: MatchSite): StepResult {
    const seq = dynamicTlsSequence(site, R_X86_64_TLSLD);
    const run = site.runAt(site.runAddress);
    if (!seq || !run || !isThreadPointerLoad(run)) return undefined;
    const lea = site.preCode[site.index];
    // The module's TLS block is now the executable's static block: nothing to record for the module itself.
    return { preLength: lea.length + seq.call.length, runLength: run.length, resolved: [], dropped: [seq.tls, ...seq.others] };
  },
};
