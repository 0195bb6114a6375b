// The last step of a livepatch module: on the linked .ko, turn the undefined
// symbols named ".klp.sym.<object>.<name>,<sympos>" into livepatch symbols
// (st_shndx = SHN_LIVEPATCH) and move every relocation that uses one into a
// ".klp.rela.<object>.<section>" section (SHF_RELA_LIVEPATCH), which the
// livepatch core applies once it has found the symbol through kallsyms.
// (Documentation/livepatch/module-elf-format.rst; kpatch's create-klp-module.)
//
// Done here rather than before linking because `ld -r` drops both the
// section flag and the special section index.

import { SHF_ALLOC, SHN_LIVEPATCH, SHN_UNDEF, SHT_RELA, SHT_STRTAB, SHT_SYMTAB, STB_GLOBAL } from '../../elf/constants.js';
import { parseElf, relocationsFor, type ElfFile, type ElfRela, type ElfSection } from '../../elf/reader.js';
import { KLP_RELA_FLAGS, ObjectBuilder, SectionCopier, klpRelaSectionName } from '../../elf/writer.js';
import { TspliceError } from '../../errors.js';

const KLP_SYM = /^\.klp\.sym\.([^.]+)\.([^,]+),(\d+)$/;

/** Non-allocated sections the loader does not need (debug info, comments). */
function droppable(section: ElfSection): boolean {
  if ((section.flags & SHF_ALLOC) !== 0n) return false;
  if (section.name === '.modinfo' || section.name === '__versions' || section.name === '.gnu.linkonce.this_module') return false;
  return true;
}

export interface ConvertResult {
  module: Buffer;
  /** Livepatch symbols made, by object. */
  symbols: Map<string, string[]>;
}

/** Convert a linked livepatch .ko's placeholder references into klp relocations. */
export function convertKlpModule(ko: Buffer, name: string): ConvertResult {
  const input = parseElf(ko, name);
  const builder = new ObjectBuilder();
  const symbols = new Map<string, string[]>();
  const copier = new SectionCopier(builder, input, (sym) => {
    const m = KLP_SYM.exec(sym.name);
    if (!m || sym.shndx !== SHN_UNDEF) return undefined;
    const existing = builder.findGlobal(sym.name);
    if (existing) return existing;
    const list = symbols.get(m[1]) ?? [];
    list.push(`${m[2]},${m[3]}`);
    symbols.set(m[1], list);
    return { name: sym.name, type: sym.type, bind: STB_GLOBAL, section: SHN_LIVEPATCH, value: 0n, size: 0 };
  });
  const kept = input.sections.filter((s) => s.index !== 0 && s.type !== SHT_RELA && s.type !== SHT_SYMTAB &&
    s.type !== SHT_STRTAB && !droppable(s));
  copier.copySections(kept, { relocations: false });
  for (const section of kept) {
    const relas = relocationsFor(input, section);
    if (relas.length === 0) continue;
    const normal: ElfRela[] = [];
    const byObject = new Map<string, ElfRela[]>();
    for (const r of relas) {
      const m = KLP_SYM.exec(input.symbols[r.symbolIndex]?.name ?? '');
      if (!m) {
        normal.push(r);
        continue;
      }
      const list = byObject.get(m[1]) ?? [];
      list.push(r);
      byObject.set(m[1], list);
    }
    const out = copier.outputOf(section);
    if (!out) throw new TspliceError('internal', `${name}: section ${section.name} was not copied`);
    if (normal.length > 0) builder.addRelocations(out, copier.translate(normal));
    for (const [object, list] of byObject) {
      builder.addRelocations(out, copier.translate(list), { name: klpRelaSectionName(object, section.name), flags: KLP_RELA_FLAGS });
    }
  }
  // Keep every defined symbol the loader or tools look for (init_module, __this_module...) even if unreferenced.
  for (const sym of input.symbols) {
    if (sym.index === 0 || sym.shndx === SHN_UNDEF || sym.name === '') continue;
    if (kept.some((s) => s.index === sym.shndx)) copier.symbol(sym.index);
  }
  const out = builder.write();
  checkConverted(parseElf(out, name), name);
  return { module: out, symbols };
}

/** Every placeholder is gone: no .klp.sym symbol is left undefined (the loader would fail on it). */
function checkConverted(elf: ElfFile, name: string): void {
  for (const s of elf.symbols) {
    if (s.shndx === SHN_UNDEF && s.name.startsWith('.klp.sym.')) {
      throw new TspliceError('internal', `${name}: ${s.name} is still undefined after conversion`);
    }
  }
}
