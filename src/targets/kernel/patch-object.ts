// One translation unit's share of a livepatch module: the changed and new
// functions of its post object, the read-only data they use, fresh copies of
// the per-call-site variables (WARN_ONCE's __already_done, dynamic debug
// descriptors), and the entries of the kernel's special sections that belong
// to those functions (bug table, exception table, alternatives, jump labels,
// static calls, return thunk sites, ftrace call sites, ORC unwind data).
//
// Everything else the code refers to stays in the running kernel: exported
// symbols become ordinary undefined references (the module loader resolves
// them); anything else becomes an undefined symbol already carrying its final
// livepatch name, ".klp.sym.<object>.<name>,<sympos>". The module link (ld -r)
// would destroy real livepatch symbols, so they are only marked as such on
// the finished .ko (klp-convert.ts), as kpatch's create-klp-module does.

import {
  SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, SHN_ABS, SHN_UNDEF, STB_GLOBAL, STB_LOCAL, STT_FUNC, STT_NOTYPE, STT_SECTION,
} from '../../elf/constants.js';
import type { ElfFile, ElfRela, ElfSection, ElfSymbol } from '../../elf/reader.js';
import { relocationsFor } from '../../elf/reader.js';
import { ObjectBuilder, type OutSymbol, SectionCopier, soleSymbolOf } from '../../elf/writer.js';
import { TspliceError } from '../../errors.js';

/** Where a symbol the new code uses lives in the running kernel. */
export type KernelReference =
  /** Exported: a normal undefined symbol. */
  | { kind: 'exported' }
  /** Not exported: resolved by the livepatch core by name and position. */
  | { kind: 'klp'; object: string; name: string; sympos: number };

/** Decides how a symbol the new code uses (not copied into the module) is reached. */
export interface ReferenceResolver {
  /**
   * name: symbol name in the post object; local: static in the unit;
   * isFunction: it names code (else data).
   */
  resolve(name: string, local: boolean, isFunction: boolean): KernelReference;
}

export interface PatchObjectInput {
  /** The unit's post object. */
  post: ElfFile;
  /** Names of the post-object functions to ship (changed and new, `.cold` parts found here). */
  functions: string[];
  /** Names of new variables the patch adds (shipped; everything else existing stays in the kernel). */
  newData: string[];
  resolver: ReferenceResolver;
  /** For messages. */
  unit: string;
  /** The linked object the unit belongs to ("vmlinux" or a module). */
  target: string;
}

export interface PatchObject {
  /** The ET_REL bytes. */
  object: Buffer;
  /** Post function name → the global alias the generated C code uses as klp_func.new_func. */
  entries: Map<string, string>;
  /** Livepatch symbols the object refers to, as `.klp.sym...` names. */
  klpSymbols: string[];
}

/** Special sections whose entries each belong to one place in the code, with their entry size. */
const SPECIAL_SECTIONS: Record<string, { size: number; owner: number }> = {
  __bug_table: { size: 12, owner: 0 },
  __ex_table: { size: 12, owner: 0 },
  '.altinstructions': { size: 12, owner: 0 },
  __jump_table: { size: 16, owner: 0 },
  '.static_call_sites': { size: 8, owner: 0 },
  '.return_sites': { size: 4, owner: 0 },
  '.retpoline_sites': { size: 4, owner: 0 },
  '.call_sites': { size: 4, owner: 0 },
  '.ibt_endbr_seal': { size: 4, owner: 0 },
  '.smp_locks': { size: 4, owner: 0 },
  '.parainstructions': { size: 16, owner: 0 },
  __mcount_loc: { size: 8, owner: 0 },
  '.orc_unwind_ip': { size: 4, owner: 0 },
};

/** Sections shared by all the unit's code that are shipped whole. */
const WHOLE_SECTIONS = new Set(['.altinstr_replacement', '.altinstr_aux']);

/** Writable sections that hold per-call-site state, not program data: shipped as fresh copies. */
function isCallSiteState(section: ElfSection): boolean {
  return section.name === '.data.once' || section.name === '__dyndbg' || section.name.startsWith('.data.once.') ||
    section.name === '.data..once';
}

