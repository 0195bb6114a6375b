// The tolerances for code linked by the ordinary user-space toolchain. A
// kernel matcher passes this list plus its own (ftrace, alternatives, ...).

import type { Tolerance } from '../tolerance.js';
import { relaxedBranch } from './branch.js';
import { gotpcrelxRelaxation } from './gotpcrelx.js';
import { generalDynamicRelaxed, initialExecToLocalExec, localDynamicRelaxed } from './tls.js';

export const userSpaceTolerances: readonly Tolerance[] = [
  relaxedBranch,
  gotpcrelxRelaxation,
  initialExecToLocalExec,
  generalDynamicRelaxed,
  localDynamicRelaxed,
];

export { relaxedBranch, gotpcrelxRelaxation, initialExecToLocalExec, generalDynamicRelaxed, localDynamicRelaxed };
