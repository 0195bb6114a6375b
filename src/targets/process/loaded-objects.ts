// The ELF files a process has mapped (executable, shared libraries), where
// each is loaded, and their parsed contents, read through
// /proc/PID/map_files so a file replaced or deleted on disk since the
// process started is still the one examined.

import { readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { PT_LOAD } from '../../elf/constants.js';
import { type ElfFile, parseElf } from '../../elf/reader.js';
import { TspliceError } from '../../errors.js';
import type { MapEntry } from './maps.js';

export interface LoadedObject {
  /** Path as /proc/PID/maps shows it. */
  path: string;
  /** Basename, e.g. "libc.so.6". */
  name: string;
  /** The main executable of the process. */
  isMain: boolean;
  /** Lowest and highest address of its mappings. */
  start: bigint;
  end: bigint;
  mappings: MapEntry[];
  /** Run-time address = link-time address + bias. */
  bias: bigint;
  elf: ElfFile;
}

const PAGE_MASK = ~0xfffn;

function isFileBacked(m: MapEntry): boolean {
  return m.path.startsWith('/') && !m.path.startsWith('/memfd:') && m.inode !== 0;
}

/** Group a process's mappings by the file they map. */
export function mappedFiles(maps: readonly MapEntry[]): Map<string, MapEntry[]> {
  const byPath = new Map<string, MapEntry[]>();
  for (const m of maps) {
    if (!isFileBacked(m)) continue;
    const list = byPath.get(m.path) ?? [];
    list.push(m);
    byPath.set(m.path, list);
  }
  return byPath;
}

/** The process's main executable path as maps shows it. */
export function mainExecutablePath(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** Parse one mapped file and compute its load bias. */
export function loadObject(pid: number, path: string, mappings: MapEntry[], isMain: boolean): LoadedObject {
  const first = mappings.reduce((a, b) => (a.start < b.start ? a : b));
  const mapFile = `/proc/${pid}/map_files/${first.start.toString(16)}-${first.end.toString(16)}`;
  let data: Buffer;
  try {
    data = readFileSync(mapFile);
  } catch {
    try {
      data = readFileSync(path.replace(/ \(deleted\)$/, ''));
    } catch (e) {
      throw new TspliceError('target_gone', `cannot read ${path} mapped by process ${pid}: ${(e as Error).message}`, { pid });
    }
  }
  const elf = parseElf(data, path);
  // The mapping at file offset 0 holds the first PT_LOAD segment.
  const atZero = mappings.find((m) => m.offset === 0n) ?? first;
  const load = elf.segments.filter((p) => p.type === PT_LOAD).sort((a, b) => (a.vaddr < b.vaddr ? -1 : 1))[0];
  if (!load) throw new TspliceError('bad_input', `${path} has no loadable segment`);
  const bias = atZero.start - (load.vaddr & PAGE_MASK);
  const end = mappings.reduce((e, m) => (m.end > e ? m.end : e), 0n);
  return { path, name: basename(path.replace(/ \(deleted\)$/, '')), isMain, start: first.start, end, mappings, bias, elf };
}
