// What matching learns about the symbols the pre code refers to, and the rule
// that the same symbol must resolve the same way every time it is met.
//
// A symbol the unit defines in an ordinary section is resolved through its
// section: every reference into `.bss.counter` or `.text.helper` fixes that
// section's run-time base, and all of them must agree. Mergeable sections
// (string literals, constants) are resolved per element, since the linker
// moves each element on its own. Symbols from elsewhere resolve by name.

import { STT_FILE, STT_SECTION } from '../elf/constants.js';
import type { ElfFile, ElfSection } from '../elf/reader.js';
import { definedGlobalAddress, type RunningImage } from './image.js';

export interface PltResolution {
  /** Run-time address of the PLT stub the code calls. */
  stub: bigint;
  /** The symbol the stub reaches, without version. */
  symbol: string;
  version?: string;
}

export interface GotResolution {
  /** Run-time address of the GOT slot holding the symbol's address. */
  slot: bigint;
  /** What the slot held when read (absent when it held 0, e.g. an unrelocated file). */
  value?: bigint;
}

export interface TlsResolution {
  /** Offset from the thread pointer (%fs:0) — static TLS: local-exec, or relaxed by the linker. */
  tpoff?: bigint;
  /** Initial-exec: GOT slot holding the offset from the thread pointer. */
  ieSlot?: bigint;
  /** General-dynamic: GOT pair (module, offset) passed to __tls_get_addr. */
  gdSlot?: bigint;
  /** Local-dynamic: GOT pair of the module passed to __tls_get_addr. */
  ldSlot?: bigint;
  /** Offset inside the module's TLS block (local-dynamic, shared libraries). */
  dtpoff?: bigint;
}

/**
 * How running code reaches a symbol. Several facets may be known at once (a
 * function called through its PLT stub and also defined here); each facet
 * is what the new code needs to reach the symbol the same way.
 */
export interface Resolution {
  /** Run-time address: of a function, an object, a string literal, or a section's base. */
  address?: bigint;
  plt?: PltResolution;
  got?: GotResolution;
  tls?: TlsResolution;
}

/** Which pre symbol a resolution is about. */
export interface SymbolRef {
  /** Name in the result map: symbol name, section name, or `section+0xOFF` for an element of a mergeable section. */
  key: string;
  /** For symbols of ordinary sections of the unit: the section and the symbol's offset in it. */
  section?: { name: string; offset: bigint };
}

export interface ResolutionEntry {
  ref: SymbolRef;
  resolution: Resolution;
  /** Where it was learnt, e.g. `work+0x47 (0x1247)`. */
  origin: string;
}

interface SectionBase {
  address?: bigint;
  tpoff?: bigint;
  dtpoff?: bigint;
  origin: string;
}

const hex = (v: bigint) => (v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);

/** Resolutions learnt from matching, checked for agreement as they come in. */
export class ResolutionSet {
  private readonly log: ResolutionEntry[] = [];
  private readonly bases = new Map<string, SectionBase>();
  private readonly named = new Map<string, { resolution: Resolution; origin: string }>();

  constructor(private readonly image: RunningImage) {}

  /** Everything added, in order (to replay into another set). */
  entries(): readonly ResolutionEntry[] {
    return this.log;
  }

  /** Record a resolution; returns a description of the conflict when it disagrees with an earlier one. */
  add(ref: SymbolRef, resolution: Resolution, origin: string): string | undefined {
    const conflict = this.check(ref, resolution);
    if (conflict) return `${conflict.what}: ${conflict.now} at ${origin}, but ${conflict.before} at ${conflict.origin}`;
    this.store(ref, resolution, origin);
    this.log.push({ ref, resolution, origin });
    return undefined;
  }

  /** Add all of another set's entries; returns the first conflict. */
  addAll(other: ResolutionSet): string | undefined {
    for (const e of other.entries()) {
      const conflict = this.add(e.ref, e.resolution, e.origin);
      if (conflict) return conflict;
    }
    return undefined;
  }

  /** Would `other` merge without conflict? */
  agreesWith(other: ResolutionSet): boolean {
    const trial = new ResolutionSet(this.image);
    return trial.addAll(this) === undefined && trial.addAll(other) === undefined;
  }

  /**
   * The result: one entry per symbol name of the pre object that was
   * resolved (sections by name, their symbols at base + offset), plus
   * external symbols and mergeable elements by key.
   */
  toMap(preElf: ElfFile): Map<string, Resolution> {
    const out = new Map<string, Resolution>();
    const put = (key: string, r: Resolution) => out.set(key, mergeFacets(out.get(key) ?? {}, r));
    const sectionsByName = new Map<string, ElfSection>(preElf.sections.map((s) => [s.name, s]));
    for (const [name, base] of this.bases) {
      put(name, located(base, 0n));
      const section = sectionsByName.get(name);
      if (!section) continue;
      for (const sym of preElf.symbols) {
        if (sym.shndx !== section.index || sym.type === STT_SECTION || sym.type === STT_FILE || sym.name === '') continue;
        put(sym.name, located(base, sym.value));
      }
    }
    for (const [key, { resolution }] of this.named) put(key, resolution);
    return out;
  }

