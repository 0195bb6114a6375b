// Reading DWARF-encoded values out of a buffer that was copied from a
// target's memory at a known address, so pc-relative pointers resolve to
// run-time addresses directly. Every read is bounds-checked: a malformed
// table ends in a CfiError, never in a wrong value.

/** The table is malformed or uses something this unwinder does not handle. */
export class CfiError extends Error {}

// Pointer encodings (DW_EH_PE_*), as used by .eh_frame and .eh_frame_hdr.
export const DW_EH_PE_omit = 0xff;
const PE_FORMAT = 0x0f;
const PE_APPLICATION = 0x70;
const DW_EH_PE_absptr = 0x00;
const DW_EH_PE_uleb128 = 0x01;
const DW_EH_PE_udata2 = 0x02;
const DW_EH_PE_udata4 = 0x03;
const DW_EH_PE_udata8 = 0x04;
const DW_EH_PE_sleb128 = 0x09;
const DW_EH_PE_sdata2 = 0x0a;
const DW_EH_PE_sdata4 = 0x0b;
const DW_EH_PE_sdata8 = 0x0c;
const DW_EH_PE_pcrel = 0x10;
const DW_EH_PE_datarel = 0x30;
const DW_EH_PE_indirect = 0x80;

export class DwarfCursor {
  /** Offset of the next byte to read. */
  pos: number;

  constructor(
    readonly bytes: Buffer,
    /** Run-time address of bytes[0]. */
    readonly address: bigint,
    pos = 0,
    /** Reads stop here (exclusive). */
    readonly limit = bytes.length,
  ) {
    this.pos = pos;
  }

  get atEnd(): boolean {
    return this.pos >= this.limit;
  }

  private need(n: number): void {
    if (this.pos < 0 || this.pos + n > this.limit) throw new CfiError(`CFI read past the end of its entry at offset ${this.pos}`);
  }

  u8(): number {
    this.need(1);
    return this.bytes[this.pos++];
  }

  u16(): number {
    this.need(2);
    const v = this.bytes.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.bytes.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  s32(): number {
    this.need(4);
    const v = this.bytes.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): bigint {
    this.need(8);
    const v = this.bytes.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }

  uleb(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.u8();
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if ((b & 0x80) === 0) return result;
      if (shift > 70n) throw new CfiError('ULEB128 value too long');
    }
  }

  sleb(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.u8();
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if ((b & 0x80) === 0) {
        if (b & 0x40) result -= 1n << shift;
        return result;
      }
      if (shift > 70n) throw new CfiError('SLEB128 value too long');
    }
  }

  /** ULEB128 that must be a small count or register number. */
  ulebNumber(): number {
    const v = this.uleb();
    if (v > 0xffffffffn) throw new CfiError('CFI operand out of range');
    return Number(v);
  }

  /** A pointer in `encoding`; `dataBase` is the base of DW_EH_PE_datarel (the .eh_frame_hdr start). */
  pointer(encoding: number, dataBase?: bigint): bigint {
    if (encoding === DW_EH_PE_omit) throw new CfiError('omitted pointer read');
    if (encoding & DW_EH_PE_indirect) throw new CfiError('indirect pointer encoding in CFI');
    const fieldAddress = this.address + BigInt(this.pos);
    let value: bigint;
    switch (encoding & PE_FORMAT) {
      case DW_EH_PE_absptr:
      case DW_EH_PE_udata8:
      case DW_EH_PE_sdata8:
        value = this.u64();
        break;
      case DW_EH_PE_uleb128:
        value = this.uleb();
        break;
      case DW_EH_PE_udata2:
        value = BigInt(this.u16());
        break;
      case DW_EH_PE_udata4:
        value = BigInt(this.u32());
        break;
      case DW_EH_PE_sleb128:
        value = this.sleb();
        break;
      case DW_EH_PE_sdata2: {
        const v = this.u16();
        value = BigInt(v >= 0x8000 ? v - 0x10000 : v);
        break;
      }
      case DW_EH_PE_sdata4:
        value = BigInt(this.s32());
        break;
      default:
        throw new CfiError(`unknown pointer encoding 0x${encoding.toString(16)}`);
    }
    switch (encoding & PE_APPLICATION) {
      case 0:
        break;
      case DW_EH_PE_pcrel:
        value += fieldAddress;
        break;
      case DW_EH_PE_datarel:
        if (dataBase === undefined) throw new CfiError('data-relative pointer outside .eh_frame_hdr');
        value += dataBase;
        break;
      default:
        throw new CfiError(`unsupported pointer application 0x${(encoding & PE_APPLICATION).toString(16)}`);
    }
    return BigInt.asUintN(64, value);
  }

  /** Skip a DWARF expression block (ULEB128 length + bytes). */
  skipBlock(): void {
    const length = this.ulebNumber();
    this.need(length);
    this.pos += length;
  }
}
