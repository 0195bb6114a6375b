// Linking a laid-out block at its address: copy the placed sections, resolve
// every relocation of theirs (placed sections by their new addresses, the rest
// through the caller's resolver) and fill the local GOT and call stubs. The
// result is the exact bytes to write at `base`; nothing in the target is
// touched here.

import { STT_FUNC, STT_GNU_IFUNC, STT_OBJECT } from '../elf/constants.js';
import { relocationsFor, type ElfRela, type ElfSymbol } from '../elf/reader.js';
import * as R from '../elf/x86_64.js';
import { relocationFieldSize, relocationName } from '../elf/x86_64.js';
import { TspliceError } from '../errors.js';
import { fitsField, hex, writeField, type FieldCheck } from './fields.js';
import {
  layoutBlock, stubKey, type BlockLayout, type LinkRequest, type PlacedSection,
  type PlacementReason, type Protection,
} from './layout.js';
import type { Resolution, SymbolAccess, SymbolResolver } from './resolution.js';
import { symbolsBySection } from './sections.js';
import { relocationTarget, siteName, type ExternalTarget, type RelocationTarget } from './targets.js';
import { generalDynamicSequence, localDynamicSequence, relaxTlsSequence } from './tls.js';

export interface LinkedRange {
  start: bigint;
  end: bigint;
  prot: Protection;
}

export interface LinkedSection {
  name: string;
  address: bigint;
  size: number;
  reason: PlacementReason;
}

/** A filled local GOT slot or call-stub slot. */
export interface GotSlot {
  address: bigint;
  value: bigint;
  /** The symbol whose value the slot holds. */
  symbol: string;
  /** address: a GOT entry; tpoff: a TLS offset (initial-exec); stub: the target of a call stub. */
  holds: 'address' | 'tpoff' | 'stub';
}

export interface LinkedBlock {
  /** The bytes to write at `base` (`size` bytes, a whole number of pages). */
  bytes: Buffer;
  base: bigint;
  size: number;
  /** Run-time address of every placed function, by section name and by symbol name. */
  functions: Map<string, bigint>;
  /** Run-time address of every placed variable and read-only datum, by section name and symbol name. */
  variables: Map<string, bigint>;
  sections: LinkedSection[];
  /** Protections to apply once the bytes are written. */
  ranges: LinkedRange[];
  gotSlots: GotSlot[];
  /** Call stubs written (`jmp *slot(%rip)`): where each is, the slot it jumps through, and whom it reaches. */
  stubs: CallStub[];
}

export interface CallStub {
  address: bigint;
  slot: bigint;
  symbol: string;
}

/** Where a relocation is, for messages. */
interface Site {
  placed: PlacedSection;
  rela: ElfRela;
  /** The function (or variable) holding the field. */
  owner: string;
  /** The symbol's name as the message shows it. */
  symbol: string;
}

/** Lowest address that is not user space on x86-64 (47-bit canonical addresses). */
const USER_SPACE_END = 1n << 47n;

/** Link the block laid out by `layoutBlock` at `base`. */
export function linkBlock(layout: BlockLayout, base: bigint, resolver: SymbolResolver): LinkedBlock {
  return new BlockLinker(layout, base, resolver).link();
}

/** Layout and link in one step, for callers that already know the address. */
export function linkAt(request: LinkRequest, base: bigint, resolver: SymbolResolver): LinkedBlock {
  return linkBlock(layoutBlock(request), base, resolver);
}

class BlockLinker {
  private readonly bytes: Buffer;
  private readonly placedIndexes: Set<number>;
  private readonly sectionSymbols: Map<number, ElfSymbol[]>;
  private readonly answers = new Map<string, Resolution | undefined>();
  private readonly slots = new Map<number, GotSlot>();
  private readonly stubs = new Map<number, CallStub>();
  /** Sections whose local-dynamic TLS sequences were relaxed to local-exec (DTPOFF then means tp offset). */
  private localDynamicRelaxed: boolean | undefined;

