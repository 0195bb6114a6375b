// Writing objects from pieces of other objects: copy sections of a parsed
// input (the post-patch object) into an ObjectBuilder together with the
// symbols defined in them and their relocations, remapping every symbol the
// relocations use. Plus the naming rules of livepatch modules
// (Documentation/livepatch/module-elf-format.rst).

import { TspliceError } from '../errors.js';
import {
  SHF_ALLOC, SHF_GROUP, SHF_INFO_LINK, SHF_LINK_ORDER, SHF_RELA_LIVEPATCH, SHN_ABS, SHN_COMMON, SHN_LIVEPATCH,
  SHN_UNDEF, SHT_FINI_ARRAY, SHT_INIT_ARRAY, SHT_NOBITS, SHT_NOTE, SHT_PREINIT_ARRAY, SHT_PROGBITS,
  SHT_X86_64_UNWIND, STB_GLOBAL, STB_LOCAL, STB_WEAK, STT_FILE, STT_NOTYPE, STT_SECTION,
} from './constants.js';
import type { ObjectBuilder, OutRela, OutSection, OutSymbol, RelocationOptions } from './object-builder.js';
import { relocationsFor, symbolDisplayName } from './reader.js';
import type { ElfFile, ElfRela, ElfSection, ElfSymbol } from './reader.js';

export { ObjectBuilder } from './object-builder.js';
export type {
  ObjectBuilderOptions, OutRela, OutSection, OutSymbol, RelocationOptions, SymbolPlace,
} from './object-builder.js';

/** Section types whose contents mean the same in any object (no indices into the input). */
const COPYABLE_TYPES = new Set([
  SHT_PROGBITS, SHT_NOBITS, SHT_NOTE, SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_PREINIT_ARRAY, SHT_X86_64_UNWIND,
]);

/**
 * Decides what an input symbol becomes in the output, before the default rules apply.
 * Return undefined to fall back to the defaults. The returned symbol is added to the
 * builder if it is not there yet.
 */
export type SymbolResolver = (symbol: ElfSymbol, input: ElfFile) => OutSymbol | undefined;

export interface CopySectionOptions {
  /** Output section name (default: the input name). */
  name?: string;
  /** Copy the section's relocations too (default true). */
  relocations?: boolean;
  /** Name and flags of the relocation section (default ".rela" + output name, SHF_INFO_LINK). */
  relocationSection?: RelocationOptions;
}

function copyError(input: ElfFile, message: string, details: Record<string, unknown> = {}): TspliceError {
  return new TspliceError('internal', `copying from ${input.name}: ${message}`, { file: input.name, ...details });
}

/**
 * Copies sections of one input object into a builder. Symbols are mapped once
 * and shared by everything copied, so two copied sections that use the same
 * symbol use the same output symbol.
 *
 * Default symbol rules (after the resolver):
 *  - a section symbol of a copied section → that output section's symbol;
 *  - a symbol defined in a copied section → a copy of it (made when its section is copied);
 *  - an undefined symbol → an undefined symbol of the same name and binding;
 *  - a global or weak symbol defined in a section not copied → an undefined global reference;
 *  - absolute and common symbols → copies;
 *  - anything else (a local of a section not copied) → error: only the caller knows
 *    whether it must be copied too or resolved another way (e.g. a livepatch symbol).
 */
export class SectionCopier {
  private readonly copied = new Map<number, OutSection>();
  private readonly mapped = new Map<number, OutSymbol>();

  constructor(
    readonly builder: ObjectBuilder,
    readonly input: ElfFile,
    private readonly resolver?: SymbolResolver,
  ) {}

  /** Copy one section (and by default its relocations). */
  copySection(section: ElfSection | string, options: CopySectionOptions = {}): OutSection {
    return this.copySections([section], options)[0];
  }

  /**
   * Copy several sections: contents and symbols of all of them first, then the
   * relocations, so relocations between them resolve to the copies. The options
   * other than `relocations` apply only when copying a single section.
   */
  copySections(sections: Array<ElfSection | string>, options: CopySectionOptions = {}): OutSection[] {
    if (sections.length > 1 && (options.name !== undefined || options.relocationSection !== undefined)) {
      throw copyError(this.input, 'a new name or relocation section name only fits a single copied section');
    }
    const inputs = sections.map((s) => this.find(s));
    const outputs = inputs.map((s) => this.copyContents(s, options.name));
    inputs.forEach((s) => this.copyLinks(s));
    if (options.relocations !== false) {
      inputs.forEach((s, i) => {
        const relas = relocationsFor(this.input, s);
        if (relas.length > 0) this.builder.addRelocations(outputs[i], this.translate(relas), options.relocationSection);
      });
    }
    return outputs;
  }