export function buildPatchObject(input: PatchObjectInput): PatchObject {
  const { post, unit } = input;
  const textOf = new Map<string, ElfSection>();
  for (const name of input.functions) {
    const sym = post.symbols.find((s) => s.name === name && s.type === STT_FUNC && s.shndx !== SHN_UNDEF);
    if (!sym) throw new TspliceError('internal', `${unit}: function ${name} is not in the post object`);
    textOf.set(name, post.sections[sym.shndx]);
    const cold = post.symbols.find((s) => s.name === `${name}.cold` && s.shndx !== SHN_UNDEF);
    if (cold) textOf.set(`${name}.cold`, post.sections[cold.shndx]);
  }
  const include = new Set<number>([...textOf.values()].map((s) => s.index));
  const newData = new Set(input.newData);

  // Entries of the special sections that belong to the shipped code; what
  // they refer to (file names of bug entries...) must be shipped too.
  const specials = specialEntries(post, include);

  // The closure: read-only data and fresh call-site state the shipped code (transitively) refers to.
  const definedIn = (sym: ElfSymbol): ElfSection | undefined =>
    sym.shndx !== SHN_UNDEF && sym.shndx < 0xff00 ? post.sections[sym.shndx] : undefined;
  const scan = (relas: ElfRela[], pending: number[]): void => {
    for (const r of relas) {
      const target = definedIn(post.symbols[r.symbolIndex]);
      if (!target || include.has(target.index) || (target.flags & SHF_ALLOC) === 0n) continue;
      const writable = (target.flags & SHF_WRITE) !== 0n;
      const exec = (target.flags & SHF_EXECINSTR) !== 0n;
      const sole = soleSymbolOf(post, target.index);
      const isNew = sole !== undefined && newData.has(sole.name);
      if (exec || (writable && !isCallSiteState(target) && !isNew)) continue; // stays in the kernel
      if (SPECIAL_SECTIONS[target.name] || WHOLE_SECTIONS.has(target.name)) continue;
      include.add(target.index);
      pending.push(target.index);
    }
  };
  // The replacement code of alternatives (and static_cpu_has's fallback paths) is one section for the
  // whole unit: ship it whole.
  const whole = post.sections.filter((s) => WHOLE_SECTIONS.has(s.name));
  const pending = [...include];
  for (const sp of specials) scan(sp.relas, pending);
  for (const w of whole) scan(relocationsFor(post, w), pending);
  while (pending.length > 0) scan(relocationsFor(post, post.sections[pending.pop() as number]), pending);

  const builder = new ObjectBuilder({ fileName: `${unit} (tsplice)` });
  const klpSymbols = new Set<string>();
  const resolveOutside = (sym: ElfSymbol, elf: ElfFile): OutSymbol | undefined => {
    const section = definedIn(sym);
    if (section && (include.has(section.index) || whole.includes(section))) return undefined; // copied
    if (sym.shndx === SHN_ABS) return undefined;
    let name = sym.name;
    let local = sym.bind === STB_LOCAL;
    if (sym.type === STT_SECTION) {
      const sole = section ? soleSymbolOf(elf, section.index) : undefined;
      if (!sole) {
        throw new TspliceError('unsupported_change',
          `${unit}: the new code refers to section ${section?.name ?? sym.shndx}, which holds no single named ` +
          'function or variable the running kernel could be searched for', { unit });
      }
      name = sole.name;
      local = sole.bind === STB_LOCAL;
    }
    const isFunction = section ? (section.flags & SHF_EXECINSTR) !== 0n : sym.type === STT_FUNC;
    const ref = input.resolver.resolve(name, local, isFunction);
    if (ref.kind === 'exported') {
      const existing = builder.findGlobal(name);
      if (existing) return existing;
      return { name, type: STT_NOTYPE, bind: STB_GLOBAL, section: 'undef', value: 0n, size: 0 };
    }
    const full = `.klp.sym.${ref.object}.${ref.name},${ref.sympos}`;
    klpSymbols.add(full);
    return builder.findGlobal(full) ?? { name: full, type: STT_NOTYPE, bind: STB_GLOBAL, section: 'undef', value: 0n, size: 0 };
  };
  const copier = new SectionCopier(builder, post, resolveOutside);
  const shipped = post.sections.filter((s) => include.has(s.index));
  copier.copySections([...shipped, ...whole]);

  // Each shipped function gets a global alias for the generated C file; the
  // copies themselves become local, so several units never clash at link time.
  const entries = new Map<string, string>();
  input.functions.forEach((name, i) => {
    const section = copier.outputOf(textOf.get(name) as ElfSection);
    if (!section) throw new TspliceError('internal', `${unit}: ${name} was not copied`);
    const alias = `__tsplice_${input.target}_${sanitize(unit)}_${i}`;
    const sym = post.symbols.find((s) => s.name === name && s.type === STT_FUNC) as ElfSymbol;
    builder.addSymbol({ name: alias, type: STT_FUNC, bind: STB_GLOBAL, section, value: sym.value, size: sym.size });
    entries.set(name, alias);
  });
  for (const sym of definedCopies(copier, post, include)) {
    if (!sym.name.startsWith('__tsplice_')) sym.bind = STB_LOCAL;
  }

  copySpecialEntries(post, builder, copier, specials, unit, input.target);
  return { object: builder.write(), entries, klpSymbols: [...klpSymbols].sort() };
}

