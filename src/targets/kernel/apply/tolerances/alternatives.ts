// Alternatives (.altinstructions): at boot (and module load) the kernel
// replaces the original instructions of a site with a replacement from
// .altinstr_replacement when the CPU has (or lacks) a feature, pads the rest
// with NOPs, and fixes the displacement of a relative call or jmp it moved.
// A site may have several alternatives (ALTERNATIVE_2): the running code is
// the original or any one of them.

import { relocationsFor } from '../../../../elf/reader.js';
import { relocationFieldSize } from '../../../../elf/x86_64.js';
import { firstDifference, sameBranchOperation } from '../../../../x86/compare.js';
import { decodeAll, type FieldRange, type Insn } from '../../../../x86/decode.js';
import { isPadding } from '../../../../x86/nop.js';
import type { MatchSite, StepResult, Tolerance } from '../../../../match/tolerance.js';
import type { AlternativeSite, SpecialSiteIndex } from '../special-sites.js';
import { paddingEndsAt, preBytesUntil, rewritten, siteOffsets, sitesOf } from './site.js';

export function alternativesTolerance(index: SpecialSiteIndex): Tolerance {
  return {
    name: 'kernel-alternative',
    match(site: MatchSite): StepResult {
      const alternatives = sitesOf(index, site).alternatives;
      if (alternatives.size === 0) return undefined;
      for (const start of siteOffsets(site)) {
        for (const alt of alternatives.get(start) ?? []) {
          const preLength = preBytesUntil(site, start + alt.length);
          if (preLength === undefined) continue;
          const runLength = replacementLength(site, alt);
          if (runLength !== undefined) return rewritten(site, preLength, runLength);
          // A replacement of nothing but NOPs: the matcher skipped it already.
          if (preLength > 0 && isEmptyReplacement(site, alt) && paddingEndsAt(site, site.runAddress, alt.length)) {
            return rewritten(site, preLength, 0);
          }
        }
      }
      return undefined;
    },
  };
}

/** The replacement's instructions, each with the fields the kernel or the linker may change. */
function replacementCode(site: MatchSite, alt: AlternativeSite): Array<{ insn: Insn; fields: FieldRange[] }> {
  const { section, offset, length } = alt.replacement;
  const bytes = section.data.subarray(offset, offset + length);
  const relocations = relocationsFor(site.pre.elf, section)
    .map((r) => ({ at: Number(r.offset) - offset, size: relocationFieldSize(r.type) }))
    .filter((r) => r.at >= 0 && r.at < length && r.size > 0);
  return decodeAll(bytes, 0n).map((insn) => {
    const start = Number(insn.ip);
    const fields = relocations
      .filter((r) => r.at >= start && r.at < start + insn.length)
      .map((r) => ({ offset: r.at - start, size: r.size }));
    return { insn, fields };
  });
}

function isEmptyReplacement(site: MatchSite, alt: AlternativeSite): boolean {
  return replacementCode(site, alt).every(({ insn }) => isPadding(insn));
}

/** Running bytes the site takes when it holds this replacement (then NOPs up to the site's length). */
function replacementLength(site: MatchSite, alt: AlternativeSite): number | undefined {
  const code = replacementCode(site, alt).filter(({ insn }) => !isPadding(insn));
  if (code.length === 0 || code.some(({ insn }) => insn.invalid)) return undefined;
  let at = site.runAddress;
  for (const { insn, fields } of code) {
    const run = site.runAt(at);
    if (!run) return undefined;
    if (insn.branchTarget !== undefined) {
      // The kernel recomputes relative calls and jumps for their new place (and may shorten a jmp).
      if (!sameBranchOperation(insn, run)) return undefined;
    } else if (run.length !== insn.length || firstDifference(insn.bytes, run.bytes, fields) >= 0) {
      return undefined;
    }
    at += BigInt(run.length);
  }
  const end = site.runAddress + BigInt(alt.length);
  while (at < end) {
    const run = site.runAt(at);
    if (!run || !isPadding(run)) return undefined;
    at += BigInt(run.length);
  }
  return at === end ? alt.length : undefined;
}
