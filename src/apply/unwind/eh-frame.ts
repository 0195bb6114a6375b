// .eh_frame of one loaded object: its CIEs and FDEs, and an index from pc to
// FDE (the .eh_frame_hdr binary search table when there is one, else built by
// scanning every entry). Built before the freeze; lookups during it only
// parse the one FDE they need (and remember it).
import type { CfaRow } from './cfa-program.js';
import { CfiError, DW_EH_PE_omit, DwarfCursor } from './dwarf-cursor.js';

export interface Cie {
  codeAlign: bigint;
  dataAlign: bigint;
  returnColumn: number;
  /** Encoding of FDE pc_begin / pc_range ("R"). */
  fdeEncoding: number;
  /** "z": FDEs carry augmentation data to skip. */
  hasAugmentationData: boolean;
  /** "S": frames of this CIE are signal frames (their pc is not a return address). */
  signalFrame: boolean;
  /** Initial instructions: offsets into the .eh_frame bytes. */
  instructions: { start: number; end: number };
}

export interface Fde {
  cie: Cie;
  /** Run-time addresses. */
  pcBegin: bigint;
  pcEnd: bigint;
  instructions: { start: number; end: number };
}

interface EntryHeader {
  /** Offset of the entry's length field. */
  offset: number;
  /** Offset just past the id field (the CIE id or CIE pointer). */
  body: number;
  end: number;
  /** 0 for a CIE; else the CIE pointer's value. */
  id: number;
  /** Offset of the id field, which a CIE pointer is relative to. */
  idOffset: number;
}

/** The .eh_frame bytes of one object, copied from the target, and the address they live at. */
export interface EhFrameSource {
  ehFrame: Buffer;
  ehFrameAddress: bigint;
  /** .eh_frame_hdr when the object has one (PT_GNU_EH_FRAME). */
  hdr?: Buffer;
  hdrAddress?: bigint;
}

const DW_EH_PE_datarel_sdata4 = 0x3b;

export class EhFrameTable {
  private readonly source: EhFrameSource;
  private readonly cies = new Map<number, Cie>();
  private readonly fdes = new Map<number, Fde>();
  /**
   * CFA rows already computed, by lookup pc: threads blocked in the same
   * call share them, and so do later freezes of the same target.
   */
  readonly rowCache = new Map<bigint, CfaRow>();
  /** Sorted FDE start addresses (numbers: user-space addresses fit) and each one's .eh_frame offset. */
  private readonly starts: Float64Array;
  private readonly offsets: Int32Array;

  constructor(source: EhFrameSource) {
    this.source = source;
    const fromHdr = source.hdr && source.hdrAddress !== undefined ? this.indexFromHdr(source.hdr, source.hdrAddress) : undefined;
    const index = fromHdr ?? this.indexByScanning();
    this.starts = index.starts;
    this.offsets = index.offsets;
  }

  get fdeCount(): number {
    return this.starts.length;
  }

