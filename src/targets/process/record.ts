// The record of applied updates kept inside the target itself, so `list` and
// `undo` work from any shell, after tsplice has exited: one small read-only
// region per update, named "tsplice:<id>" (visible in /proc/PID/maps), holding
// a header and the record as JSON.
import { TspliceError } from '../../errors.js';
import { readMaps, type MapEntry } from './maps.js';
import { ProcessMemory } from './memory.js';
import { PROT_READ, remoteMmap, remoteMunmap, type Region } from './remote-syscall.js';
import type { ProcessSession } from './session.js';

export interface RedirectRecord {
  /** Function name. */
  name: string;
  /** File (basename) holding the old function. */
  object: string;
  /** Old entry point, where the jump was written. */
  from: bigint;
  /** New code it jumps to. */
  to: bigint;
  /** Bytes the jump replaced, hex. */
  original: string;
}

/** A function the update placed in its code region: what a later update matches a change of that function against. */
export interface InstalledFunctionRecord {
  /** File (basename) the function belongs to. */
  object: string;
  /** Translation unit (object path in the source tree) and symbol name in its post object. */
  unit: string;
  name: string;
  address: bigint;
  size: number;
  /** For a changed function: the old entry holding the jump to it. */
  entry?: bigint;
}

/** A call stub or local GOT slot the update's linker made, so a later update can tell whom the code reaches. */
export interface SlotRecord {
  object: string;
  /** stub: a `jmp *slot(%rip)` at `address`; address / tpoff: a GOT slot at `address` holding the symbol's address or TLS offset. */
  kind: 'stub' | 'address' | 'tpoff';
  address: bigint;
  /** The slot a stub jumps through. */
  slot?: bigint;
  symbol: string;
}

export interface UpdateRecord {
  id: string;
  /** The objects (executable or library basenames) the update changes in this process. */
  objects: string[];
  /** ISO 8601. */
  appliedAt: string;
  /** Memory made for the new code, one region per patched object. */
  codeRegions: Region[];
  redirects: RedirectRecord[];
  /** Functions placed (changed, new, cold parts); absent in records of older tsplice versions. */
  installed?: InstalledFunctionRecord[];
  slots?: SlotRecord[];
  freezeMs: number;
  /** Sequence number: updates are undone last-in, first-out. */
  order: number;
}

export interface StoredRecord extends UpdateRecord {
  /** Where the record itself lives in the target. */
  recordRegion: Region;
}

const MAGIC = Buffer.from('TSPLICE\0', 'latin1');
const FORMAT_VERSION = 1;
const HEADER_SIZE = 16;
const NAME_PREFIX = 'tsplice:';
const VALID_ID = /^[A-Za-z0-9_.+-]{1,64}$/;

/** The maps name of a record region, from either naming method. */
const RECORD_PATH = /^(?:\[anon:tsplice:([^\]]+)\]|\/memfd:tsplice:(\S+?)(?: \(deleted\))?)$/;

/** Name shown in /proc/PID/maps for update `id`'s record. */
export function recordRegionName(id: string): string {
  return NAME_PREFIX + id;
}

export function checkUpdateId(id: string): void {
  if (!VALID_ID.test(id)) {
    throw new TspliceError('bad_input', `update id ${JSON.stringify(id)} is not valid: use letters, digits, ".", "_", "+", "-" (at most 64)`, {
      id,
    });
  }
}

export function encodeRecord(record: UpdateRecord): Buffer {
  const json = Buffer.from(
    JSON.stringify(record, (_key, value: unknown) => (typeof value === 'bigint' ? '0x' + value.toString(16) : value)),
    'utf8',
  );
  const header = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(FORMAT_VERSION, 8);
  header.writeUInt32LE(json.length, 12);
  return Buffer.concat([header, json]);
}

