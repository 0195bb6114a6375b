// The running ELF object that matching compares against: its file on disk
// (parsed) and where it is loaded. Everything matching needs to interpret
// linked code — GOT slots and what fills them, PLT stubs and whom they call —
// is indexed here once, at run-time addresses.

import { DT_NULL, ET_DYN, ET_EXEC, PT_INTERP, SHN_UNDEF, SHT_DYNAMIC, STB_LOCAL, STT_FILE, STT_TLS } from '../elf/constants.js';
import type { ElfFile, ElfSymbol } from '../elf/reader.js';
import { R_X86_64_GLOB_DAT, R_X86_64_TPOFF64 } from '../elf/x86_64.js';
import { findPltStubs, type PltStub } from './plt.js';

/** One dynamic relocation that fills a slot (GOT entry, copy, TLS word) when the object is loaded. */
export interface DynamicSlot {
  /** Run-time address of the slot. */
  slot: bigint;
  type: number;
  /** The dynamic symbol it refers to, when it has one (not for R_X86_64_RELATIVE). */
  symbol?: string;
  version?: string;
  addend: bigint;
}

export interface RunningImage {
  /** For messages: usually the path of the file. */
  name: string;
  elf: ElfFile;
  /** Load bias: run-time address = link-time address + bias (0 for non-PIE executables). */
  bias: bigint;
  /**
   * An executable (ET_EXEC or PIE) rather than a shared library: the static
   * linker relaxed TLS accesses to the initial-exec or local-exec model.
   */
  executable: boolean;
  /** PLT stubs by run-time entry address. */
  pltStubs: Map<bigint, PltStub>;
  /** Dynamic relocations by run-time slot address. */
  dynamicSlots: Map<bigint, DynamicSlot>;
  /** Run-time addresses of the global and weak non-TLS symbols the image defines (.dynsym, .symtab), by unversioned name. */
  definitions: Map<string, bigint[]>;
  /** The reverse: names of those symbols by run-time address. */
  namesAt: Map<bigint, string[]>;
  /**
   * Code that updates already applied to the process placed for this
   * object (see withInstalledCode): a function an update replaced runs there
   * now, so matching a later update compares with it.
   */
  installed?: InstalledCode[];
  /** Run-time address of such a copy → the entry of the function it replaced (which jumps to it). */
  aliases?: Map<bigint, bigint>;
}

/** A function an applied update placed in the process. */
export interface InstalledCode {
  /** The update that placed it, for messages. */
  update: string;
  /** Translation unit (object path in the source tree) and symbol name it came from. */
  unit: string;
  name: string;
  /** Where its code is, and its size. */
  address: bigint;
  size: number;
  /** For a changed function: its old entry, which holds the jump here. Absent for new code and cold parts. */
  entry?: bigint;
}

/** A call stub (`jmp *slot(%rip)`) or GOT slot an applied update's linker made, and the symbol it reaches. */
export interface InstalledSlot {
  address: bigint;
  symbol: string;
}

export type { PltStub };

const DT_FLAGS_1 = 0x6ffffffbn;
const DF_1_PIE = 0x08000000n;

/** Describe `elf`, loaded at link address + `bias`. */
export function createRunningImage(elf: ElfFile, bias = 0n, name = elf.name): RunningImage {
  const dynamicSlots = new Map<bigint, DynamicSlot>();
  for (const relocations of elf.dynamicRelocations.values()) {
    for (const r of relocations) {
      const sym: ElfSymbol | undefined = r.symbolIndex !== 0 ? elf.dynamicSymbols[r.symbolIndex] : undefined;
      const slot: DynamicSlot = { slot: r.offset + bias, type: r.type, addend: r.addend };
      if (sym && sym.name !== '') {
        slot.symbol = sym.name;
        if (sym.version) slot.version = sym.version;
      }
      dynamicSlots.set(slot.slot, slot);
    }
  }
  const definitions = new Map<string, bigint[]>();
  const namesAt = new Map<bigint, string[]>();
  for (const sym of [...elf.dynamicSymbols, ...elf.symbols]) {
    // TLS symbols have offsets, not addresses: they are resolved from the code that uses them.
    if (sym.shndx === SHN_UNDEF || sym.bind === STB_LOCAL || sym.name === '' || sym.type === STT_FILE || sym.type === STT_TLS) {
      continue;
    }
    const name = unversioned(sym.name);
    const list = definitions.get(name) ?? [];
    const address = sym.value + bias;
    if (!list.includes(address)) list.push(address);
    definitions.set(name, list);
    const names = namesAt.get(address) ?? [];
    if (!names.includes(name)) names.push(name);
    namesAt.set(address, names);
  }
  return {
    name,
    elf,
    bias,
    executable: isExecutable(elf),
    pltStubs: findPltStubs(elf, bias, dynamicSlots),
    dynamicSlots,
    definitions,
    namesAt,
  };
}

