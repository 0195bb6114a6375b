// What a relocated field of the running code says about the symbol the pre
// code's relocation names. The field holds the linked value; inverting the
// relocation's formula at the field's run-time address P gives the symbol's
// value S (or its GOT slot, or its TLS offset) — for static symbols too.

import {
  R_X86_64_32, R_X86_64_32S, R_X86_64_64, R_X86_64_DTPOFF32, R_X86_64_DTPOFF64, R_X86_64_GOTPCREL,
  R_X86_64_GOTPCRELX, R_X86_64_GOTTPOFF, R_X86_64_PC32, R_X86_64_PC64, R_X86_64_PLT32, R_X86_64_REX_GOTPCRELX,
  R_X86_64_GLOB_DAT, R_X86_64_TLSGD, R_X86_64_TLSLD, R_X86_64_TPOFF32, R_X86_64_TPOFF64, relocationName,
} from '../elf/x86_64.js';
import { isUnmappedError, type CodeReader } from './memory.js';
import { unversioned, type RunningImage } from './image.js';
import { isLocal, isSectionSymbol, type PreRelocation } from './pre.js';
import type { Resolution } from './resolution.js';

export interface FieldContext {
  image: RunningImage;
  reader: CodeReader;
}

export type FieldOutcome = { resolution: Resolution } | { mismatch: string };

const hex = (v: bigint) => `0x${BigInt.asUintN(64, v).toString(16)}`;
const signed32 = (v: bigint) => BigInt.asIntN(32, v);
const unsigned64 = (v: bigint) => BigInt.asUintN(64, v);

/**
 * Resolve `r` from its field as linked into the running code: `field` is the
 * raw little-endian value (unsigned, `r.size` bytes), `P` the field's
 * run-time address. Only for instructions the linker left in their original
 * form; rewritten ones (relaxations) are handled by the tolerances.
 */
export function resolveField(r: PreRelocation, field: bigint, P: bigint, ctx: FieldContext): FieldOutcome {
  switch (r.type) {
    case R_X86_64_PC32:
    case R_X86_64_PLT32:
      return symbolAt(r, unsigned64(signed32(field) + P - r.addend), ctx);
    case R_X86_64_PC64:
      return symbolAt(r, unsigned64(BigInt.asIntN(64, field) + P - r.addend), ctx);
    case R_X86_64_64:
      return symbolAt(r, unsigned64(field - r.addend), ctx);
    case R_X86_64_32:
      return symbolAt(r, unsigned64(field - r.addend), ctx);
    case R_X86_64_32S:
      return symbolAt(r, unsigned64(signed32(field) - r.addend), ctx);
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
      return gotSlot(r, unsigned64(signed32(field) + P - r.addend), ctx);
    case R_X86_64_GOTTPOFF: {
      const slot = unsigned64(signed32(field) + P - r.addend);
      const named = slotNamesSymbol(r, slot, ctx);
      return named ? { mismatch: named } : { resolution: { tls: { ieSlot: slot } } };
    }
    case R_X86_64_TPOFF32:
      return { resolution: { tls: { tpoff: signed32(field) - r.addend } } };
    case R_X86_64_TPOFF64:
      return { resolution: { tls: { tpoff: BigInt.asIntN(64, field) - r.addend } } };
    case R_X86_64_TLSGD:
      return { resolution: { tls: { gdSlot: unsigned64(signed32(field) + P - r.addend) } } };
    case R_X86_64_TLSLD:
      return { resolution: { tls: { ldSlot: unsigned64(signed32(field) + P - r.addend) } } };
    case R_X86_64_DTPOFF32:
    case R_X86_64_DTPOFF64: {
      const value = (r.size === 4 ? signed32(field) : BigInt.asIntN(64, field)) - r.addend;
      // In an executable the linker turned local-dynamic into local-exec: the field holds the TP offset.
      return { resolution: { tls: ctx.image.executable ? { tpoff: value } : { dtpoff: value } } };
    }
    default:
      return {
        mismatch: `relocation ${relocationName(r.type)} against ${r.symbolName} is not supported by run-pre matching`,
      };
  }
}

/**
 * The symbol's run-time address is `S`. When S is a PLT stub, the code calls
 * through the PLT: record the stub and check it reaches the same symbol.
 */
export function symbolAt(r: PreRelocation, at: bigint, ctx: FieldContext): FieldOutcome {
  // A copy of a function placed by an earlier update is reached through the function's entry.
  const S = ctx.image.aliases?.get(at) ?? at;
  const stub = ctx.image.pltStubs.get(S);
  const wanted = unversioned(r.symbolName);
  if (!stub) {
    // A global reference must land on that global when the image names what is there
    // (its own definition, or a copy-relocated one such as stderr).
    if (!isLocal(r.symbol)) {
      const defined = ctx.image.definitions.get(wanted);
      const there = ctx.image.namesAt.get(S);
      if ((defined && !defined.includes(S)) || (there && !there.includes(wanted))) {
        return {
          mismatch: `the running code refers to ${hex(S)}${there ? ` (${there.join(', ')})` : ''} where the pre code refers to ${wanted}` +
            (defined ? ` (at ${defined.map(hex).join(', ')})` : ''),
        };
      }
    }
    return { resolution: { address: S } };
  }
  // A static IFUNC is called through a PLT stub too, one with an IRELATIVE slot.
  if (isSectionSymbol(r.symbol) || (isLocal(r.symbol) && !stub.irelative) || stub.symbol !== wanted) {
    return {
      mismatch: `the running code reaches ${stub.symbol} through its PLT stub at ${hex(S)}, the pre code refers to ${wanted}`,
    };
  }
  const plt = { stub: S, symbol: stub.symbol, ...(stub.version ? { version: stub.version } : {}) };
  return { resolution: { plt } };
}

/** A GOT slot the running code loads the symbol's address from. */
function gotSlot(r: PreRelocation, slot: bigint, ctx: FieldContext): FieldOutcome {
  const named = slotNamesSymbol(r, slot, ctx);
  if (named) return { mismatch: named };
  let value: bigint | undefined;
  try {
    value = ctx.reader.read(slot, 8).readBigUInt64LE(0);
  } catch (e) {
    if (!isUnmappedError(e)) throw e;
    return { mismatch: `the running code loads ${r.symbolName} from ${hex(slot)}, which is not mapped` };
  }
  return { resolution: { got: value === 0n ? { slot } : { slot, value } } };
}

/** When the slot is filled by a dynamic relocation naming a symbol, it must be the pre code's symbol. */
function slotNamesSymbol(r: PreRelocation, slot: bigint, ctx: FieldContext): string | undefined {
  const dyn = ctx.image.dynamicSlots.get(slot);
  if (!dyn?.symbol || isSectionSymbol(r.symbol)) return undefined;
  if (dyn.type !== R_X86_64_GLOB_DAT && dyn.type !== R_X86_64_64 && dyn.type !== R_X86_64_TPOFF64) return undefined;
  const wanted = unversioned(r.symbolName);
  return dyn.symbol === wanted
    ? undefined
    : `the running code uses the GOT slot of ${dyn.symbol} at ${hex(slot)}, the pre code refers to ${wanted}`;
}