  /** The copy of an input section, if it was copied. */
  outputOf(section: ElfSection | string): OutSection | undefined {
    return this.copied.get(this.find(section).index);
  }

  /** The output symbol for an input symbol index (mapped and added on first use). */
  symbol(index: number): OutSymbol {
    const known = this.mapped.get(index);
    if (known) return known;
    const sym = this.input.symbols[index];
    if (!sym || index === 0) throw copyError(this.input, `symbol index ${index} does not exist`);
    const out = this.resolver?.(sym, this.input) ?? this.defaultSymbol(sym);
    if (!this.builder.hasSymbol(out)) this.builder.addSymbol(out);
    this.mapped.set(index, out);
    return out;
  }

  /**
   * Input relocations as output ones (symbols mapped), with offsets moved by
   * `shift` — for slices of special sections such as one entry of __bug_table.
   */
  translate(relas: ElfRela[], shift = 0n): OutRela[] {
    return relas.map((r) => ({
      offset: r.offset + shift,
      type: r.type,
      symbol: r.symbolIndex === 0 ? undefined : this.symbol(r.symbolIndex),
      addend: r.addend,
    }));
  }

  private find(section: ElfSection | string): ElfSection {
    if (typeof section !== 'string') {
      if (this.input.sections[section.index] !== section) {
        throw copyError(this.input, `section ${section.name} belongs to another file`);
      }
      return section;
    }
    const found = this.input.sections.find((s) => s.name === section);
    if (!found) throw copyError(this.input, `no section named ${section}`);
    return found;
  }

  private copyContents(section: ElfSection, name?: string): OutSection {
    if (this.copied.has(section.index)) throw copyError(this.input, `section ${section.name} was already copied`);
    if (!COPYABLE_TYPES.has(section.type)) {
      throw copyError(this.input, `section ${section.name} has type ${section.type}, which holds indices into ` +
        'its file and cannot be copied as it is');
    }
    const out = this.builder.addSection({
      name: name ?? section.name,
      type: section.type,
      // No group sections are written, so no section may claim a group.
      flags: section.flags & ~SHF_GROUP,
      addralign: section.addralign,
      entsize: section.entsize,
      data: section.type === SHT_NOBITS ? undefined : Buffer.from(section.data),
      size: section.type === SHT_NOBITS ? section.size : undefined,
      info: (section.flags & SHF_INFO_LINK) !== 0n ? undefined : section.info,
    });
    this.copied.set(section.index, out);
    for (const sym of this.input.symbols) {
      if (sym.index === 0 || sym.shndx !== section.index || sym.type === STT_FILE) continue;
      if (this.mapped.has(sym.index)) continue;
      // Section symbols are made on first use (see defaultSymbol), as the assembler does.
      if (sym.type === STT_SECTION) continue;
      const definition = { type: sym.type, section: out, value: sym.value, size: sym.size };
      // A global first met as a reference (its section not copied yet) becomes the definition,
      // so relocations made earlier and later use one symbol.
      const reference = sym.bind === STB_LOCAL ? undefined : this.builder.findGlobal(sym.name);
      if (reference && (reference.section ?? 'undef') === 'undef') {
        Object.assign(reference, definition, { bind: sym.bind, visibility: sym.visibility });
        this.mapped.set(sym.index, reference);
        continue;
      }
      this.mapped.set(sym.index, this.builder.addSymbol({ name: sym.name, bind: sym.bind, visibility: sym.visibility,
        ...definition }));
    }
    return out;
  }

  /** sh_link / sh_info that name other sections must name the copies of those sections. */
  private copyLinks(section: ElfSection): void {
    const out = this.copied.get(section.index) as OutSection;
    const other = (index: number, what: string): OutSection => {
      const target = this.copied.get(index);
      if (!target) {
        throw copyError(this.input, `section ${section.name} refers (${what}) to section ` +
          `${this.input.sections[index]?.name ?? index}, which was not copied; copy both together`);
      }
      return target;
    };
    if ((section.flags & SHF_LINK_ORDER) !== 0n) out.link = other(section.link, 'sh_link');
    else if (section.link !== 0) throw copyError(this.input, `section ${section.name} has an sh_link this copier does not understand`);
    if ((section.flags & SHF_INFO_LINK) !== 0n) out.info = other(section.info, 'sh_info');
  }

