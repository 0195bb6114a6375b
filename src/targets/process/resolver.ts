// Answers the linker's questions about symbols, in the running process:
//  1. what run-pre matching learnt (exactly how the old code reached each
//     symbol: its address, PLT stub, GOT slot, TLS offsets);
//  2. for a symbol of the unit the old changed code did not use, matching
//     the pre object's code that does (resolveSymbol);
//  3. globals the patched file defines;
//  4. the dynamic symbols of the other loaded objects.
// GNU IFUNCs (the file's own and other objects') resolve to the implementation
// their resolver picks, run in the target as ld.so would.

import { STB_GLOBAL, STB_WEAK, STT_GNU_IFUNC, SHN_UNDEF, STT_TLS } from '../../elf/constants.js';
import type { ElfFile, ElfSymbol } from '../../elf/reader.js';
import { TspliceError } from '../../errors.js';
import type { Resolution as LinkResolution, SymbolRef, SymbolResolver } from '../../link/resolution.js';
import { definedGlobalAddress, unversioned, type RunningImage } from '../../match/image.js';
import type { CodeReader } from '../../match/memory.js';
import type { Resolution as MatchResolution } from '../../match/resolution.js';
import { resolveSymbol } from '../../match/unit.js';
import type { LoadedObject } from './loaded-objects.js';

export interface ResolverContext {
  /** The unit's pre object (undefined for a file the patch adds). */
  pre?: ElfFile;
  image: RunningImage;
  reader: CodeReader;
  /** What matching the unit's changed functions resolved. */
  matched: Map<string, MatchResolution>;
  /** Every loaded object, the patched one first, then in load order. */
  objects: LoadedObject[];
  /** Runs an IFUNC resolver in the target and returns the implementation's address. */
  resolveIfunc: (resolver: bigint) => bigint;
}

/** Drop gcc's numbering of static locals and clones' numbers, as the analysis pairs them. */
function baseName(name: string): string {
  return name.replace(/\.\d+$/, '');
}

export function createResolver(ctx: ResolverContext): SymbolResolver {
  const ifuncCache = new Map<bigint, bigint>();
  const facetsCache = new Map<string, MatchResolution | undefined>();

  const preName = (name: string): string | undefined => {
    if (!ctx.pre) return undefined;
    if (ctx.pre.symbols.some((s) => s.name === name)) return name;
    const same = ctx.pre.symbols.filter((s) => s.shndx !== SHN_UNDEF && s.name !== '' && baseName(s.name) === baseName(name));
    return same.length === 1 ? same[0].name : undefined;
  };

  const lookUp = (ref: SymbolRef): MatchResolution | undefined => {
    const key = `${ref.name}|${ref.section ?? ''}`;
    if (facetsCache.has(key)) return facetsCache.get(key);
    let found = ctx.matched.get(ref.name);
    const inPre = preName(ref.name);
    if (!found && inPre) found = ctx.matched.get(inPre);
    if (!found && inPre && ctx.pre && ref.section !== undefined) {
      try {
        found = resolveSymbol(inPre, ctx.pre, ctx.image, ctx.reader);
      } catch (e) {
        // A global may still be found below; a local symbol cannot.
        if (ref.binding === 'local') throw e;
      }
    }
    if (!found && ref.type !== 'tls') {
      const own = definedGlobalAddress(ctx.image, ref.name);
      if (own !== undefined) found = { address: own };
    }
    if (found && ref.type === 'ifunc') found = implementationOf(found);
    if (!found && ref.binding !== 'local' && ref.type !== 'tls') {
      const address = lookUpDynamic(ref.name);
      if (address !== undefined) found = { address };
    }
    facetsCache.set(key, found);
    return found;
  };

  const runResolver = (address: bigint): bigint => {
    let impl = ifuncCache.get(address);
    if (impl === undefined) {
      impl = ctx.resolveIfunc(address);
      ifuncCache.set(address, impl);
    }
    return impl;
  };

  /**
   * An IFUNC of the patched file: its symbol's address is the resolver's. The
   * old code reached it through a PLT stub or GOT slot (already bound to the
   * implementation), or the new code is the first to use it: then the
   * resolver runs in the target, as ld.so's IRELATIVE relocation would.
   */
  const implementationOf = (r: MatchResolution): MatchResolution => {
    const { address, ...rest } = r;
    if (address === undefined || rest.plt || rest.got) return rest;
    return { ...rest, address: runResolver(address) };
  };

  const lookUpDynamic = (name: string): bigint | undefined => {
    const wanted = unversioned(name);
    for (const object of ctx.objects) {
      const sym = defaultDefinition(object.elf, wanted);
      if (!sym) continue;
      const address = sym.value + object.bias;
      return sym.type === STT_GNU_IFUNC ? runResolver(address) : address;
    }
    return undefined;
  };

  return (ref: SymbolRef): LinkResolution | undefined => {
    const r = lookUp(ref);
    if (!r) return undefined;
    return toLinkResolution(ref, r);
  };
}