function isExecutable(elf: ElfFile): boolean {
  if (elf.type === ET_EXEC) return true;
  if (elf.type !== ET_DYN) return false;
  const dynamic = elf.sections.find((s) => s.type === SHT_DYNAMIC);
  if (dynamic) {
    for (let o = 0; o + 16 <= dynamic.data.length; o += 16) {
      const tag = dynamic.data.readBigInt64LE(o);
      if (tag === BigInt(DT_NULL)) break;
      if (tag === DT_FLAGS_1) return (dynamic.data.readBigUInt64LE(o + 8) & DF_1_PIE) !== 0n;
    }
  }
  // Old linkers did not mark PIEs: a program interpreter without a soname is the best sign left.
  return elf.segments.some((p) => p.type === PT_INTERP) && elf.soname === undefined;
}

/** Run-time address of a global symbol this image defines; undefined when it has none. */
export function definedGlobalAddress(image: RunningImage, name: string): bigint | undefined {
  return image.definitions.get(unversioned(name))?.[0];
}

/** The name of a symbol without its version suffix (`printf@GLIBC_2.2.5` → `printf`). */
export function unversioned(name: string): string {
  const at = name.indexOf('@');
  return at < 0 ? name : name.slice(0, at);
}

/**
 * `image` as it runs after earlier updates: their copies of functions (the
 * latest one per unit and name wins), their call stubs (matched like PLT
 * stubs) and their local GOT slots (like GOT slots filled by ld.so).
 */
export function withInstalledCode(
  image: RunningImage,
  installed: readonly InstalledCode[],
  stubs: ReadonlyArray<InstalledSlot & { slot: bigint }> = [],
  slots: ReadonlyArray<InstalledSlot & { holds: 'address' | 'tpoff' }> = [],
): RunningImage {
  const latest = new Map<string, InstalledCode>();
  for (const code of installed) latest.set(`${code.unit}\0${code.name}`, code);
  const aliases = new Map<bigint, bigint>(image.aliases ?? []);
  for (const code of installed) if (code.entry !== undefined) aliases.set(code.address, code.entry);
  const pltStubs = new Map(image.pltStubs);
  for (const s of stubs) {
    pltStubs.set(s.address, { address: s.address, slot: s.slot, symbol: unversioned(s.symbol), section: 'tsplice stub' });
  }
  const dynamicSlots = new Map(image.dynamicSlots);
  for (const s of slots) {
    dynamicSlots.set(s.address, {
      slot: s.address, type: s.holds === 'tpoff' ? R_X86_64_TPOFF64 : R_X86_64_GLOB_DAT, symbol: unversioned(s.symbol), addend: 0n,
    });
  }
  return { ...image, installed: [...(image.installed ?? []), ...latest.values()], aliases, pltStubs, dynamicSlots };
}

/** The latest applied copy of function `name` of `unit`, if an update placed one. */
export function installedCopy(image: RunningImage, unit: string, name: string): InstalledCode | undefined {
  const all = image.installed ?? [];
  for (let i = all.length - 1; i >= 0; i--) if (all[i].unit === unit && all[i].name === name) return all[i];
  return undefined;
}