  constructor(
    private readonly layout: BlockLayout,
    private readonly base: bigint,
    private readonly resolver: SymbolResolver,
  ) {
    if (base <= 0n || base % BigInt(layout.alignment) !== 0n || base + BigInt(layout.size) > USER_SPACE_END) {
      throw new TspliceError(
        'internal',
        `cannot link ${layout.unit} at ${hex(base)}: the block needs a non-null user-space address aligned to ` +
          `${hex(layout.alignment)} with room for ${hex(layout.size)} bytes`,
        { base: hex(base), size: layout.size, alignment: layout.alignment },
      );
    }
    this.bytes = Buffer.alloc(layout.size);
    this.placedIndexes = new Set(layout.bySection.keys());
    this.sectionSymbols = symbolsBySection(layout.elf);
  }

  link(): LinkedBlock {
    const { layout } = this;
    for (const placed of layout.sections) placed.section.data.copy(this.bytes, placed.offset);
    for (const stub of layout.stubs.values()) this.bytes.fill(0xcc, stub.code, stub.code + 8);
    this.localDynamicRelaxed = this.localDynamicMode();
    for (const placed of layout.sections) this.relocateSection(placed);
    return {
      bytes: this.bytes,
      base: this.base,
      size: layout.size,
      functions: this.addresses(['code'], [STT_FUNC, STT_GNU_IFUNC]),
      variables: this.addresses(['const', 'data'], [STT_OBJECT]),
      sections: layout.sections.map((p) => ({
        name: p.section.name, address: this.at(p.offset), size: p.section.size, reason: p.reason,
      })),
      ranges: layout.ranges.map((r) => ({ start: this.at(r.start), end: this.at(r.end), prot: r.prot })),
      gotSlots: [...this.slots.values()].sort((a, b) => (a.address < b.address ? -1 : 1)),
      stubs: [...this.stubs.values()].sort((a, b) => (a.address < b.address ? -1 : 1)),
    };
  }

  private at(offset: number | bigint): bigint {
    return this.base + BigInt(offset);
  }

  private addresses(classes: string[], types: number[]): Map<string, bigint> {
    const out = new Map<string, bigint>();
    for (const p of this.layout.sections) {
      if (!classes.includes(p.sectionClass)) continue;
      out.set(p.section.name, this.at(p.offset));
      for (const sym of this.sectionSymbols.get(p.section.index) ?? []) {
        if (types.includes(sym.type)) out.set(sym.name, this.at(p.offset) + sym.value);
      }
    }
    return out;
  }

  private target(rela: ElfRela): RelocationTarget {
    const { elf, unit } = this.layout;
    return relocationTarget(elf, unit, elf.symbols[rela.symbolIndex], this.placedIndexes, this.sectionSymbols);
  }

  private site(placed: PlacedSection, rela: ElfRela, target: RelocationTarget): Site {
    const owner = siteName(placed.section, this.sectionSymbols.get(placed.section.index), rela.offset);
    return { placed, rela, owner, symbol: target.name };
  }

  /** Whether local-dynamic TLS is relaxed to local-exec; the resolver's answers must agree across the unit. */
  private localDynamicMode(): boolean | undefined {
    let mode: boolean | undefined;
    for (const placed of this.layout.sections) {
      for (const rela of relocationsFor(this.layout.elf, placed.section)) {
        if (rela.type !== R.R_X86_64_TLSLD) continue;
        const target = this.target(rela);
        const answer = this.resolve(target, 'tlsld', this.site(placed, rela, target), ['tlsgd', 'tpoff']);
        const relaxed = answer.kind === 'tpoff';
        if (mode !== undefined && mode !== relaxed) {
          throw new TspliceError(
            'internal',
            `${this.layout.unit}: the resolver answered local-dynamic TLS both as a module pair and as a tp ` +
              'offset; one unit lives in one module and needs one kind of answer',
            { unit: this.layout.unit },
          );
        }
        mode = relaxed;
      }
    }
    return mode;
  }