  /** The FDE covering pc, if any. Throws CfiError on a malformed entry. */
  find(pc: bigint): Fde | undefined {
    if (pc > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const target = Number(pc);
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid] <= target) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0) return undefined;
    const fde = this.fdeAt(this.offsets[found]);
    return pc >= fde.pcBegin && pc < fde.pcEnd ? fde : undefined;
  }

  /** Bytes of the CFA instructions of a CIE or FDE. */
  get bytes(): Buffer {
    return this.source.ehFrame;
  }

  get address(): bigint {
    return this.source.ehFrameAddress;
  }

  private header(offset: number): EntryHeader | undefined {
    const c = new DwarfCursor(this.source.ehFrame, this.source.ehFrameAddress, offset);
    let length = c.u32();
    if (length === 0) return undefined; // terminator
    if (length === 0xffffffff) {
      const long = c.u64();
      if (long > 0x7fffffffn) throw new CfiError('64-bit .eh_frame entry too large');
      length = Number(long);
    }
    const idOffset = c.pos;
    const end = idOffset + length;
    if (end > this.source.ehFrame.length) throw new CfiError(`.eh_frame entry at offset ${offset} runs past the section`);
    const id = c.u32();
    return { offset, body: c.pos, end, id, idOffset };
  }

  private cieAt(offset: number): Cie {
    const cached = this.cies.get(offset);
    if (cached) return cached;
    const h = this.header(offset);
    if (!h || h.id !== 0) throw new CfiError(`no CIE at .eh_frame offset ${offset}`);
    const c = new DwarfCursor(this.source.ehFrame, this.source.ehFrameAddress, h.body, h.end);
    const version = c.u8();
    if (version !== 1 && version !== 3 && version !== 4) throw new CfiError(`CIE version ${version} not supported`);
    let augmentation = '';
    for (let b = c.u8(); b !== 0; b = c.u8()) augmentation += String.fromCharCode(b);
    if (augmentation.includes('eh')) throw new CfiError('"eh" augmentation not supported');
    if (version === 4) {
      if (c.u8() !== 8) throw new CfiError('CIE address size is not 8');
      c.u8(); // segment selector size
    }
    const codeAlign = c.uleb();
    const dataAlign = c.sleb();
    const returnColumn = version === 1 ? c.u8() : c.ulebNumber();
    let fdeEncoding = 0; // absptr
    let signalFrame = false;
    const hasAugmentationData = augmentation.startsWith('z');
    if (hasAugmentationData) {
      const length = c.ulebNumber();
      const dataEnd = c.pos + length;
      for (const ch of augmentation.slice(1)) {
        if (ch === 'R') fdeEncoding = c.u8();
        else if (ch === 'P') c.pointer(c.u8());
        else if (ch === 'L') c.u8();
        else if (ch === 'S') signalFrame = true;
        else break; // unknown: the length lets us skip the rest
      }
      c.pos = dataEnd;
    } else if (augmentation !== '') {
      throw new CfiError(`CIE augmentation "${augmentation}" not supported`);
    }
    const cie: Cie = {
      codeAlign, dataAlign, returnColumn, fdeEncoding, hasAugmentationData, signalFrame,
      instructions: { start: c.pos, end: h.end },
    };
    this.cies.set(offset, cie);
    return cie;
  }

  private fdeAt(offset: number): Fde {
    const cached = this.fdes.get(offset);
    if (cached) return cached;
    const h = this.header(offset);
    if (!h || h.id === 0) throw new CfiError(`no FDE at .eh_frame offset ${offset}`);
    const cie = this.cieAt(h.idOffset - h.id);
    const c = new DwarfCursor(this.source.ehFrame, this.source.ehFrameAddress, h.body, h.end);
    const pcBegin = c.pointer(cie.fdeEncoding);
    const pcRange = c.pointer(cie.fdeEncoding & 0x0f);
    if (cie.hasAugmentationData) c.pos += c.ulebNumber();
    const fde: Fde = { cie, pcBegin, pcEnd: pcBegin + pcRange, instructions: { start: c.pos, end: h.end } };
    if (fde.instructions.start > fde.instructions.end) throw new CfiError(`FDE at .eh_frame offset ${offset} is truncated`);
    this.fdes.set(offset, fde);
    return fde;
  }

  /** The sorted table of .eh_frame_hdr (version 1, datarel sdata4 entries), or undefined to scan instead. */
  private indexFromHdr(hdr: Buffer, hdrAddress: bigint): { starts: Float64Array; offsets: Int32Array } | undefined {
    if (hdr.length < 4 || hdr[0] !== 1) return undefined;
    const ehFramePtrEnc = hdr[1];
    const countEnc = hdr[2];
    const tableEnc = hdr[3];
    if (countEnc === DW_EH_PE_omit || tableEnc !== DW_EH_PE_datarel_sdata4) return undefined;
    const c = new DwarfCursor(hdr, hdrAddress, 4);
    const ehFramePtr = c.pointer(ehFramePtrEnc, hdrAddress);
    if (ehFramePtr !== this.source.ehFrameAddress) return undefined;
    const count = Number(c.pointer(countEnc, hdrAddress));
    if (c.pos + count * 8 > hdr.length) return undefined;
    const starts = new Float64Array(count);
    const offsets = new Int32Array(count);
    const base = Number(hdrAddress);
    const ehFrame = Number(this.source.ehFrameAddress);
    for (let i = 0; i < count; i++) {
      starts[i] = base + hdr.readInt32LE(c.pos + i * 8);
      const offset = base + hdr.readInt32LE(c.pos + i * 8 + 4) - ehFrame;
      if (offset < 0 || offset >= this.source.ehFrame.length) return undefined;
      offsets[i] = offset;
      if (i > 0 && starts[i] < starts[i - 1]) return undefined; // not sorted: do not trust it
    }
    return { starts, offsets };
  }

  private indexByScanning(): { starts: Float64Array; offsets: Int32Array } {
    const entries: Array<{ start: number; offset: number }> = [];
    let offset = 0;
    while (offset + 4 <= this.source.ehFrame.length) {
      const h = this.header(offset);
      if (!h) break;
      if (h.id !== 0) {
        const fde = this.fdeAt(offset);
        if (fde.pcEnd > fde.pcBegin) entries.push({ start: Number(fde.pcBegin), offset });
      }
      offset = h.end;
    }
    entries.sort((a, b) => a.start - b.start);
    return { starts: Float64Array.from(entries.map((e) => e.start)), offsets: Int32Array.from(entries.map((e) => e.offset)) };
  }
}
