// Shared helpers for the run-pre matching tests: build a pre object (with
// -ffunction-sections -fdata-sections) and a normally linked program or
// library from the same source, and look at them with independent tools.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseElf, type ElfFile } from '../../src/elf/reader.js';
import { createRunningImage, type RunningImage } from '../../src/match/image.js';
import { ElfFileReader } from '../../src/match/memory.js';
import { preFunction, preFunctions, type PreFunction } from '../../src/match/pre.js';
import { matchUnit, type UnitMatch } from '../../src/match/unit.js';
import { gcc } from '../helpers/cc.js';

export const PRE_FLAGS = ['-ffunction-sections', '-fdata-sections'];

export interface Built {
  dir: string;
  /** Pre object path (one per source). */
  objects: string[];
  /** Linked output path. */
  output: string;
}

/** Compile `sources` (in dir) to pre objects with `flags` and link them normally with `flags` + `linkFlags`. */
export function build(dir: string, sources: string[], output: string, flags: string[], linkFlags: string[] = []): Built {
  const objects = sources.map((src) => {
    const obj = `${output}.${src.replace(/\.c$/, '')}.pre.o`;
    gcc(dir, ['-c', ...flags, ...PRE_FLAGS, src, '-o', obj]);
    return join(dir, obj);
  });
  gcc(dir, [...flags, ...sources, ...linkFlags, '-o', output]);
  return { dir, objects, output: join(dir, output) };
}

export interface Loaded {
  elf: ElfFile;
  file: Buffer;
  image: RunningImage;
  reader: ElfFileReader;
}

/** A linked file read at its link addresses (no process needed). */
export function loadFile(path: string): Loaded {
  const file = readFileSync(path);
  const elf = parseElf(file, path);
  return { elf, file, image: createRunningImage(elf, 0n, path), reader: new ElfFileReader(elf, file) };
}

export function loadPre(path: string): ElfFile {
  return parseElf(readFileSync(path), path);
}

export function pre(path: string, name: string): PreFunction {
  return preFunction(loadPre(path), name, path);
}

/** Match every function of a pre object against a linked file. */
export function matchFile(object: string, linked: string): UnitMatch {
  const { image, reader } = loadFile(linked);
  return matchUnit(preFunctions(loadPre(object), object), image, reader);
}

/** Symbol values from nm (independent of our ELF reader): name → addresses (several for duplicate locals). */
export function nmSymbols(path: string): Map<string, bigint[]> {
  const out = new Map<string, bigint[]>();
  for (const line of execFileSync('nm', ['--defined-only', path], { encoding: 'utf8' }).split('\n')) {
    const m = /^([0-9a-f]+) \S (\S+)$/.exec(line.trim());
    if (!m) continue;
    const name = m[2].replace(/@.*$/, '');
    const list = out.get(name) ?? [];
    list.push(BigInt('0x' + m[1]));
    out.set(name, list);
  }
  return out;
}

/** The single nm address of `name`. */
export function nmAddress(path: string, name: string): bigint {
  const list = nmSymbols(path).get(name);
  if (!list || list.length !== 1) throw new Error(`nm: ${name} has ${list?.length ?? 0} definitions in ${path}`);
  return list[0];
}

/** objdump -d of one function (with raw bytes), for checking what the fixture really contains. */
export function disassemble(path: string, fn: string): string {
  const out = execFileSync('objdump', ['-d', path], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const start = out.indexOf(`<${fn}>:\n`);
  if (start < 0) return '';
  const end = out.indexOf('\n\n', start);
  return out.slice(start, end < 0 ? undefined : end);
}

/** readelf -rW lines, e.g. to find COPY or TPOFF64 relocations. */
export function dynamicRelocations(path: string): string[] {
  return execFileSync('readelf', ['-rW', path], { encoding: 'utf8' }).split('\n');
}

/** A TLS symbol's thread-pointer offset in an executable, from readelf (x86-64 variant II). */
export function tpoffFromReadelf(path: string, name: string): bigint {
  const segs = execFileSync('readelf', ['-lW', path], { encoding: 'utf8' });
  const tls = /^\s*TLS\s+\S+\s+\S+\s+\S+\s+\S+\s+(0x[0-9a-f]+)\s+\S+\s+(0x[0-9a-f]+)/m.exec(segs);
  if (!tls) throw new Error(`${path} has no PT_TLS`);
  const memsz = BigInt(tls[1]);
  const align = BigInt(tls[2]);
  const size = ((memsz + align - 1n) / align) * align;
  return nmAddress(path, name) - size;
}

/**
 * Where matching says the pre object's string literal `text` is: through the
 * resolution of its section (base + offset), of its element, or of a symbol on it.
 */
export function literalAddress(m: UnitMatch, preElf: ElfFile, text: string): bigint | undefined {
  const needle = Buffer.from(text + '\0', 'latin1');
  for (const section of preElf.sections) {
    if (!section.name.startsWith('.rodata')) continue;
    const at = section.data.indexOf(needle);
    if (at < 0 || (at > 0 && section.data[at - 1] !== 0)) continue;
    const base = m.symbols.get(section.name)?.address;
    if (base !== undefined) return base + BigInt(at);
    const element = m.symbols.get(`${section.name}+0x${at.toString(16)}`)?.address;
    if (element !== undefined) return element;
    const sym = preElf.symbols.find((s) => s.shndx === section.index && s.value === BigInt(at) && s.name !== '');
    if (sym) return m.symbols.get(sym.name)?.address;
  }
  return undefined;
}

/** Link-time address of the NUL-terminated `text` in a linked file's .rodata (it must be there once). */
export function fileStringAddress(path: string, text: string): bigint {
  const { elf } = loadFile(path);
  const rodata = elf.sections.find((s) => s.name === '.rodata');
  if (!rodata) throw new Error(`${path} has no .rodata`);
  const needle = Buffer.from(text + '\0', 'latin1');
  const at = rodata.data.indexOf(needle);
  if (at < 0 || rodata.data.indexOf(needle, at + 1) >= 0) throw new Error(`${JSON.stringify(text)} is not once in ${path}`);
  return rodata.addr + BigInt(at);
}