  private relocateSection(placed: PlacedSection): void {
    const relas = [...relocationsFor(this.layout.elf, placed.section)].sort((a, b) =>
      a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0,
    );
    // Bytes rewritten by a TLS relaxation: relocations inside them (the __tls_get_addr call) are gone.
    let rewrittenEnd = -1;
    for (const rela of relas) {
      if (Number(rela.offset) < rewrittenEnd) continue;
      if (rela.type === R.R_X86_64_NONE) continue;
      const end = this.relocate(placed, rela);
      if (end !== undefined) rewrittenEnd = end;
    }
  }

  /** Apply one relocation; returns the end of a rewritten TLS sequence, if any. */
  private relocate(placed: PlacedSection, rela: ElfRela): number | undefined {
    const { elf } = this.layout;
    const type = rela.type;
    const size = relocationFieldSize(type);
    if (rela.offset < 0n || rela.offset + BigInt(size) > BigInt(placed.section.size)) {
      throw new TspliceError(
        'bad_input',
        `${elf.name}: ${relocationName(type)} at ${hex(rela.offset)} lies outside ${placed.section.name}`,
        { section: placed.section.name, offset: hex(rela.offset) },
      );
    }
    if (rela.symbolIndex === 0) throw this.unsupported(placed, rela, '(no symbol)');
    const target = this.target(rela);
    // A new IFUNC would need its resolver run in the target first: not done, so refuse rather than call it.
    if (target.kind === 'placed' && target.ifunc) throw this.unsupported(placed, rela, target.name);
    const site = this.site(placed, rela, target);
    const P = this.at(placed.offset) + rela.offset;
    const A = rela.addend;

    switch (type) {
      case R.R_X86_64_64:
        return this.write(site, 8, this.address(target, 'address', site) + A, 'none');
      case R.R_X86_64_32:
        return this.write(site, 4, this.address(target, 'address', site) + A, 'unsigned');
      case R.R_X86_64_32S:
        return this.write(site, 4, this.address(target, 'address', site) + A, 'signed');
      case R.R_X86_64_16:
        return this.write(site, 2, this.address(target, 'address', site) + A, 'either');
      case R.R_X86_64_8:
        return this.write(site, 1, this.address(target, 'address', site) + A, 'either');
      case R.R_X86_64_PC64:
        return this.write(site, 8, this.address(target, 'address', site) + A - P, 'none');
      case R.R_X86_64_PC16:
        return this.write(site, 2, this.address(target, 'address', site) + A - P, 'signed');
      case R.R_X86_64_PC8:
        return this.write(site, 1, this.address(target, 'address', site) + A - P, 'signed');
      case R.R_X86_64_PC32:
      case R.R_X86_64_PLT32:
        return this.pcRelative32(site, target, P, A);
      case R.R_X86_64_GOTPCREL:
      case R.R_X86_64_GOTPCRELX:
      case R.R_X86_64_REX_GOTPCRELX:
        return this.write(site, 4, this.gotSlot(site, target) + A - P, 'signed');
      case R.R_X86_64_GOTTPOFF:
        return this.write(site, 4, this.tpoffSlot(site, target) + A - P, 'signed');
      case R.R_X86_64_TPOFF32:
        return this.write(site, 4, this.tpoff(site, target) + A, 'signed');
      case R.R_X86_64_TPOFF64:
        return this.write(site, 8, this.tpoff(site, target) + A, 'none');
      case R.R_X86_64_TLSGD:
        return this.generalDynamic(site, target, P, A);
      case R.R_X86_64_TLSLD:
        return this.localDynamic(site, target, P, A);
      case R.R_X86_64_DTPOFF32:
        return this.write(site, 4, this.dtpoff(site, target) + A, 'signed');
      case R.R_X86_64_DTPOFF64:
        return this.write(site, 8, this.dtpoff(site, target) + A, 'none');
      case R.R_X86_64_SIZE32:
        return this.write(site, 4, this.symbolSize(site, target) + A, 'either');
      case R.R_X86_64_SIZE64:
        return this.write(site, 8, this.symbolSize(site, target) + A, 'none');
      default:
        throw this.unsupported(placed, rela, target.name);
    }
  }