/** The symbol's default-version global definition in an object's dynamic symbols. */
function defaultDefinition(elf: ElfFile, name: string): ElfSymbol | undefined {
  let fallback: ElfSymbol | undefined;
  for (const s of elf.dynamicSymbols) {
    if (s.name !== name || s.shndx === SHN_UNDEF || s.type === STT_TLS) continue;
    if (s.bind !== STB_GLOBAL && s.bind !== STB_WEAK) continue;
    if (s.version === undefined || s.defaultVersion) return s;
    fallback ??= s;
  }
  return fallback;
}

/** Pick, among the ways the old code reached a symbol, the one the access needs. */
function toLinkResolution(ref: SymbolRef, r: MatchResolution): LinkResolution | undefined {
  const tls = r.tls;
  switch (ref.access) {
    case 'call':
      if (r.address !== undefined) return { kind: 'address', value: r.address };
      if (r.plt) return { kind: 'address', value: r.plt.stub };
      if (r.got) return { kind: 'got', slot: r.got.slot };
      return undefined;
    case 'address':
      if (r.address !== undefined) return { kind: 'address', value: r.address };
      if (r.got?.value !== undefined) return { kind: 'address', value: r.got.value };
      if (r.plt) return { kind: 'address', value: r.plt.stub };
      return undefined;
    case 'got':
      if (r.got) return { kind: 'got', slot: r.got.slot };
      if (r.address !== undefined) return { kind: 'address', value: r.address };
      if (r.plt) return { kind: 'address', value: r.plt.stub };
      return undefined;
    case 'tpoff':
    case 'gottpoff':
      if (tls?.tpoff !== undefined) return { kind: 'tpoff', value: tls.tpoff };
      if (tls?.ieSlot !== undefined) return { kind: 'got', slot: tls.ieSlot };
      return undefined;
    case 'tlsgd':
      if (tls?.gdSlot !== undefined) return { kind: 'tlsgd', slot: tls.gdSlot };
      if (tls?.tpoff !== undefined) return { kind: 'tpoff', value: tls.tpoff };
      if (tls?.ieSlot !== undefined) return { kind: 'got', slot: tls.ieSlot };
      return undefined;
    case 'tlsld':
      if (tls?.ldSlot !== undefined) return { kind: 'tlsgd', slot: tls.ldSlot };
      if (tls?.tpoff !== undefined) return { kind: 'tpoff', value: tls.tpoff };
      return undefined;
    case 'dtpoff':
      if (tls?.dtpoff !== undefined) return { kind: 'dtpoff', value: tls.dtpoff };
      if (tls?.tpoff !== undefined) return { kind: 'tpoff', value: tls.tpoff };
      return undefined;
    default:
      throw new TspliceError('internal', `unknown symbol access ${String(ref.access)} for ${ref.name}`);
  }
}
