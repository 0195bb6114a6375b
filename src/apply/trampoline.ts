// The 5-byte `jmp rel32` written at an old function's entry. A function
// shorter than that may still take one when the bytes after it are padding
// (alignment NOPs or int3 fill) that nothing runs and no symbol claims.
import { TspliceError } from '../errors.js';
import { decodeOne } from '../x86/decode.js';
import { isPadding } from '../x86/nop.js';

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
  /**
   * Bytes right after the function that the jump may overwrite: padding that
   * no code runs and where no symbol starts, as found in the running memory
   * (see paddingAfter). Only a function shorter than the jump needs them.
   */
  spare?: number;
}

const INT3 = 0xcc;

/**
 * How many bytes from the start of `bytes` (running code at `start`, right
 * after a function) are padding: NOPs of any form and int3 fill, counted in
 * whole instructions until `wanted` bytes are covered.
 */
export function paddingAfter(start: bigint, bytes: Uint8Array, wanted: number): number {
  const code = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  let n = 0;
  while (n < wanted && n < code.length) {
    if (code[n] === INT3) {
      n++;
      continue;
    }
    const insn = decodeOne(code.subarray(n), start + BigInt(n));
    if (insn.invalid || !isPadding(insn)) break;
    n += insn.length;
  }
  return n;
}

/**
 * The trampoline for one function. A function shorter than the jump gets it
 * only if enough spare padding follows; the bytes it covers past the
 * function are saved and restored with the rest. unsupported_change otherwise.
 */
export function trampolineFor(fn: FunctionToRedirect, to: bigint): { addr: bigint; bytes: Buffer } {
  const spare = fn.spare ?? 0;
  if (fn.size < JMP_REL32_SIZE && fn.size + spare < JMP_REL32_SIZE) {
    const after = spare === 0
      ? 'what follows it is not padding (or another symbol starts there)'
      : `only ${spare} byte${spare === 1 ? '' : 's'} of padding follow${spare === 1 ? 's' : ''} it before other code or a symbol`;
    throw new TspliceError(
      'unsupported_change',
      `function ${fn.name} is ${fn.size} byte${fn.size === 1 ? '' : 's'} long, too short for the ${JMP_REL32_SIZE}-byte jump ` +
        `to its new version, and ${after}, so the jump cannot borrow it. tsplice cannot redirect this function: ` +
        `change the patch so that ${fn.name} keeps its code (for example, put the fix in its callers or in a new ` +
        'function they call)',
      { function: fn.name, size: fn.size, spare },
    );
  }
  return { addr: fn.address, bytes: encodeJmpRel32(fn.address, to) };
}
