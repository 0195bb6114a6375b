// Where the running kernel rewrites its own code. A kernel object lists, in
// tables the kernel reads at boot or module load, every place it may patch:
// ftrace call sites (__mcount_loc), alternatives, paravirt calls, jump labels,
// static calls, return thunks, retpolines, SMP lock prefixes. Each table entry
// is a relocation into a function's section, so in the pre object the sites
// of one function are the relocations of those tables that point into its
// section. Run-pre matching accepts a rewritten instruction only at such a site.

import type { ElfFile, ElfSection } from '../../../elf/reader.js';
import { relocationsFor, sectionByName } from '../../../elf/reader.js';

export interface AlternativeSite {
  /** Bytes of original code the kernel may overwrite. */
  length: number;
  /** The replacement: its section and where it lies there. */
  replacement: { section: ElfSection; offset: number; length: number };
}

export interface JumpLabelSite {
  /** The branch target when it lies in the same function, as a section offset. */
  target?: number;
}

/** Patch sites of one function section, by offset in it. */
export interface SpecialSites {
  ftrace: Set<number>;
  returnThunks: Set<number>;
  retpolines: Set<number>;
  staticCalls: Set<number>;
  smpLocks: Set<number>;
  jumpLabels: Map<number, JumpLabelSite>;
  alternatives: Map<number, AlternativeSite[]>;
  /** Paravirt call sites and their length. */
  paravirt: Map<number, number>;
}

/** struct alt_instr: s32 instr_offset, s32 repl_offset, u16 cpuid, u8 instrlen, u8 replacementlen. */
const ALT_INSTR_SIZE = 12;
/** struct jump_entry: s32 code, s32 target, long key. */
const JUMP_ENTRY_SIZE = 16;
/** struct static_call_site: s32 addr, s32 key. */
const STATIC_CALL_SITE_SIZE = 8;
/** struct paravirt_patch_site, padded: u8 *instr, u8 type, u8 len, u16 clobbers. */
const PARAVIRT_SITE_SIZE = 16;

interface TableTarget {
  /** Offset of the relocated field in the table. */
  at: number;
  section: number;
  offset: number;
}

/** What each relocation of a table section points at (section index, offset in it). */
function tableTargets(elf: ElfFile, name: string): { table: ElfSection; targets: TableTarget[] } | undefined {
  const table = sectionByName(elf, name);
  if (!table) return undefined;
  const targets: TableTarget[] = [];
  for (const r of relocationsFor(elf, table)) {
    const sym = elf.symbols[r.symbolIndex];
    if (!sym) continue;
    // For a table entry "target - ." the relocation is S + A - P, so the site is S + A.
    targets.push({ at: Number(r.offset), section: sym.shndx, offset: Number(sym.value + r.addend) });
  }
  return { table, targets };
}

/** Sites of simple "one pointer per entry" tables in `section`. */
function simpleSites(elf: ElfFile, name: string, section: ElfSection, stride = 0): Set<number> {
  const out = new Set<number>();
  const t = tableTargets(elf, name);
  for (const target of t?.targets ?? []) {
    if (stride > 0 && target.at % stride !== 0) continue;
    if (target.section === section.index) out.add(target.offset);
  }
  return out;
}

export function specialSites(elf: ElfFile, section: ElfSection): SpecialSites {
  const sites: SpecialSites = {
    ftrace: simpleSites(elf, '__mcount_loc', section),
    returnThunks: simpleSites(elf, '.return_sites', section),
    retpolines: simpleSites(elf, '.retpoline_sites', section),
    staticCalls: simpleSites(elf, '.static_call_sites', section, STATIC_CALL_SITE_SIZE),
    smpLocks: simpleSites(elf, '.smp_locks', section),
    jumpLabels: new Map(),
    alternatives: new Map(),
    paravirt: new Map(),
  };

  const jumps = tableTargets(elf, '__jump_table');
  if (jumps) {
    const byEntry = new Map<number, TableTarget[]>();
    for (const t of jumps.targets) {
      const entry = t.at - (t.at % JUMP_ENTRY_SIZE);
      byEntry.set(entry, [...(byEntry.get(entry) ?? []), t]);
    }
    for (const [entry, fields] of byEntry) {
      const code = fields.find((f) => f.at === entry);
      const target = fields.find((f) => f.at === entry + 4);
      if (!code || code.section !== section.index) continue;
      sites.jumpLabels.set(code.offset, target && target.section === section.index ? { target: target.offset } : {});
    }
  }

  const alts = tableTargets(elf, '.altinstructions');
  if (alts) {
    for (const t of alts.targets) {
      if (t.at % ALT_INSTR_SIZE !== 0 || t.section !== section.index) continue;
      const repl = alts.targets.find((r) => r.at === t.at + 4);
      const replacementSection = repl ? elf.sections[repl.section] : undefined;
      if (!repl || !replacementSection || t.at + ALT_INSTR_SIZE > alts.table.data.length) continue;
      const length = alts.table.data[t.at + 10];
      const replacementLength = alts.table.data[t.at + 11];
      const list = sites.alternatives.get(t.offset) ?? [];
      list.push({ length, replacement: { section: replacementSection, offset: repl.offset, length: replacementLength } });
      sites.alternatives.set(t.offset, list);
    }
  }

  const pv = tableTargets(elf, '.parainstructions');
  if (pv) {
    for (const t of pv.targets) {
      if (t.at % PARAVIRT_SITE_SIZE !== 0 || t.section !== section.index || t.at + 10 > pv.table.data.length) continue;
      sites.paravirt.set(t.offset, pv.table.data[t.at + 9]);
    }
  }
  return sites;
}

/** Special sites per pre function section, computed once per matching run. */
export class SpecialSiteIndex {
  private readonly cache = new Map<ElfSection, SpecialSites>();

  of(elf: ElfFile, section: ElfSection): SpecialSites {
    let sites = this.cache.get(section);
    if (!sites) this.cache.set(section, (sites = specialSites(elf, section)));
    return sites;
  }
}