  /** st_size, known only for symbols the object defines. */
  private symbolSize(site: Site, target: RelocationTarget): bigint {
    if (target.kind === 'external' && target.query.section === undefined) {
      throw this.unsupported(site.placed, site.rela, `${site.symbol}, whose size only its defining object knows`);
    }
    return BigInt(target.size);
  }

  private unsupported(placed: PlacedSection, rela: ElfRela, symbol: string): TspliceError {
    const owner = siteName(placed.section, this.sectionSymbols.get(placed.section.index), rela.offset);
    const type = relocationName(rela.type);
    return new TspliceError(
      'unsupported_change',
      `${this.layout.unit}: ${owner} uses relocation ${type} (against ${symbol}) at ${placed.section.name}` +
        `+${hex(rela.offset)}, which tsplice cannot apply to a running process; build the unit with the ` +
        'default small code model and TLS dialect (no -mcmodel=large, no -mtls-dialect=gnu2)',
      { unit: this.layout.unit, function: owner, relocation: type, symbol, section: placed.section.name },
    );
  }

  private write(site: Site, bytes: number, value: bigint, check: FieldCheck): undefined {
    if (!fitsField(value, bytes, check)) throw this.overflow(site, value, bytes);
    writeField(this.bytes, site.placed.offset + Number(site.rela.offset), bytes, value);
    return undefined;
  }

  private overflow(site: Site, value: bigint, bytes: number): TspliceError {
    const type = relocationName(site.rela.type);
    const where = this.at(site.placed.offset) + site.rela.offset;
    return new TspliceError(
      'out_of_memory',
      `${this.layout.unit}: ${site.owner} refers to ${site.symbol} with ${type}, whose value ${hex(value)} does not ` +
        `fit its ${bytes * 8}-bit field at ${hex(where)}; the block at ${hex(this.base)} is too far from ` +
        `${site.symbol}: allocate it closer to the code and data it uses (within ±2 GiB; below 2 GiB for ` +
        'code built without -fPIC/-fPIE)',
      { unit: this.layout.unit, function: site.owner, symbol: site.symbol, relocation: type, value: hex(value) },
    );
  }

  /** The resolver's answer for `target` with `access`, which must be one of `kinds`. */
  private resolve<K extends Resolution['kind']>(
    target: RelocationTarget, access: SymbolAccess, site: Site, kinds: K[],
  ): Extract<Resolution, { kind: K }> {
    if (target.kind !== 'external') {
      throw new TspliceError(
        'internal',
        `${this.layout.unit}: ${site.owner} needs ${site.symbol} as ${access}, which only the running program ` +
          'can answer, but the symbol was placed in the block',
        { unit: this.layout.unit, function: site.owner, symbol: site.symbol },
      );
    }
    const cacheKey = `${target.key}\0${access}`;
    if (!this.answers.has(cacheKey)) this.answers.set(cacheKey, this.ask(target, access));
    const answer = this.answers.get(cacheKey);
    if (answer === undefined) throw this.unresolved(target, access, site);
    if (!(kinds as string[]).includes(answer.kind)) {
      throw new TspliceError(
        'internal',
        `${this.layout.unit}: the resolver answered ${target.query.name} (${access}) with a ${answer.kind} ` +
          `where ${kinds.join(' or ')} is needed`,
        { unit: this.layout.unit, symbol: target.query.name, access, answer: answer.kind },
      );
    }
    return answer as Extract<Resolution, { kind: K }>;
  }

  private ask(target: ExternalTarget, access: SymbolAccess): Resolution | undefined {
    const answer = this.resolver({ ...target.query, access });
    // A weak undefined symbol that nothing defines is 0, as in a static link.
    if (answer === undefined && target.weakUndefined && (access === 'address' || access === 'call' || access === 'got')) {
      return { kind: 'address', value: 0n };
    }
    return answer;
  }

