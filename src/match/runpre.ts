// Run-pre matching of one function: walk the pre code and the running code
// side by side, instruction by instruction, and accept the running code only
// if it is exactly the pre code as the toolchain would have linked it. Every
// relocated field read back on the way resolves a symbol; the same symbol
// must resolve the same way every time.

import { firstDifference, readField, sameBranchOperation, sameExceptDisplacement } from '../x86/compare.js';
import { decodeAll, decodeOne, type Insn } from '../x86/decode.js';
import { formatInsn } from '../x86/format.js';
import { isPadding } from '../x86/nop.js';
import type { RunningImage } from './image.js';
import { CachedReader, type CodeReader } from './memory.js';
import { describeRelocation, preRelocations, type PreFunction, type PreRelocation } from './pre.js';
import { resolveField } from './relocation.js';
import { ResolutionSet, type Resolution } from './resolution.js';
import { checkReferencedData, keyAddress, symbolRef } from './target.js';
import { isStepMatch, type MatchSite, type StepMatch, type StepResult, type Tolerance } from './tolerance.js';
import { userSpaceTolerances } from './tolerances/index.js';

export type { PreFunction } from './pre.js';
export type { Resolution } from './resolution.js';

export interface MatchOptions {
  /** Accepted differences, tried in order when the exact comparison fails. Default: user-space toolchain ones. */
  tolerances?: readonly Tolerance[];
  /**
   * Size of the running function when known (its symbol's size): the running
   * code after the matched part must then be padding, so a longer function
   * whose beginning happens to equal the pre code does not match.
   */
  runSize?: number;
}

export interface MatchOk {
  ok: true;
  address: bigint;
  /** Bytes of running code matched. */
  size: number;
  /** Resolved symbols by name (see ResolutionSet.toMap). */
  symbols: Map<string, Resolution>;
  /** The same, with provenance, to merge with other functions' results. */
  resolutions: ResolutionSet;
}

export interface MatchFail {
  ok: false;
  /** Pre offset (in the function) of the first difference. */
  offset: number;
  /** Run-time address of the first difference. */
  address: bigint;
  reason: string;
}

const MAX_INSN = 15;
const hex = (v: bigint | number) => `0x${v.toString(16)}`;

/** Match `pre` against the code running at `address`. */
export function matchFunction(
  pre: PreFunction, address: bigint, reader: CodeReader, image: RunningImage, options: MatchOptions = {},
): MatchOk | MatchFail {
  return new FunctionMatcher(pre, address, reader, image, options).run();
}

class FunctionMatcher {
  private readonly memory: CachedReader;
  private readonly code: Insn[];
  /** Pre instruction offset → index in `code`. */
  private readonly indexOf = new Map<bigint, number>();
  private readonly relocations: PreRelocation[];
  private readonly tolerances: readonly Tolerance[];
  private readonly set: ResolutionSet;
  private readonly decoded = new Map<bigint, Insn | null>();
  /** Pre instruction offset → run address where it matched. */
  private readonly preToRun = new Map<bigint, bigint>();
  private readonly pending: Array<{ pre: bigint; run: bigint; atOffset: bigint; atAddress: bigint }> = [];

  constructor(
    private readonly pre: PreFunction,
    private readonly address: bigint,
    reader: CodeReader,
    private readonly image: RunningImage,
    private readonly options: MatchOptions,
  ) {
    this.memory = reader instanceof CachedReader ? reader : new CachedReader(reader);
    this.code = decodeAll(pre.section.data, 0n);
    this.code.forEach((c, i) => this.indexOf.set(c.ip, i));
    this.relocations = preRelocations(pre);
    this.tolerances = options.tolerances ?? userSpaceTolerances;
    this.set = new ResolutionSet(image);
  }