/** Decode a record region's bytes; undefined if they are not a record. */
export function decodeRecord(bytes: Buffer): UpdateRecord | undefined {
  if (bytes.length < HEADER_SIZE || !bytes.subarray(0, 8).equals(MAGIC)) return undefined;
  if (bytes.readUInt32LE(8) !== FORMAT_VERSION) return undefined;
  const length = bytes.readUInt32LE(12);
  if (HEADER_SIZE + length > bytes.length) return undefined;
  let raw: {
    id: string;
    objects: string[];
    appliedAt: string;
    codeRegions: { start: string; size: string }[];
    redirects: { name: string; object: string; from: string; to: string; original: string }[];
    installed?: { object: string; unit: string; name: string; address: string; size: number; entry?: string }[];
    slots?: { object: string; kind: SlotRecord['kind']; address: string; slot?: string; symbol: string }[];
    freezeMs: number;
    order: number;
  };
  try {
    raw = JSON.parse(bytes.subarray(HEADER_SIZE, HEADER_SIZE + length).toString('utf8'));
    return {
      id: raw.id,
      objects: raw.objects.map(String),
      appliedAt: raw.appliedAt,
      codeRegions: raw.codeRegions.map((r) => ({ start: BigInt(r.start), size: BigInt(r.size) })),
      redirects: raw.redirects.map((r) => ({
        name: r.name, object: r.object, from: BigInt(r.from), to: BigInt(r.to), original: r.original,
      })),
      installed: (raw.installed ?? []).map((f) => ({
        object: f.object, unit: f.unit, name: f.name, address: BigInt(f.address), size: f.size,
        ...(f.entry !== undefined ? { entry: BigInt(f.entry) } : {}),
      })),
      slots: (raw.slots ?? []).map((x) => ({
        object: x.object, kind: x.kind, address: BigInt(x.address), symbol: x.symbol,
        ...(x.slot !== undefined ? { slot: BigInt(x.slot) } : {}),
      })),
      freezeMs: raw.freezeMs,
      order: raw.order,
    };
  } catch {
    return undefined;
  }
}

/** Records of the updates applied to process pid, oldest first. Needs no ptrace. */
export function readRecords(pid: number): StoredRecord[] {
  const regions = readMaps(pid).filter((m) => RECORD_PATH.test(m.path));
  if (regions.length === 0) return [];
  const memory = new ProcessMemory(pid, 'read');
  try {
    const records: StoredRecord[] = [];
    for (const region of regions) {
      const record = readRecordAt(memory, region);
      if (record) records.push(record);
    }
    return records.sort((a, b) => a.order - b.order);
  } finally {
    memory.close();
  }
}

function readRecordAt(memory: ProcessMemory, region: MapEntry): StoredRecord | undefined {
  const size = region.end - region.start;
  const header = memory.read(region.start, HEADER_SIZE);
  if (!header.subarray(0, 8).equals(MAGIC)) return undefined;
  const total = HEADER_SIZE + header.readUInt32LE(12);
  if (BigInt(total) > size) return undefined;
  const record = decodeRecord(memory.read(region.start, total));
  if (!record) return undefined;
  const idInName = RECORD_PATH.exec(region.path);
  if ((idInName?.[1] ?? idInName?.[2]) !== record.id) return undefined;
  return { ...record, recordRegion: { start: region.start, size } };
}

/**
 * Store a record in the target. Without `order`, it goes after every record
 * already there. An id that is already recorded is `already_applied`.
 */
export function writeRecord(session: ProcessSession, record: Omit<UpdateRecord, 'order'> & { order?: number }): StoredRecord {
  checkUpdateId(record.id);
  const existing = readRecords(session.pid);
  if (existing.some((r) => r.id === record.id)) {
    throw new TspliceError('already_applied', `update ${record.id} is already applied to process ${session.pid}`, {
      pid: session.pid,
      id: record.id,
    });
  }
  const order = record.order ?? existing.reduce((max, r) => Math.max(max, r.order), 0) + 1;
  const full: UpdateRecord = { ...record, order };
  const bytes = encodeRecord(full);
  const region = remoteMmap(session, { size: BigInt(bytes.length), prot: PROT_READ, name: recordRegionName(record.id) });
  try {
    // Read-only in the target; /proc/PID/mem writes through the protection.
    session.memory.write(region.start, bytes);
  } catch (e) {
    remoteMunmap(session, region);
    throw e;
  }
  return { ...full, recordRegion: region };
}

/** Remove a record region, after checking it still holds that record. */
export function removeRecord(session: ProcessSession, record: StoredRecord): void {
  const current = readRecords(session.pid).find((r) => r.id === record.id);
  if (!current || current.recordRegion.start !== record.recordRegion.start) {
    throw new TspliceError('not_applied', `update ${record.id} is not recorded in process ${session.pid}`, {
      pid: session.pid,
      id: record.id,
    });
  }
  remoteMunmap(session, current.recordRegion);
}