  private defaultSymbol(sym: ElfSymbol): OutSymbol {
    const name = symbolDisplayName(this.input, sym);
    if (sym.type === STT_SECTION) {
      const section = this.copied.get(sym.shndx);
      if (!section) {
        throw copyError(this.input, `a relocation uses section ${name}, which was not copied; copy it too`,
          { section: name });
      }
      return this.builder.sectionSymbol(section);
    }
    if (sym.shndx === SHN_ABS || sym.shndx === SHN_COMMON) {
      return { name: sym.name, type: sym.type, bind: sym.bind, visibility: sym.visibility,
        section: sym.shndx === SHN_ABS ? 'abs' : 'common', value: sym.value, size: sym.size };
    }
    if (sym.shndx === SHN_UNDEF) {
      const existing = this.builder.findGlobal(sym.name);
      if (existing) return existing;
      return { name: sym.name, type: sym.type, bind: sym.bind === STB_WEAK ? STB_WEAK : STB_GLOBAL,
        visibility: sym.visibility, section: 'undef', value: 0n, size: 0 };
    }
    if (sym.bind !== STB_LOCAL) {
      // Defined in a section left out: refer to the definition that already exists elsewhere.
      const existing = this.builder.findGlobal(sym.name);
      if (existing) return existing;
      return { name: sym.name, type: STT_NOTYPE, bind: STB_GLOBAL, visibility: sym.visibility,
        section: 'undef', value: 0n, size: 0 };
    }
    throw copyError(this.input, `local symbol ${name} (in section ${this.input.sections[sym.shndx]?.name}) is used ` +
      'by a copied section but its own section was not copied; copy that section too, or resolve the symbol ' +
      '(e.g. as a livepatch symbol)', { symbol: name });
  }
}

/**
 * The one named symbol a section holds, when it starts the section: with
 * -ffunction-sections / -fdata-sections each function and object has its own section,
 * so a relocation against the section symbol (as gcc writes for statics) means the same
 * as one against this symbol with the same addend. Livepatch symbols need such a name,
 * since the kernel resolves them by name. Undefined when the section holds none or several.
 */
export function soleSymbolOf(elf: ElfFile, sectionIndex: number): ElfSymbol | undefined {
  const named = elf.symbols.filter((s) => s.index !== 0 && s.shndx === sectionIndex &&
    s.type !== STT_SECTION && s.type !== STT_FILE && s.name !== '');
  return named.length === 1 && named[0].value === 0n ? named[0] : undefined;
}

// Livepatch module naming (Documentation/livepatch/module-elf-format.rst).

/** Flags of a livepatch relocation section: kept in memory (ALLOC), applied by livepatch, not the loader. */
export const KLP_RELA_FLAGS = SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH;

function checkObjectName(objname: string): void {
  // The kernel parses these names with "%55[^.]": the object name cannot hold a dot.
  if (objname === '' || objname.includes('.') || objname.length > 55) {
    throw new TspliceError('internal', `livepatch object name ${JSON.stringify(objname)} must be 1-55 characters ` +
      'without a dot ("vmlinux" or a module name)');
  }
}

/** ".klp.rela.<objname>.<section>", e.g. ".klp.rela.vmlinux..text.cmdline_proc_show". */
export function klpRelaSectionName(objname: string, sectionName: string): string {
  checkObjectName(objname);
  return `.klp.rela.${objname}.${sectionName}`;
}

/** ".klp.sym.<objname>.<name>,<sympos>"; sympos 0 = the only one, n = n-th of duplicates (kallsyms order). */
export function klpSymbolName(objname: string, name: string, sympos: number): string {
  checkObjectName(objname);
  if (name === '' || name.includes(',') || name.length > 511) {
    throw new TspliceError('internal', `livepatch symbol name ${JSON.stringify(name)} must be 1-511 characters without a comma`);
  }
  if (!Number.isSafeInteger(sympos) || sympos < 0) {
    throw new TspliceError('internal', `livepatch symbol position ${sympos} must be a whole number >= 0`);
  }
  return `.klp.sym.${objname}.${name},${sympos}`;
}

/**
 * The livepatch symbol for <name> in <objname> (a global at SHN_LIVEPATCH, resolved by the
 * livepatch core through kallsyms); added once, later calls return the same symbol.
 */
export function klpSymbol(builder: ObjectBuilder, objname: string, name: string, sympos: number,
  type: number = STT_NOTYPE): OutSymbol {
  const full = klpSymbolName(objname, name, sympos);
  const existing = builder.findGlobal(full);
  if (existing) return existing;
  return builder.addSymbol({ name: full, type, bind: STB_GLOBAL, section: SHN_LIVEPATCH, value: 0n, size: 0 });
}