  run(): MatchOk | MatchFail {
    const { pre, address } = this;
    // The copy of a function an earlier update placed stands for the function: its address is the old entry.
    const entry = this.image.aliases?.get(address) ?? address;
    const self = this.set.add(
      { key: pre.name, section: { name: pre.section.name, offset: 0n } }, { address: entry }, `${pre.name} entry (${hex(entry)})`,
    );
    if (self) return this.fail(0n, address, self);

    let i = 0;
    let at = address;
    for (;;) {
      while (i < this.code.length && this.isPrePadding(this.code[i])) i++;
      if (i >= this.code.length) break;
      let run = this.runAt(at);
      while (run && isPadding(run)) {
        at += BigInt(run.length);
        run = this.runAt(at);
      }
      const insn = this.code[i];
      if (!run) return this.fail(insn.ip, at, `the running code at ${hex(at)} cannot be read`);

      const site = this.site(i, at);
      const step = this.step(site, insn, run);
      if (!isStepMatch(step)) {
        const why = step?.mismatch ?? 'instructions differ';
        return this.fail(insn.ip, at, `${why}: pre ${this.describePre(insn)} vs running ${formatInsn(run)}`);
      }
      const stepEnd = insn.ip + BigInt(step.preLength);
      const next = this.indexOf.get(stepEnd);
      if (next === undefined && stepEnd !== BigInt(pre.section.size)) {
        return this.fail(insn.ip, at, `internal: a tolerance consumed part of an instruction`);
      }
      const problem = this.record(step, insn, at);
      if (problem) return this.fail(insn.ip, at, problem);
      i = next ?? this.code.length;
      at += BigInt(step.runLength);
    }

    const end = at;
    const targets = this.checkTargets(end);
    if (targets) return targets;
    const trailing = this.checkSize(end);
    if (trailing) return trailing;
    return { ok: true, address, size: Number(end - address), symbols: this.set.toMap(pre.elf), resolutions: this.set };
  }

  private step(site: MatchSite, insn: Insn, run: Insn): StepResult {
    const exact = this.exact(site, insn, run);
    if (isStepMatch(exact)) return exact;
    let reason = exact;
    for (const tolerance of this.tolerances) {
      const result = tolerance.match(site);
      if (isStepMatch(result)) return result;
      reason ??= result;
    }
    return reason;
  }

  /** Same instruction, with relocated fields and intra-function displacements read back. */
  private exact(site: MatchSite, insn: Insn, run: Insn): StepResult {
    const start = Number(insn.ip);
    const relocations = site.relocationsIn(start, start + insn.length);
    const size = BigInt(this.pre.section.size);
    if (relocations.length === 0) {
      if (insn.branchTarget !== undefined && insn.branchTarget >= 0n && insn.branchTarget <= size) {
        if (!sameBranchOperation(insn, run)) return undefined;
        return { preLength: insn.length, runLength: run.length, resolved: [], targets: [{ pre: insn.branchTarget, run: run.branchTarget! }] };
      }
      if (insn.ripTarget !== undefined && insn.ripTarget >= 0n && insn.ripTarget <= size) {
        if (!sameExceptDisplacement(insn, run)) return undefined;
        return { preLength: insn.length, runLength: run.length, resolved: [], targets: [{ pre: insn.ripTarget, run: run.ripTarget! }] };
      }
      if (insn.length !== run.length || firstDifference(insn.bytes, run.bytes) >= 0) return undefined;
      return { preLength: insn.length, runLength: run.length, resolved: [] };
    }
    for (const r of relocations) {
      if (r.offset + r.size > start + insn.length) {
        return { mismatch: `relocation ${describeRelocation(r)} at +${hex(r.offset)} does not fit in its instruction` };
      }
    }
    if (run.length !== insn.length) return undefined;
    const fields = relocations.map((r) => ({ offset: r.offset - start, size: r.size }));
    if (firstDifference(insn.bytes, run.bytes, fields) >= 0) return undefined;
    const resolved = [];
    for (const r of relocations) {
      const field = readField(run.bytes, r.offset - start, r.size, false);
      const outcome = resolveField(r, field, run.ip + BigInt(r.offset - start), site);
      if ('mismatch' in outcome) return outcome;
      resolved.push({ relocation: r, resolution: outcome.resolution });
    }
    return { preLength: insn.length, runLength: run.length, resolved };
  }

  /** Fold a step's findings in; returns a problem description. */
  private record(step: StepMatch, insn: Insn, at: bigint): string | undefined {
    const start = Number(insn.ip);
    const end = start + step.preLength;
    const accounted = new Set<PreRelocation>([...step.resolved.map((x) => x.relocation), ...(step.dropped ?? [])]);
    const missed = this.relocationsIn(start, end).find((r) => !accounted.has(r));
    if (missed) return `internal: relocation ${describeRelocation(missed)} at +${hex(missed.offset)} was not checked`;
    this.preToRun.set(insn.ip, at);
    for (const t of step.targets ?? []) this.pending.push({ ...t, atOffset: insn.ip, atAddress: at });
    for (const { relocation: r, resolution } of step.resolved) {
      const insnEnd = this.instructionEnd(r.offset);
      let stored = resolution;
      if (resolution.address !== undefined) {
        const content = checkReferencedData(this.pre, r, insnEnd, resolution.address, this.memory);
        if (content) return content;
        stored = { ...resolution, address: keyAddress(this.pre, r, insnEnd, resolution.address) };
      }
      const origin = `${this.pre.name}+${hex(r.offset)} (${hex(at + BigInt(r.offset - start))})`;
      const conflict = this.set.add(symbolRef(this.pre, r, insnEnd), stored, origin);
      if (conflict) return `symbol resolved inconsistently: ${conflict}`;
    }
    return undefined;
  }

