// One object of the running kernel (vmlinux or a loaded module) as run-pre
// matching sees it: memory from /proc/kcore and names from /proc/kallsyms.
// There is no ELF file behind it: functions are located by name and sympos
// in kallsyms, and the global symbols kallsyms lists are what a reference in
// the pre code to a global must land on (the KASLR offset is already in the
// addresses kallsyms shows, as in the running code).

import { EM_X86_64, ET_EXEC } from '../../../elf/constants.js';
import type { ElfFile } from '../../../elf/reader.js';
import type { RunningImage } from '../../../match/image.js';
import { type KernelSymbols, VMLINUX } from './kallsyms.js';

export function kernelObjectImage(symbols: KernelSymbols, object: string, release: string): RunningImage {
  const definitions = new Map<string, bigint[]>();
  const namesAt = new Map<bigint, string[]>();
  // A module's code refers to vmlinux and to itself; vmlinux to itself only.
  const visible = object === VMLINUX ? [VMLINUX] : [VMLINUX, object];
  for (const name of visible) {
    for (const sym of symbols.of(name)) {
      if (!sym.global) continue;
      const list = definitions.get(sym.name) ?? [];
      if (!list.includes(sym.address)) list.push(sym.address);
      definitions.set(sym.name, list);
      const names = namesAt.get(sym.address) ?? [];
      if (!names.includes(sym.name)) names.push(sym.name);
      namesAt.set(sym.address, names);
    }
  }
  const name = object === VMLINUX ? `the running kernel ${release}` : `module ${object} of the running kernel ${release}`;
  const elf: ElfFile = {
    name,
    type: ET_EXEC,
    machine: EM_X86_64,
    entry: 0n,
    sections: [],
    segments: [],
    symbols: [],
    dynamicSymbols: [],
    relocations: new Map(),
    dynamicRelocations: new Map(),
    needed: [],
  };
  return {
    name,
    elf,
    bias: 0n,
    // The kernel has no TLS, PLT or GOT: per-CPU data is reached with %gs and absolute offsets.
    executable: true,
    pltStubs: new Map(),
    dynamicSlots: new Map(),
    definitions,
    namesAt,
  };
}
