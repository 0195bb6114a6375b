// Decode x86-64 machine code into plain records. iced-x86 objects live in
// WebAssembly memory and are not garbage-collected, so every decoder and
// instruction is freed here and callers only ever see ordinary JS values.

import iced from 'iced-x86';

const { Decoder, DecoderOptions, FlowControl, Mnemonic, OpKind, Register } = iced;

export interface Operand {
  kind: number;
  /** Register operands: iced Register value. */
  register?: number;
  /** Immediate operands, sign- or zero-extended as the instruction does. */
  immediate?: bigint;
}

/** A byte range inside an instruction (offset from its first byte). */
export interface FieldRange {
  offset: number;
  size: number;
}

export interface Insn {
  /** Address of the first byte (a section offset for object-file code). */
  ip: bigint;
  length: number;
  bytes: Buffer;
  /** iced Code: the exact encoding form (e.g. Jne_rel8_64 vs Jne_rel32_64). */
  code: number;
  /** iced Mnemonic: what the instruction does regardless of encoding. */
  mnemonic: number;
  /** iced FlowControl. */
  flow: number;
  invalid: boolean;
  /** Target of a direct (relative) jump, jcc, call, loop or jrcxz. */
  branchTarget?: bigint;
  /** Address a RIP-relative memory operand refers to. */
  ripTarget?: bigint;
  /** Where the displacement (memory or branch) and immediate are encoded. */
  displacement?: FieldRange;
  immediate?: FieldRange;
  operands: Operand[];
  memoryBase: number;
  memoryIndex: number;
  memoryDisplacement: bigint;
  /** Segment register used for the memory operand (DS, FS, ...). */
  memorySegment: number;
  hasMemory: boolean;
}

function toRecord(instr: iced.Instruction, offsets: iced.ConstantOffsets, bytes: Buffer, start: number): Insn {
  const operands: Operand[] = [];
  let hasMemory = false;
  for (let n = 0; n < instr.opCount; n++) {
    const kind = instr.opKind(n);
    const op: Operand = { kind };
    if (kind === OpKind.Register) op.register = instr.opRegister(n);
    else if (kind === OpKind.Memory) hasMemory = true;
    else if (isImmediateKind(kind)) op.immediate = instr.immediate(n);
    operands.push(op);
  }
  const isNearBranch = instr.opCount > 0 && instr.op0Kind === OpKind.NearBranch64;
  const record: Insn = {
    ip: instr.ip,
    length: instr.length,
    bytes: Buffer.from(bytes.subarray(start, start + instr.length)),
    code: instr.code,
    mnemonic: instr.mnemonic,
    flow: instr.flowControl,
    invalid: instr.isInvalid,
    operands,
    memoryBase: hasMemory ? instr.memoryBase : Register.None,
    memoryIndex: hasMemory ? instr.memoryIndex : Register.None,
    memoryDisplacement: hasMemory ? BigInt.asIntN(64, instr.memoryDisplacementU64) : 0n,
    memorySegment: hasMemory ? instr.memorySegment : Register.None,
    hasMemory,
  };
  if (isNearBranch) record.branchTarget = instr.nearBranch64;
  if (hasMemory && instr.isIpRelMemoryOperand) record.ripTarget = instr.ipRelMemoryAddress;
  if (offsets.hasDisplacement) {
    record.displacement = { offset: offsets.displacementOffset, size: offsets.displacementSize };
  }
  if (offsets.hasImmediate) {
    // iced reports a branch displacement as the instruction's immediate.
    const field = { offset: offsets.immediateOffset, size: offsets.immediateSize };
    if (isNearBranch) record.displacement = field;
    else record.immediate = field;
  }
  return record;
}

function isImmediateKind(kind: number): boolean {
  return (
    kind === OpKind.Immediate8 || kind === OpKind.Immediate8_2nd || kind === OpKind.Immediate16 ||
    kind === OpKind.Immediate32 || kind === OpKind.Immediate64 || kind === OpKind.Immediate8to16 ||
    kind === OpKind.Immediate8to32 || kind === OpKind.Immediate8to64 || kind === OpKind.Immediate32to64
  );
}

/**
 * Decode every instruction of `bytes`, the first one at address `ip`.
 * Undecodable bytes come back as one-byte records with `invalid` set, so the
 * caller decides what an invalid instruction means.
 */
export function decodeAll(bytes: Buffer, ip: bigint): Insn[] {
  return decodeSome(bytes, ip, Number.MAX_SAFE_INTEGER);
}

/** Decode at most `count` instructions from the start of `bytes`. */
export function decodeSome(bytes: Buffer, ip: bigint, count: number): Insn[] {
  const out: Insn[] = [];
  const decoder = new Decoder(64, bytes, DecoderOptions.None);
  try {
    decoder.ip = ip;
    while (decoder.canDecode && out.length < count) {
      const start = decoder.position;
      const instr = decoder.decode();
      const offsets = decoder.getConstantOffsets(instr);
      try {
        out.push(toRecord(instr, offsets, bytes, start));
      } finally {
        offsets.free();
        instr.free();
      }
    }
  } finally {
    decoder.free();
  }
  return out;
}

/** Decode the single instruction at the start of `bytes` (which may hold more). */
export function decodeOne(bytes: Buffer, ip: bigint): Insn {
  const [insn] = decodeSome(bytes, ip, 1);
  if (!insn) throw new RangeError('decodeOne: no bytes to decode');
  return insn;
}

/** Direct jump, jcc, call, loop or jrcxz with a relative target. */
export function isDirectBranch(insn: Insn): boolean {
  return insn.branchTarget !== undefined;
}

export function isCall(insn: Insn): boolean {
  return insn.flow === FlowControl.Call || insn.flow === FlowControl.IndirectCall;
}

export function isIndirectBranchOrCall(insn: Insn): boolean {
  return insn.flow === FlowControl.IndirectBranch || insn.flow === FlowControl.IndirectCall;
}

export function isUnconditionalJump(insn: Insn): boolean {
  return insn.mnemonic === Mnemonic.Jmp;
}

export { FlowControl, Mnemonic, OpKind, Register };
