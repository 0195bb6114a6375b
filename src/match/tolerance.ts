// Tolerances: accepted differences between the pre code and the running
// code beyond "same bytes, relocated fields read back". Each one recognises a
// transformation the toolchain (or, for the kernel, the running system) is
// known to make and says what the rewritten code tells about the symbols.
// Matching tries them in order after the exact comparison fails, so a target
// (the kernel: ftrace, alternatives, static keys) adds its own to the list.

import type { Insn } from '../x86/decode.js';
import type { RunningImage } from './image.js';
import type { CodeReader } from './memory.js';
import type { PreFunction, PreRelocation } from './pre.js';
import type { Resolution } from './resolution.js';

export interface MatchSite {
  pre: PreFunction;
  image: RunningImage;
  reader: CodeReader;
  /** All pre instructions (ip = section offset); the one being matched is `preCode[index]`. */
  preCode: readonly Insn[];
  index: number;
  /** Run-time address of the running instruction being compared. */
  runAddress: bigint;
  /** The running instruction at an address, or undefined when that memory cannot be read. */
  runAt(address: bigint): Insn | undefined;
  /** Pre relocations whose fields start in [start, end) of the section. */
  relocationsIn(start: number, end: number): PreRelocation[];
}

export interface ResolvedRelocation {
  relocation: PreRelocation;
  resolution: Resolution;
}

/** A successful comparison of some pre instructions with some running ones. */
export interface StepMatch {
  /** Pre bytes consumed: whole instructions. */
  preLength: number;
  /** Running bytes consumed. */
  runLength: number;
  /** What each pre relocation in the consumed bytes resolved to. */
  resolved: ResolvedRelocation[];
  /** Relocations of the consumed bytes that the running code legitimately no longer has (linker relaxations). */
  dropped?: PreRelocation[];
  /** Branch or RIP-relative targets inside the function that must correspond: pre section offset ↔ run address. */
  targets?: Array<{ pre: bigint; run: bigint }>;
}

export interface StepMismatch {
  /** Why the running code cannot be this pre code here (more precise than "instructions differ"). */
  mismatch: string;
}

/** undefined: this tolerance does not apply here. */
export type StepResult = StepMatch | StepMismatch | undefined;

export interface Tolerance {
  readonly name: string;
  match(site: MatchSite): StepResult;
}

export function isStepMatch(r: StepResult): r is StepMatch {
  return r !== undefined && !('mismatch' in r);
}
