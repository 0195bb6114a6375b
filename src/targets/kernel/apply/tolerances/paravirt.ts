// Paravirt calls (.parainstructions): an indirect `call *pv_ops+N` that the
// kernel rewrites at boot for the hypervisor it runs on (or none): into a
// direct call to the chosen function, or into the few native instructions it
// stands for (cli, sti, pushf; pop...), padded with NOPs, or NOPs alone. The
// site's length is recorded, so anything decodable that fills it exactly is
// accepted there.

import type { MatchSite, StepResult, Tolerance } from '../../../../match/tolerance.js';
import { isPadding } from '../../../../x86/nop.js';
import type { SpecialSiteIndex } from '../special-sites.js';
import { paddingEndsAt, preBytesUntil, rewritten, runSpan, siteOffsets, sitesOf } from './site.js';

export function paravirtTolerance(index: SpecialSiteIndex): Tolerance {
  return {
    name: 'kernel-paravirt',
    match(site: MatchSite): StepResult {
      const paravirt = sitesOf(index, site).paravirt;
      if (paravirt.size === 0) return undefined;
      for (const start of siteOffsets(site)) {
        const length = paravirt.get(start);
        if (length === undefined) continue;
        const preLength = preBytesUntil(site, start + length);
        if (preLength === undefined) continue;
        const span = runSpan(site, site.runAddress, length);
        if (span && span.some((i) => i && !isPadding(i))) return rewritten(site, preLength, length);
        if (preLength > 0 && paddingEndsAt(site, site.runAddress, length)) return rewritten(site, preLength, 0);
      }
      return undefined;
    },
  };
}
