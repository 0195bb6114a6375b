// A reference link with GNU ld: the same object linked by ld with every section
// at a fixed address — the block's sections where tsplice placed them, the
// others (the "running program") elsewhere — and undefined symbols defined with
// --defsym. The resolver used against tsplice's linker answers from ld's output.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SHF_ALLOC, SHN_UNDEF, STT_FILE, STT_SECTION } from '../../src/elf/constants.js';
import { parseElf, symbolSection, type ElfFile } from '../../src/elf/reader.js';
import type { BlockLayout } from '../../src/link/layout.js';
import type { SymbolResolver } from '../../src/link/resolution.js';

export interface ReferenceLink {
  out: ElfFile;
  /** Answers 'address' for every symbol from ld's symbol table (GOT accesses get a local slot). */
  resolver: SymbolResolver;
  /** Address of each section in ld's output, by name. */
  sectionAddress: Map<string, bigint>;
}

/**
 * Link `objectPath` with ld: placed sections at base + their layout offset, other allocated sections from
 * `othersAt` upwards, `undefinedAt` gives each undefined symbol's address.
 */
export function referenceLink(
  dir: string, objectPath: string, layout: BlockLayout, base: bigint, othersAt: bigint,
  undefinedAt: Map<string, bigint>,
): ReferenceLink {
  const elf = layout.elf;
  const lines: string[] = ['SECTIONS {'];
  let next = othersAt;
  for (const s of elf.sections) {
    if ((s.flags & SHF_ALLOC) === 0n || s.name === '.eh_frame' || s.name.startsWith('.note')) continue;
    const placed = layout.bySection.get(s.index);
    let address: bigint;
    if (placed) {
      address = base + BigInt(placed.offset);
    } else {
      next = (next + 0xfffn) & ~0xfffn;
      address = next;
      next += BigInt(s.size) + 0x40n;
    }
    lines.push(`  ${s.name} 0x${address.toString(16)} : { *(${s.name}) }`);
  }
  next = (next + 0xfffn) & ~0xfffn;
  lines.push(`  .got 0x${next.toString(16)} : { *(.got) *(.got.plt) }`);
  lines.push('  /DISCARD/ : { *(.eh_frame) *(.note.*) *(.comment) }', '}');
  const script = join(dir, 'ref.ld');
  writeFileSync(script, lines.join('\n') + '\n');
  const outPath = join(dir, 'ref.elf');
  const defsyms = [...undefinedAt].flatMap(([name, addr]) => ['--defsym', `${name}=0x${addr.toString(16)}`]);
  execFileSync('ld', ['-o', outPath, '-T', script, '--no-relax', '-e', '0', ...defsyms, objectPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = parseElf(readFileSync(outPath), outPath);
  const sectionAddress = new Map(out.sections.map((s) => [s.name, s.addr]));

  const resolver: SymbolResolver = (ref) => {
    const candidates = out.symbols.filter(
      (s) => s.name === ref.name && s.shndx !== SHN_UNDEF && s.type !== STT_SECTION && s.type !== STT_FILE,
    );
    const sym = candidates.find((s) => !ref.section || symbolSection(out, s)?.name === ref.section) ??
      (ref.section ? undefined : candidates[0]);
    if (!sym) return undefined;
    return { kind: 'address', value: sym.value };
  };
  return { out, resolver, sectionAddress };
}

/** Bytes of an output section of ld's link. */
export function outputSection(out: ElfFile, name: string): { addr: bigint; data: Buffer } {
  const s = out.sections.find((x) => x.name === name);
  if (!s) throw new Error(`ld output has no section ${name}`);
  return { addr: s.addr, data: s.data };
}

/** Read 8 bytes at a run-time address of ld's output. */
export function readOutput64(out: ElfFile, address: bigint): bigint {
  for (const s of out.sections) {
    if ((s.flags & SHF_ALLOC) === 0n || s.data.length === 0) continue;
    if (address >= s.addr && address + 8n <= s.addr + BigInt(s.data.length)) {
      return s.data.readBigUInt64LE(Number(address - s.addr));
    }
  }
  throw new Error(`ld output has nothing at 0x${address.toString(16)}`);
}