  private unresolved(target: ExternalTarget, access: SymbolAccess, site: Site): TspliceError {
    const q = target.query;
    const what = q.section ? `${q.binding} ${q.type} of ${q.section}` : `undefined ${q.binding} ${q.type}`;
    return new TspliceError(
      'no_match',
      `${this.layout.unit}: ${site.owner} needs ${q.name} (${what}, as ${access}), which was not found in the ` +
        'running program; check that the update was built for this program and that the library defining ' +
        `${q.name} is loaded`,
      { unit: this.layout.unit, function: site.owner, symbol: q.name, access },
    );
  }

  /** Run-time address of a target used as data or code address. */
  private address(target: RelocationTarget, access: 'address' | 'call', site: Site): bigint {
    switch (target.kind) {
      case 'placed':
        return this.at((this.layout.bySection.get(target.sectionIndex) as PlacedSection).offset) + target.offset;
      case 'absolute':
        return target.value;
      case 'external':
        return this.resolve(target, access, site, ['address']).value + target.delta;
    }
  }

  /** PC32/PLT32: direct when in reach; a branch out of reach (or through an existing GOT slot) uses a stub. */
  private pcRelative32(site: Site, target: RelocationTarget, P: bigint, A: bigint): undefined {
    const { rela, placed } = site;
    const key = stubKey(placed.section, rela.type, Number(rela.offset), A, target);
    if (!key || target.kind !== 'external') {
      return this.write(site, 4, this.address(target, 'address', site) + A - P, 'signed');
    }
    const answer = this.resolve(target, 'call', site, ['address', 'got']);
    const stub = this.layout.stubs.get(key);
    if (!stub) throw new TspliceError('internal', `no stub was reserved for ${site.symbol} in ${site.owner}`);
    const stubAddress = this.at(stub.code);
    let jumpSlot: bigint;
    if (answer.kind === 'address') {
      const destination = answer.value + target.delta;
      const direct = destination + A - P;
      if (fitsField(direct, 4, 'signed')) return this.write(site, 4, direct, 'signed');
      // The branch field ends the instruction, so the branch lands at P + 4 + field: aim it at the stub.
      jumpSlot = this.fillSlot(stub.slot, destination + A + 4n, site.symbol, 'stub');
    } else {
      if (target.delta !== 0n || A !== -4n) throw this.unsupported(placed, rela, `${site.symbol}+${A}`);
      jumpSlot = answer.slot;
    }
    const disp = jumpSlot - (stubAddress + 6n);
    if (!fitsField(disp, 4, 'signed')) throw this.overflow(site, disp, 4);
    this.bytes[stub.code] = 0xff;
    this.bytes[stub.code + 1] = 0x25;
    writeField(this.bytes, stub.code + 2, 4, disp);
    this.stubs.set(stub.code, { address: stubAddress, slot: jumpSlot, symbol: site.symbol });
    return this.write(site, 4, stubAddress - (P + 4n), 'signed');
  }

  private fillSlot(offset: number, value: bigint, symbol: string, holds: GotSlot['holds']): bigint {
    const address = this.at(offset);
    const previous = this.slots.get(offset);
    if (previous && previous.value !== value) {
      throw new TspliceError('internal', `GOT slot at ${hex(address)} would hold both ${hex(previous.value)} and ${hex(value)}`);
    }
    this.slots.set(offset, { address, value, symbol, holds });
    writeField(this.bytes, offset, 8, value);
    return address;
  }

  private reservedSlot(key: string): number {
    const offset = this.layout.gotSlots.get(key);
    if (offset === undefined) throw new TspliceError('internal', `no GOT slot was reserved for ${key}`);
    return offset;
  }

  /** Address of a GOT slot holding the target's address: a local one, or the running program's. */
  private gotSlot(site: Site, target: RelocationTarget): bigint {
    const offset = this.reservedSlot(`address:${target.key}`);
    if (target.kind === 'external') {
      const answer = this.resolve(target, 'got', site, ['address', 'got']);
      if (answer.kind === 'got') {
        if (target.delta !== 0n) throw this.unsupported(site.placed, site.rela, site.symbol);
        return answer.slot;
      }
      return this.fillSlot(offset, answer.value + target.delta, site.symbol, 'address');
    }
    return this.fillSlot(offset, this.address(target, 'address', site), site.symbol, 'address');
  }