  /** Branches and RIP-relative references inside the function must land on corresponding instructions. */
  private checkTargets(end: bigint): MatchFail | undefined {
    const size = BigInt(this.pre.section.size);
    for (const t of this.pending) {
      const preTarget = this.skipPrePadding(t.pre);
      const expected = preTarget === size ? end : this.preToRun.get(preTarget);
      const runTarget = this.skipRunPadding(t.run);
      if (expected === undefined) {
        return this.fail(t.atOffset, t.atAddress, `pre code refers to +${hex(t.pre)}, which is not an instruction boundary`);
      }
      if (runTarget !== expected && !(preTarget === size && this.skipRunPadding(end) === runTarget)) {
        return this.fail(
          t.atOffset, t.atAddress,
          `the running code refers to ${hex(t.run)} where the pre code refers to +${hex(t.pre)} (running ${hex(expected)})`,
        );
      }
    }
    return undefined;
  }

  private checkSize(end: bigint): MatchFail | undefined {
    if (this.options.runSize === undefined) return undefined;
    const limit = this.address + BigInt(this.options.runSize);
    const size = BigInt(this.pre.section.size);
    if (end > limit) {
      return this.fail(size, limit, `the running function is ${this.options.runSize} bytes, the pre code needs ${end - this.address}`);
    }
    for (let at = end; at < limit;) {
      const run = this.runAt(at);
      if (!run || !isPadding(run)) {
        const what = run ? formatInsn(run) : 'unreadable memory';
        return this.fail(size, at, `the running function continues after the end of the pre code: ${what}`);
      }
      at += BigInt(run.length);
    }
    return undefined;
  }

  private site(index: number, runAddress: bigint): MatchSite {
    return {
      pre: this.pre,
      image: this.image,
      reader: this.memory,
      preCode: this.code,
      index,
      runAddress,
      runAt: (a) => this.runAt(a),
      relocationsIn: (s, e) => this.relocationsIn(s, e),
    };
  }

  private runAt(address: bigint): Insn | undefined {
    let insn = this.decoded.get(address);
    if (insn === undefined) {
      const bytes = this.memory.readUpTo(address, MAX_INSN);
      insn = bytes.length === 0 ? null : decodeOne(bytes, address);
      if (insn && insn.invalid && bytes.length < MAX_INSN) insn = null;
      this.decoded.set(address, insn);
    }
    return insn ?? undefined;
  }

  private relocationsIn(start: number, end: number): PreRelocation[] {
    return this.relocations.filter((r) => r.offset >= start && r.offset < end);
  }

  private isPrePadding(insn: Insn): boolean {
    return isPadding(insn) && this.relocationsIn(Number(insn.ip), Number(insn.ip) + insn.length).length === 0;
  }

  private skipPrePadding(offset: bigint): bigint {
    let i = this.indexOf.get(offset);
    if (i === undefined) return offset;
    while (i < this.code.length && this.isPrePadding(this.code[i])) i++;
    return i < this.code.length ? this.code[i].ip : BigInt(this.pre.section.size);
  }

  private skipRunPadding(address: bigint): bigint {
    let at = address;
    for (let run = this.runAt(at); run && isPadding(run); run = this.runAt(at)) at += BigInt(run.length);
    return at;
  }

  private instructionEnd(offset: number): number {
    for (let start = offset; start >= 0 && start > offset - 15; start--) {
      const i = this.indexOf.get(BigInt(start));
      if (i !== undefined) return start + this.code[i].length;
    }
    return offset;
  }

  private describePre(insn: Insn): string {
    const start = Number(insn.ip);
    const relocs = this.relocationsIn(start, start + insn.length).map((r) => describeRelocation(r));
    return `+${hex(insn.ip)} ${formatInsn(insn, relocs.length === 0)}${relocs.length ? ` {${relocs.join(', ')}}` : ''}`;
  }

  private fail(offset: bigint, address: bigint, reason: string): MatchFail {
    return { ok: false, offset: Number(offset), address, reason };
  }
}

/** One line for users: which function, where, what differed. */
export function describeFailure(pre: PreFunction, fail: MatchFail): string {
  return `${pre.name} (${pre.unit}) differs at +${hex(fail.offset)} (running address ${hex(fail.address)}): ${fail.reason}`;
}
