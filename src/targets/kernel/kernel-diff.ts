// The object diff (analysis/diffUnit) with the kernel's own rules: bookkeeping
// sections that change with any edit are not changes, and some changes a
// livepatch cannot carry are refused before anything is built.

import { checkSupportedChanges } from '../../analysis/check.js';
import type { DataChange, FunctionChange, UnitDiff } from '../../analysis/diff.js';
import { SHN_UNDEF, STB_LOCAL, STT_FUNC, STT_SECTION } from '../../elf/constants.js';
import { relocationsFor, type ElfFile, type ElfSymbol } from '../../elf/reader.js';
import { TspliceError } from '../../errors.js';

/** Sections and symbols whose contents are bookkeeping, regenerated for every build or call site. */
const NOISE_SECTION = /^(__ksymtab|___ksymtab|__kstrtab|__kcrctab|\.modinfo|__param|__modver|\.init\.|\.exit\.|\.initcall|__setup|__tracepoint_str|__dyndbg|\.data\.once|\.data\.\.once|\.printk_index|\.discard|\.rodata\.__func__)/;
const NOISE_SYMBOL = /^(__ksymtab_|__kstrtab_|__kstrtabns_|__kcrctab_|__UNIQUE_ID_|__already_done|__func__|__initcall|__setup_|__param_|__print_once|_entry\.|descriptor\.)/;

/** Data changes that matter for a live kernel (the others come and go with any edit). */
export function meaningfulData(changes: DataChange[]): DataChange[] {
  return changes.filter((d) => !NOISE_SECTION.test(d.section) && !NOISE_SYMBOL.test(d.symbol));
}

/** Code in sections the running kernel has already freed or never calls again. */
function initSection(section: string): string | undefined {
  if (section.startsWith('.init.')) return '__init code runs once at boot and its memory is freed afterwards';
  if (section.startsWith('.exit.')) return '__exit code is not patchable (it is dropped from built-in code)';
  return undefined;
}

/** Refuse what a livepatch cannot do: __init code, notrace functions, existing writable data. */
export function checkKernelChanges(units: Array<{ unit: string; diff: UnitDiff }>): void {
  for (const { unit, diff } of units) {
    for (const f of diff.functions) {
      const why = initSection(f.section) ?? (f.pre ? initSection(f.pre.section) : undefined);
      if (why && f.kind !== 'deleted') {
        throw new TspliceError('unsupported_change',
          `${unit}: the patch changes ${f.function} in ${f.section}: ${why}. A live update cannot change what ` +
          'already ran at boot; if the fix matters after boot, change the runtime code instead', { unit, function: f.function });
      }
    }
  }
  checkSupportedChanges(units.map(({ diff }) => ({ ...diff, data: meaningfulData(diff.data) })));
}

/** The function's section has a __mcount_loc entry or a call to __fentry__ (objtool may have turned it into a NOP). */
export function hasFtraceEntry(elf: ElfFile, sectionName: string): boolean {
  const section = elf.sections.find((s) => s.name === sectionName);
  if (!section) return false;
  for (const r of relocationsFor(elf, section)) {
    const sym = elf.symbols[r.symbolIndex];
    if (sym?.name === '__fentry__' && sym.shndx === SHN_UNDEF && r.offset <= 16n) return true;
  }
  const mcount = elf.sections.find((s) => s.name === '__mcount_loc');
  if (!mcount) return false;
  return relocationsFor(elf, mcount).some((r) => {
    const sym = elf.symbols[r.symbolIndex];
    return sym !== undefined && sym.shndx === section.index && (sym.type === STT_SECTION ? r.addend : sym.value + r.addend) <= 16n;
  });
}

/** Functions to ship from a unit: changed and new ones (deleted ones just stay unused in the kernel). */
export function shippedFunctions(diff: UnitDiff): FunctionChange[] {
  return diff.functions.filter((f) => f.kind !== 'deleted');
}

export interface UnitPlan {
  /** Everything the module carries from this unit. */
  ship: FunctionChange[];
  /** The changed functions livepatch redirects (klp_func): those with an ftrace entry. */
  redirect: FunctionChange[];
}

/**
 * Which changed functions livepatch redirects. A changed function without an
 * ftrace entry (the kernel's `inline` implies notrace, e.g. SYSCALL_DEFINE's
 * __do_sys_*; or an explicit notrace) is shipped but reached through its
 * callers in the unit, which are redirected instead even though their own
 * code did not change (kpatch needs the same). Without such a caller it is refused.
 */
export function planUnit(unit: string, diff: UnitDiff, pre: ElfFile | undefined, post: ElfFile): UnitPlan {
  const ship = shippedFunctions(diff);
  const redirect: FunctionChange[] = [];
  const pending = ship.filter((f) => f.kind === 'changed');
  const seen = new Set(ship.map((f) => f.function));
  while (pending.length > 0) {
    const f = pending.shift() as FunctionChange;
    if (pre && f.pre && hasFtraceEntry(pre, f.pre.section)) {
      redirect.push(f);
      continue;
    }
    const callers = callersOf(post, f.function).filter((c) => !seen.has(c.name));
    const inPre = callers.filter((c) => pre?.symbols.some((s) => s.name === c.name && s.type === STT_FUNC && s.shndx !== SHN_UNDEF));
    if (inPre.length === 0 && !ship.some((g) => g !== f && callersOf(post, f.function).some((c) => c.name === g.function))) {
      throw new TspliceError('unsupported_change',
        `${unit}: ${f.function} changes but has no ftrace entry (notrace, or the kernel's inline), so livepatch ` +
        'cannot redirect it, and no function of its file that calls it can be redirected instead; change its callers ' +
        'in the patch, or patch a traceable function', { unit, function: f.function });
    }
    for (const c of inPre) {
      const preSym = pre?.symbols.find((s) => s.name === c.name && s.type === STT_FUNC && s.shndx !== SHN_UNDEF) as ElfSymbol;
      const change: FunctionChange = {
        unit, function: c.name, section: post.sections[c.shndx].name, kind: 'changed', local: c.bind === STB_LOCAL,
        reason: `calls ${f.function}, which changed but cannot be redirected itself (no ftrace entry)`,
        pre: { symbol: c.name, section: pre?.sections[preSym.shndx].name as string, size: preSym.size },
        post: { symbol: c.name, section: post.sections[c.shndx].name, size: c.size },
      };
      seen.add(c.name);
      ship.push(change);
      pending.push(change);
    }
  }
  return { ship, redirect };
}

/** Functions of the object whose code refers to function `name` (by its symbol or its section). */
function callersOf(elf: ElfFile, name: string): ElfSymbol[] {
  const target = elf.symbols.find((s) => s.name === name && s.type === STT_FUNC && s.shndx !== SHN_UNDEF);
  if (!target) return [];
  const out: ElfSymbol[] = [];
  for (const sym of elf.symbols) {
    if (sym.type !== STT_FUNC || sym.shndx === SHN_UNDEF || sym === target || sym.shndx >= elf.sections.length) continue;
    const section = elf.sections[sym.shndx];
    const refers = relocationsFor(elf, section).some((r) => {
      const t = elf.symbols[r.symbolIndex];
      return t === target || (t?.type === STT_SECTION && t.shndx === target.shndx);
    });
    if (refers) out.push(sym);
  }
  return out;
}