/** The output copies of symbols defined in the shipped sections. */
function definedCopies(copier: SectionCopier, post: ElfFile, include: Set<number>): OutSymbol[] {
  return post.symbols
    .filter((s) => s.index !== 0 && include.has(s.shndx) && s.type !== STT_SECTION && s.name !== '')
    .map((s) => copier.symbol(s.index));
}

interface SpecialSlice {
  section: ElfSection;
  size: number;
  /** Start offsets of the kept entries, ascending. */
  kept: number[];
  /** Their relocations, moved to the offsets they get in the slice. */
  relas: ElfRela[];
}

/** Entries of the special sections whose owner field points into shipped code. */
function specialEntries(post: ElfFile, include: Set<number>): SpecialSlice[] {
  const slices: SpecialSlice[] = [];
  for (const section of post.sections) {
    const layout = SPECIAL_SECTIONS[section.name];
    if (!layout) continue;
    const all = relocationsFor(post, section);
    const kept: number[] = [];
    for (const r of all) {
      if (Number(r.offset) % layout.size !== layout.owner) continue;
      const sym = post.symbols[r.symbolIndex];
      if (sym.shndx !== SHN_UNDEF && include.has(sym.shndx) &&
        (post.sections[sym.shndx].flags & SHF_EXECINSTR) !== 0n) kept.push(Number(r.offset) - layout.owner);
    }
    if (kept.length === 0) continue;
    kept.sort((x, y) => x - y);
    const relas = kept.flatMap((start, i) => all
      .filter((r) => Number(r.offset) >= start && Number(r.offset) < start + layout.size)
      .map((r) => ({ ...r, offset: r.offset - BigInt(start) + BigInt(i * layout.size) })));
    slices.push({ section, size: layout.size, kept, relas });
  }
  return slices;
}

function copySpecialEntries(post: ElfFile, builder: ObjectBuilder, copier: SectionCopier, slices: SpecialSlice[],
  unit: string, target: string): void {
  const orc = post.sections.find((s) => s.name === '.orc_unwind');
  for (const { section, size, kept, relas } of slices) {
    if (section.name === '__jump_table' && target !== 'vmlinux') checkJumpKeys(post, relas, kept.length, unit, target);
    const data = Buffer.concat(kept.map((start) => section.data.subarray(start, start + size)));
    const out = builder.addSection({
      name: section.name, type: section.type, flags: section.flags & ~0x200n, addralign: section.addralign,
      entsize: section.entsize, data,
    });
    if (relas.length > 0) builder.addRelocations(out, copier.translate(relas));
    if (section.name === '.orc_unwind_ip' && orc) {
      const entries = Buffer.concat(kept.map((start) => orc.data.subarray((start / 4) * 6, (start / 4) * 6 + 6)));
      builder.addSection({ name: '.orc_unwind', type: orc.type, flags: orc.flags & ~0x200n, addralign: orc.addralign,
        entsize: orc.entsize, data: entries });
    }
  }
}

/**
 * The module loader sets up jump labels before livepatch resolves a module
 * object's symbols, so a static key of the patched module cannot be reached
 * from a jump-table entry (kpatch refuses the same).
 */
function checkJumpKeys(post: ElfFile, relas: ElfRela[], count: number, unit: string, target: string): void {
  for (let i = 0; i < count; i++) {
    const key = relas.find((r) => Number(r.offset) === i * 16 + 8);
    if (!key) continue;
    const sym = post.symbols[key.symbolIndex];
    if (sym.bind === STB_LOCAL || sym.shndx !== SHN_UNDEF) {
      throw new TspliceError('unsupported_change',
        `${unit}: the changed code of module ${target} uses a static key of that module (${sym.name || 'a local key'}); ` +
        'jump labels are set up before livepatch can resolve module symbols, so this cannot be patched live', { unit });
    }
  }
}

function sanitize(s: string): string {
  return s.replace(/[^A-Za-z0-9_]/g, '_');
}
