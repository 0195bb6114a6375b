// The running kernel's symbols, from /proc/kallsyms: every symbol of vmlinux
// and of each loaded module ("[name]"), at its run-time (KASLR-shifted)
// address. Livepatch names a local function by its position among the
// symbols of the same name in one object (sympos, 1-based, in the order the
// kernel walks them, which is the order kallsyms prints them), so that order
// is kept.

import { readFileSync } from 'node:fs';
import { TspliceError } from '../../../errors.js';

/** The object livepatch calls vmlinux (klp_object.name NULL). */
export const VMLINUX = 'vmlinux';

export interface KernelSymbol {
  name: string;
  address: bigint;
  /** The nm-style type letter: T/t text, D/d data, B/b bss, R/r read-only, W/w weak... */
  type: string;
  /** Upper-case type: visible outside its file. */
  global: boolean;
  /** In an executable section (T, t, W, w, i.e. code). */
  text: boolean;
  /** `vmlinux` or the module's name. */
  object: string;
  /** 1-based position among the symbols of this name in its object. */
  sympos: number;
}

export class KernelSymbols {
  /** Per object, distinct symbol addresses in ascending order (for "where does this function end"), made on first use. */
  private readonly sortedAddresses = new Map<string, bigint[]>();

  private constructor(
    readonly all: readonly KernelSymbol[],
    private readonly byObject: Map<string, Map<string, KernelSymbol[]>>,
  ) {}

  /** Parse the text of /proc/kallsyms (some 100 000 lines: kept to one pass without regular expressions). */
  static parse(text: string): KernelSymbols {
    const symbols: KernelSymbol[] = [];
    const byObject = new Map<string, Map<string, KernelSymbol[]>>();
    for (let at = 0; at < text.length;) {
      let end = text.indexOf('\n', at);
      if (end < 0) end = text.length;
      const line = text.slice(at, end);
      at = end + 1;
      // "ffffffff81000000 T _text" or "ffffffffc0a01000 t foo\t[module]"
      const space = line.indexOf(' ');
      if (space <= 0 || line[space + 2] !== ' ') continue;
      const type = line[space + 1];
      const tab = line.indexOf('\t', space + 3);
      const name = tab < 0 ? line.slice(space + 3) : line.slice(space + 3, tab);
      const object = tab < 0 ? VMLINUX : line.slice(tab + 2, line.length - 1);
      if (name === '' || object === '') continue;
      let names = byObject.get(object);
      if (!names) byObject.set(object, (names = new Map()));
      let same = names.get(name);
      if (!same) names.set(name, (same = []));
      const lower = type.toLowerCase();
      const sym: KernelSymbol = {
        name,
        address: BigInt(`0x${line.slice(0, space)}`),
        type,
        global: type !== lower,
        text: lower === 't' || lower === 'w',
        object,
        sympos: same.length + 1,
      };
      same.push(sym);
      symbols.push(sym);
    }
    return new KernelSymbols(symbols, byObject);
  }

  /** Read /proc/kallsyms; needs root (addresses read as zero otherwise). */
  static read(path = '/proc/kallsyms'): KernelSymbols {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new TspliceError('permission', `cannot read ${path}: ${(e as Error).message} (run tsplice as root on the machine to patch)`);
    }
    const table = KernelSymbols.parse(text);
    const sample = table.all.filter((s) => s.text).slice(0, 64);
    if (sample.length === 0 || sample.every((s) => s.address === 0n)) {
      throw new TspliceError(
        'permission',
        `${path} shows no kernel addresses: run tsplice as root (and with kernel.kptr_restrict below 2)`,
      );
    }
    return table;
  }

  /** The objects that have symbols: vmlinux and the loaded modules. */
  objects(): string[] {
    return [...this.byObject.keys()];
  }

  hasObject(object: string): boolean {
    return this.byObject.has(object);
  }

  /** Every symbol called `name` in `object`, in sympos order. */
  named(object: string, name: string): KernelSymbol[] {
    return this.byObject.get(object)?.get(name) ?? [];
  }

  /** All symbols of one object. */
  of(object: string): KernelSymbol[] {
    return [...(this.byObject.get(object)?.values() ?? [])].flat();
  }

  /**
   * The function `name` of `object` as livepatch would find it: at position
   * `sympos`, or the only one when sympos is 0. Returns every candidate when
   * sympos is 0 and the name is not unique (the caller decides).
   */
  functionCandidates(object: string, name: string, sympos: number): KernelSymbol[] {
    const all = this.named(object, name);
    if (sympos > 0) return all.filter((s) => s.sympos === sympos);
    return all.filter((s) => s.text);
  }

  /** Distance from `address` to the next symbol of the object: an upper bound on a function's size. */
  extentOf(object: string, address: bigint): number | undefined {
    let list = this.sortedAddresses.get(object);
    if (!list) {
      const unique = new Set(this.of(object).map((s) => s.address));
      list = [...unique].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      this.sortedAddresses.set(object, list);
    }
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid] <= address) lo = mid + 1;
      else hi = mid;
    }
    return lo < list.length ? Number(list[lo] - address) : undefined;
  }
}
