// Byte- and shape-level comparison of two instructions. The matcher decides
// which fields may differ (relocated ones, branch displacements); these helpers
// only say whether everything else is the same.

import { Mnemonic, type FieldRange, type Insn } from './decode.js';

/**
 * Index of the first byte at which `a` and `b` differ outside `ignored`
 * ranges, -1 when they agree (lengths must be equal for that).
 */
export function firstDifference(a: Buffer, b: Buffer, ignored: FieldRange[] = []): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] === b[i]) continue;
    if (ignored.some((f) => i >= f.offset && i < f.offset + f.size)) continue;
    return i;
  }
  return a.length === b.length ? -1 : n;
}

/**
 * Same branch operation, whatever the displacement size: `jne rel8` and
 * `jne rel32` are the same, `jne` and `je` are not, `jmp` and `call` are not.
 */
export function sameBranchOperation(a: Insn, b: Insn): boolean {
  return a.branchTarget !== undefined && b.branchTarget !== undefined && a.mnemonic === b.mnemonic;
}

/**
 * Same instruction apart from its displacement field (both RIP-relative or
 * both branches): same mnemonic, same length, same bytes elsewhere.
 */
export function sameExceptDisplacement(a: Insn, b: Insn): boolean {
  if (a.mnemonic !== b.mnemonic || a.length !== b.length || !a.displacement || !b.displacement) return false;
  if (a.displacement.offset !== b.displacement.offset || a.displacement.size !== b.displacement.size) return false;
  return firstDifference(a.bytes, b.bytes, [a.displacement]) < 0;
}

/** Read a little-endian field of 1, 2, 4 or 8 bytes as a signed or unsigned bigint. */
export function readField(bytes: Buffer, offset: number, size: number, signed: boolean): bigint {
  switch (size) {
    case 1: return BigInt(signed ? bytes.readInt8(offset) : bytes.readUInt8(offset));
    case 2: return BigInt(signed ? bytes.readInt16LE(offset) : bytes.readUInt16LE(offset));
    case 4: return BigInt(signed ? bytes.readInt32LE(offset) : bytes.readUInt32LE(offset));
    case 8: return signed ? bytes.readBigInt64LE(offset) : bytes.readBigUInt64LE(offset);
    default: throw new RangeError(`readField: unsupported field size ${size}`);
  }
}

export function isMnemonic(insn: Insn, ...mnemonics: number[]): boolean {
  return mnemonics.includes(insn.mnemonic);
}

export { Mnemonic };
