// The 5-byte `jmp rel32` written at an old function's entry.
import { TspliceError } from '../errors.js';

export const JMP_REL32_SIZE = 5;
const JMP_REL32_OPCODE = 0xe9;

/** Encode `jmp to` placed at `from`; internal error if `to` is out of rel32 reach. */
export function encodeJmpRel32(from: bigint, to: bigint): Buffer {
  const displacement = to - (from + BigInt(JMP_REL32_SIZE));
  if (displacement < -(1n << 31n) || displacement >= 1n << 31n) {
    throw new TspliceError(
      'internal',
      `new code at 0x${to.toString(16)} is out of jump reach (±2 GiB) of 0x${from.toString(16)}; it must be placed nearer`,
      { from: '0x' + from.toString(16), to: '0x' + to.toString(16) },
    );
  }
  const bytes = Buffer.alloc(JMP_REL32_SIZE);
  bytes[0] = JMP_REL32_OPCODE;
  bytes.writeInt32LE(Number(displacement), 1);
  return bytes;
}

/** Where a jmp rel32 at `from` goes, or undefined if the bytes are not one. */
export function decodeJmpRel32(from: bigint, bytes: Uint8Array): bigint | undefined {
  if (bytes.length < JMP_REL32_SIZE || bytes[0] !== JMP_REL32_OPCODE) return undefined;
  const displacement = Buffer.from(bytes.buffer, bytes.byteOffset, JMP_REL32_SIZE).readInt32LE(1);
  return from + BigInt(JMP_REL32_SIZE) + BigInt(displacement);
}

export interface FunctionToRedirect {
  name: string;
  /** Entry point of the old function. */
  address: bigint;
  /** Its size in bytes. */
  size: number;
}

/** The trampoline for one function; unsupported_change if it is too short to hold one. */
export function trampolineFor(fn: FunctionToRedirect, to: bigint): { addr: bigint; bytes: Buffer } {
  if (fn.size < JMP_REL32_SIZE) {
    throw new TspliceError(
      'unsupported_change',
      `function ${fn.name} is ${fn.size} bytes long, too short for a ${JMP_REL32_SIZE}-byte jump to its new version; ` +
        'patch its callers instead',
      { function: fn.name, size: fn.size },
    );
  }
  return { addr: fn.address, bytes: encodeJmpRel32(fn.address, to) };
}