  /** Initial-exec TLS: a GOT slot holding the variable's tp offset. */
  private tpoffSlot(site: Site, target: RelocationTarget): bigint {
    const answer = this.resolve(target, 'gottpoff', site, ['tpoff', 'got']);
    if (answer.kind === 'got') {
      if (target.kind === 'external' && target.delta !== 0n) throw this.unsupported(site.placed, site.rela, site.symbol);
      return answer.slot;
    }
    return this.fillSlot(this.reservedSlot(`tpoff:${target.key}`), answer.value + this.delta(target), site.symbol, 'tpoff');
  }

  private delta(target: RelocationTarget): bigint {
    return target.kind === 'external' ? target.delta : 0n;
  }

  private tpoff(site: Site, target: RelocationTarget): bigint {
    return this.resolve(target, 'tpoff', site, ['tpoff']).value + this.delta(target);
  }

  private sectionBytes(placed: PlacedSection): Buffer {
    return this.bytes.subarray(placed.offset, placed.offset + placed.section.size);
  }

  private badSequence(site: Site, model: string): TspliceError {
    return new TspliceError(
      'unsupported_change',
      `${this.layout.unit}: ${site.owner} accesses ${site.symbol} with a ${model} TLS sequence that is not the ` +
        "one gcc emits, so it cannot be relaxed to the running program's TLS model",
      { unit: this.layout.unit, function: site.owner, symbol: site.symbol },
    );
  }

  /** TLSGD: the running module's GOT pair, or a relaxation when the running program knows the tp offset. */
  private generalDynamic(site: Site, target: RelocationTarget, P: bigint, A: bigint): number | undefined {
    const answer = this.resolve(target, 'tlsgd', site, ['tlsgd', 'tpoff', 'got']);
    if (answer.kind === 'tlsgd') return this.write(site, 4, answer.slot + A - P, 'signed');
    const code = this.sectionBytes(site.placed);
    const seq = generalDynamicSequence(code, Number(site.rela.offset));
    if (!seq) throw this.badSequence(site, 'general-dynamic');
    if (answer.kind === 'tpoff') {
      const value = answer.value + this.delta(target);
      if (!fitsField(value, 4, 'signed')) throw this.overflow(site, value, 4);
      relaxTlsSequence(code, seq, 'gd-le', value);
    } else {
      if (this.delta(target) !== 0n) throw this.unsupported(site.placed, site.rela, site.symbol);
      const disp = answer.slot - (this.at(site.placed.offset) + BigInt(seq.end));
      if (!fitsField(disp, 4, 'signed')) throw this.overflow(site, disp, 4);
      relaxTlsSequence(code, seq, 'gd-ie', disp);
    }
    return seq.end;
  }

  /** TLSLD: the module's GOT pair, or local-exec when the running executable holds the variables. */
  private localDynamic(site: Site, target: RelocationTarget, P: bigint, A: bigint): number | undefined {
    const answer = this.resolve(target, 'tlsld', site, ['tlsgd', 'tpoff']);
    if (answer.kind === 'tlsgd') return this.write(site, 4, answer.slot + A - P, 'signed');
    const code = this.sectionBytes(site.placed);
    const seq = localDynamicSequence(code, Number(site.rela.offset));
    if (!seq) throw this.badSequence(site, 'local-dynamic');
    relaxTlsSequence(code, seq, 'ld-le');
    return seq.end;
  }

  /** DTPOFF: offset in the module's TLS block, or the tp offset once local-dynamic was relaxed. */
  private dtpoff(site: Site, target: RelocationTarget): bigint {
    const kind = this.localDynamicRelaxed ? 'tpoff' : 'dtpoff';
    return this.resolve(target, 'dtpoff', site, [kind]).value + this.delta(target);
  }
}
