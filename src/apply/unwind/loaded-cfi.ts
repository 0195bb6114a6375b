// The unwind tables of the objects loaded in a target, read from the target's
// own memory: the ELF header and program headers at the object's first
// mapping, PT_GNU_EH_FRAME for .eh_frame_hdr, and .eh_frame up to the end of
// its segment. Reading memory (not the file) covers the vdso, deleted and
// stripped files alike, and the addresses are run-time ones already.
import { CfiError, DwarfCursor } from './dwarf-cursor.js';
import { EhFrameTable } from './eh-frame.js';
import { followsCall } from './call-site.js';
import type { CfiLookup } from './unwinder.js';

const PT_LOAD = 1;
const PF_X = 1;
/** Executable segments read for the call-site check; larger ones are skipped (their return addresses then fail it). */
const MAX_TEXT = 256 * 1024 * 1024;
const PT_GNU_EH_FRAME = 0x6474e550;
const ELF_HEADER_SIZE = 64;
const PHDR_SIZE = 56;
const MAX_EH_FRAME = 64 * 1024 * 1024;

export interface ObjectCfi {
  /** For messages. */
  name: string;
  /** Run-time range of its loadable segments. */
  start: bigint;
  end: bigint;
  table: EhFrameTable;
  /** Its executable segments' bytes, to check that return addresses follow calls. */
  text: Array<{ start: bigint; bytes: Buffer }>;
}

type ReadMemory = (addr: bigint, length: number) => Buffer;

/**
 * The CFI of the ELF object mapped at `base` (its ELF header). Throws
 * CfiError when it has none this unwinder can use (no PT_GNU_EH_FRAME,
 * malformed tables); memory read errors propagate.
 */
export function loadObjectCfi(read: ReadMemory, base: bigint, name: string): ObjectCfi {
  const ehdr = read(base, ELF_HEADER_SIZE);
  if (ehdr.readUInt32BE(0) !== 0x7f454c46 || ehdr[4] !== 2 || ehdr[5] !== 1) throw new CfiError(`${name}: no ELF64 LE header at 0x${base.toString(16)}`);
  const phoff = ehdr.readBigUInt64LE(32);
  const phentsize = ehdr.readUInt16LE(54);
  const phnum = ehdr.readUInt16LE(56);
  if (phentsize !== PHDR_SIZE || phnum === 0 || phoff > 0x10000n) throw new CfiError(`${name}: unusual program headers`);
  const phdrs = read(base + phoff, phnum * PHDR_SIZE);
  const segments = Array.from({ length: phnum }, (_, i) => {
    const at = i * PHDR_SIZE;
    return {
      type: phdrs.readUInt32LE(at),
      flags: phdrs.readUInt32LE(at + 4),
      vaddr: phdrs.readBigUInt64LE(at + 16),
      filesz: phdrs.readBigUInt64LE(at + 32),
      memsz: phdrs.readBigUInt64LE(at + 40),
    };
  });
  const loads = segments.filter((s) => s.type === PT_LOAD);
  if (loads.length === 0) throw new CfiError(`${name}: no loadable segment`);
  const firstVaddr = loads.reduce((a, s) => (s.vaddr < a ? s.vaddr : a), loads[0].vaddr);
  // The header is at the start of the first segment's page.
  const bias = base - (firstVaddr & ~0xfffn);
  const start = firstVaddr + bias;
  const end = loads.reduce((e, s) => (s.vaddr + s.memsz > e ? s.vaddr + s.memsz : e), 0n) + bias;

  const hdrSegment = segments.find((s) => s.type === PT_GNU_EH_FRAME);
  if (!hdrSegment) throw new CfiError(`${name}: no .eh_frame_hdr (PT_GNU_EH_FRAME)`);
  const hdrAddress = hdrSegment.vaddr + bias;
  const hdr = read(hdrAddress, Number(hdrSegment.memsz));
  if (hdr.length < 4 || hdr[0] !== 1) throw new CfiError(`${name}: .eh_frame_hdr version ${hdr[0]} not supported`);
  const ehFrameAddress = new DwarfCursor(hdr, hdrAddress, 4).pointer(hdr[1], hdrAddress);
  // .eh_frame's size is not in the program headers: read to the end of its segment.
  const holder = loads.find((s) => ehFrameAddress >= s.vaddr + bias && ehFrameAddress < s.vaddr + bias + s.filesz);
  if (!holder) throw new CfiError(`${name}: .eh_frame lies outside the loaded segments`);
  const length = Number(holder.vaddr + bias + holder.filesz - ehFrameAddress);
  if (length > MAX_EH_FRAME) throw new CfiError(`${name}: .eh_frame too large`);
  const ehFrame = read(ehFrameAddress, length);
  const table = new EhFrameTable({ ehFrame, ehFrameAddress, hdr, hdrAddress });
  const text = loads.filter((s) => (s.flags & PF_X) !== 0 && s.filesz > 0n && s.filesz <= BigInt(MAX_TEXT))
    .map((s) => ({ start: s.vaddr + bias, bytes: read(s.vaddr + bias, Number(s.filesz)) }));
  return { name, start, end, table, text };
}

/** Objects by address, for the unwinder. */
export class LoadedCfi implements CfiLookup {
  private readonly objects: ObjectCfi[];

  constructor(objects: readonly ObjectCfi[]) {
    this.objects = [...objects].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  }

  tableFor(pc: bigint): EhFrameTable | undefined {
    return this.objectAt(pc)?.table;
  }

  followsCall(ra: bigint): boolean {
    const segment = this.objectAt(ra - 1n)?.text.find((t) => ra - 1n >= t.start && ra <= t.start + BigInt(t.bytes.length));
    return segment !== undefined && followsCall(segment.bytes, segment.start, ra);
  }

  private objectAt(pc: bigint): ObjectCfi | undefined {
    let lo = 0;
    let hi = this.objects.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const o = this.objects[mid];
      if (pc < o.start) hi = mid - 1;
      else if (pc >= o.end) lo = mid + 1;
      else return o;
    }
    return undefined;
  }

  get size(): number {
    return this.objects.length;
  }
}