  private check(ref: SymbolRef, r: Resolution): { what: string; now: string; before: string; origin: string } | undefined {
    const { section } = ref;
    if (section) {
      const base = this.bases.get(section.name);
      if (base) {
        const what = `${ref.key} (section ${section.name})`;
        const pairs: Array<[bigint | undefined, bigint | undefined, string]> = [
          [r.address, base.address, 'at'],
          [r.tls?.tpoff, base.tpoff, 'at thread-pointer offset'],
          [r.tls?.dtpoff, base.dtpoff, 'at TLS block offset'],
        ];
        for (const [value, baseValue, how] of pairs) {
          if (value === undefined || baseValue === undefined) continue;
          if (value - section.offset !== baseValue) {
            return { what, now: `${how} ${hex(value)}`, before: `${how} ${hex(baseValue + section.offset)}`, origin: base.origin };
          }
        }
      }
    }
    const earlier = this.named.get(ref.key);
    const known: Resolution = { ...(earlier?.resolution ?? {}) };
    const base = section ? this.bases.get(section.name) : undefined;
    if (base?.address !== undefined && section) known.address = base.address + section.offset;
    const origin = earlier?.origin ?? base?.origin ?? '';
    const disagreement = disagree(known, r, this.image);
    return disagreement ? { what: ref.key, ...disagreement, origin } : undefined;
  }

  private store(ref: SymbolRef, r: Resolution, origin: string): void {
    const rest: Resolution = { ...r };
    if (ref.section) {
      const { name, offset } = ref.section;
      if (r.address !== undefined || r.tls?.tpoff !== undefined || r.tls?.dtpoff !== undefined) {
        const base = this.bases.get(name) ?? { origin };
        if (r.address !== undefined) base.address ??= r.address - offset;
        if (r.tls?.tpoff !== undefined) base.tpoff ??= r.tls.tpoff - offset;
        if (r.tls?.dtpoff !== undefined) base.dtpoff ??= r.tls.dtpoff - offset;
        this.bases.set(name, base);
      }
      delete rest.address;
      if (rest.tls) {
        const slots: TlsResolution = { ...rest.tls };
        delete slots.tpoff;
        delete slots.dtpoff;
        if (Object.keys(slots).length > 0) rest.tls = slots;
        else delete rest.tls;
      }
    }
    if (Object.keys(rest).length === 0) return;
    const earlier = this.named.get(ref.key);
    this.named.set(ref.key, { resolution: mergeFacets(earlier?.resolution ?? {}, rest), origin: earlier?.origin ?? origin });
  }
}

function located(base: SectionBase, offset: bigint): Resolution {
  const r: Resolution = {};
  if (base.address !== undefined) r.address = base.address + offset;
  if (base.tpoff !== undefined || base.dtpoff !== undefined) {
    r.tls = {};
    if (base.tpoff !== undefined) r.tls.tpoff = base.tpoff + offset;
    if (base.dtpoff !== undefined) r.tls.dtpoff = base.dtpoff + offset;
  }
  return r;
}

/** Union of facets (callers have checked they agree). */
export function mergeFacets(a: Resolution, b: Resolution): Resolution {
  const out: Resolution = { ...a };
  if (b.address !== undefined) out.address ??= b.address;
  if (b.plt) out.plt ??= b.plt;
  if (b.got) {
    const value = out.got?.value ?? b.got.value;
    out.got = { slot: out.got?.slot ?? b.got.slot, ...(value !== undefined ? { value } : {}) };
  }
  if (b.tls) out.tls = { ...b.tls, ...(out.tls ?? {}) };
  return out;
}

/** How `b` disagrees with what is already known, if it does. */
function disagree(a: Resolution, b: Resolution, image: RunningImage): { now: string; before: string } | undefined {
  const differ = (x: bigint | undefined, y: bigint | undefined) => x !== undefined && y !== undefined && x !== y;
  if (differ(a.address, b.address)) return { now: `at ${hex(b.address!)}`, before: `at ${hex(a.address!)}` };
  if (a.plt && b.plt && a.plt.stub !== b.plt.stub) {
    return { now: `called through the PLT stub at ${hex(b.plt.stub)}`, before: `through the one at ${hex(a.plt.stub)}` };
  }
  // A direct reference and a call through the PLT agree when both reach the same function.
  const plt = a.plt ?? b.plt;
  const address = a.address ?? b.address;
  if (plt && address !== undefined && address !== plt.stub && address !== definedGlobalAddress(image, plt.symbol)) {
    return { now: `at ${hex(address)}`, before: `called through the PLT stub at ${hex(plt.stub)} (${plt.symbol})` };
  }
  if (a.got && b.got) {
    if (a.got.slot !== b.got.slot) return { now: `through the GOT slot at ${hex(b.got.slot)}`, before: `through the one at ${hex(a.got.slot)}` };
    if (differ(a.got.value, b.got.value)) return { now: `GOT holds ${hex(b.got.value!)}`, before: `GOT held ${hex(a.got.value!)}` };
  }
  if (a.tls && b.tls) {
    for (const facet of ['tpoff', 'ieSlot', 'gdSlot', 'ldSlot', 'dtpoff'] as const) {
      if (differ(a.tls[facet], b.tls[facet])) {
        return { now: `TLS ${facet} ${hex(b.tls[facet]!)}`, before: `TLS ${facet} ${hex(a.tls[facet]!)}` };
      }
    }
  }
  return undefined;
}
