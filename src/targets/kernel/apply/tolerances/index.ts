// The differences between a kernel object compiled on its own and the same
// code running in the kernel, beyond what linking explains: the kernel
// rewrites its own code at the sites its tables list. Passed to run-pre
// matching after the toolchain tolerances (short vs near branches still apply).

import type { Tolerance } from '../../../../match/tolerance.js';
import { relaxedBranch } from '../../../../match/tolerances/index.js';
import type { SpecialSiteIndex } from '../special-sites.js';
import { alternativesTolerance } from './alternatives.js';
import { ftraceTolerance } from './ftrace.js';
import { jumpLabelTolerance } from './jump-label.js';
import { paravirtTolerance } from './paravirt.js';
import { retpolineTolerance } from './retpoline.js';
import { returnThunkTolerance } from './return-thunk.js';
import { staticCallTolerance } from './static-call.js';

/** The tolerances for matching a kernel pre object against live kernel memory. */
export function kernelTolerances(index: SpecialSiteIndex): Tolerance[] {
  return [
    relaxedBranch,
    ftraceTolerance(index),
    returnThunkTolerance(index),
    retpolineTolerance(index),
    staticCallTolerance(index),
    jumpLabelTolerance(index),
    alternativesTolerance(index),
    paravirtTolerance(index),
  ];
}

export {
  alternativesTolerance, ftraceTolerance, jumpLabelTolerance, paravirtTolerance, retpolineTolerance,
  returnThunkTolerance, staticCallTolerance,
};
