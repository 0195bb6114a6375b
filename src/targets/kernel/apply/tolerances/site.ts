// What the kernel tolerances share: where the running code of a patch site
// starts and ends when the matcher has already skipped NOPs on either side.
//
// The matcher skips padding before comparing, on both sides. A site the
// kernel turned into NOPs (an ftrace call, a jump label, an alternative with
// an empty replacement) is therefore gone from the running side by the time a
// tolerance is asked: the running instruction is the one after it. And a site
// whose original is NOPs in the object (a jump label compiled as a NOP, an
// empty original alternative) is gone from the pre side: the pre instruction
// is the one after it. Both cases are recognised here.

import { decodeOne } from '../../../../x86/decode.js';
import { isPadding } from '../../../../x86/nop.js';
import type { MatchSite, StepMatch } from '../../../../match/tolerance.js';
import type { SpecialSiteIndex, SpecialSites } from '../special-sites.js';

export function sitesOf(index: SpecialSiteIndex, site: MatchSite): SpecialSites {
  return index.of(site.pre.elf, site.pre.section);
}

/** True when the `length` bytes just before `address` in the running code are all NOPs. */
export function paddingEndsAt(site: MatchSite, address: bigint, length: number): boolean {
  if (length <= 0) return false;
  let bytes: Buffer;
  try {
    bytes = site.reader.read(address - BigInt(length), length);
  } catch {
    return false;
  }
  for (let at = 0; at < length;) {
    const insn = decodeOne(bytes.subarray(at), address - BigInt(length - at));
    if (insn.invalid || !isPadding(insn) || at + insn.length > length) return false;
    at += insn.length;
  }
  return true;
}

/**
 * Offsets of the pre site candidates for the current pre instruction: its own
 * offset, then those of the padding instructions right before it (skipped by
 * the matcher), nearest first.
 */
export function siteOffsets(site: MatchSite): number[] {
  const out = [Number(site.preCode[site.index].ip)];
  for (let j = site.index - 1; j >= 0 && isPadding(site.preCode[j]); j--) {
    const insn = site.preCode[j];
    if (site.relocationsIn(Number(insn.ip), Number(insn.ip) + insn.length).length > 0) break;
    out.push(Number(insn.ip));
  }
  return out;
}

/**
 * Pre bytes from the current instruction to the end of a site [start, start+length):
 * whole instructions only; undefined when the site ends inside an instruction.
 */
export function preBytesUntil(site: MatchSite, end: number): number | undefined {
  const from = Number(site.preCode[site.index].ip);
  if (end <= from) return 0;
  for (let j = site.index; j < site.preCode.length; j++) {
    const insnEnd = Number(site.preCode[j].ip) + site.preCode[j].length;
    if (insnEnd === end) return end - from;
    if (insnEnd > end) return undefined;
  }
  return undefined;
}

/** A step that consumes pre bytes whose relocations the running code no longer has. */
export function rewritten(site: MatchSite, preLength: number, runLength: number, extra: Partial<StepMatch> = {}): StepMatch {
  const start = Number(site.preCode[site.index].ip);
  return {
    preLength,
    runLength,
    resolved: [],
    dropped: site.relocationsIn(start, start + preLength),
    ...extra,
  };
}

/** The running instructions in [address, address + length): undefined unless they end exactly there. */
export function runSpan(site: MatchSite, address: bigint, length: number): ReturnType<MatchSite['runAt']>[] | undefined {
  const out = [];
  let at = address;
  const end = address + BigInt(length);
  while (at < end) {
    const insn = site.runAt(at);
    if (!insn || insn.invalid) return undefined;
    out.push(insn);
    at += BigInt(insn.length);
  }
  return at === end ? out : undefined;
}

export const hex = (v: number | bigint) => `0x${v.toString(16)}`;
