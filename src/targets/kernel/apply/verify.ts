// Verification before load: run-pre matching of every function the update
// replaces against the live kernel. The running code must be exactly the pre
// code as the kernel build linked it and as the kernel rewrote it at run time
// (ftrace, alternatives, static keys...), or nothing is loaded: a kernel that
// is not the one the update was built for gives no_match naming the function.

import { parseElf, type ElfFile } from '../../../elf/reader.js';
import { TspliceError } from '../../../errors.js';
import { type CodeReader, CachedReader } from '../../../match/memory.js';
import { preFunction } from '../../../match/pre.js';
import { ResolutionSet } from '../../../match/resolution.js';
import { describeFailure, matchFunction, type MatchFail, type MatchOk } from '../../../match/runpre.js';
import { decodeOne } from '../../../x86/decode.js';
import { isPadding } from '../../../x86/nop.js';
import { Mnemonic } from '../../../x86/decode.js';
import { type KernelSymbol, type KernelSymbols } from './kallsyms.js';
import { kernelObjectImage } from './running-kernel.js';
import { SpecialSiteIndex } from './special-sites.js';
import { kernelTolerances } from './tolerances/index.js';
import type { KernelFunctionRecord, KernelUpdate } from './update.js';

export interface RunningKernel {
  /** `uname -r`. */
  release: string;
  symbols: KernelSymbols;
  memory: CodeReader;
}

export interface VerifiedFunction {
  object: string;
  function: string;
  sympos: number;
  /** Where it runs; absent when its module is not loaded (livepatch patches it when it loads). */
  address?: bigint;
  /** Bytes of running code matched. */
  size?: number;
  status: 'matched' | 'module-not-loaded' | 'no-pre-code';
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

function noMatch(update: KernelUpdate, kernel: RunningKernel, message: string, details: Record<string, unknown>): TspliceError {
  const other = update.target.release !== kernel.release
    ? ` The update was built for ${update.target.release}, this kernel is ${kernel.release}.`
    : ' The running kernel is not the build this update was made for (another package version, config or compiler).';
  return new TspliceError(
    'no_match',
    `${message}.${other} Nothing was loaded. Use an update built for this exact kernel (uname -r, package version).`,
    { ...details, release: kernel.release, builtFor: update.target.release },
  );
}

/** Match every replaced function; throws no_match at the first one that is not the pre code. */
export function verifyKernelUpdate(update: KernelUpdate, kernel: RunningKernel): VerifiedFunction[] {
  const memory = kernel.memory instanceof CachedReader ? kernel.memory : new CachedReader(kernel.memory);
  const index = new SpecialSiteIndex();
  const tolerances = kernelTolerances(index);
  const preElves = new Map<string, ElfFile>();
  /** Per unit and object, what its functions resolved: they must agree with each other. */
  const resolved = new Map<string, ResolutionSet>();
  const out: VerifiedFunction[] = [];

  for (const record of update.functions) {
    if (record.kind === 'new') continue;
    const base = { object: record.object, function: record.function, sympos: record.sympos };
    if (!kernel.symbols.hasObject(record.object)) {
      out.push({ ...base, status: 'module-not-loaded' });
      continue;
    }
    const preData = record.unit !== undefined ? update.preObjects.get(record.unit) : undefined;
    if (record.unit === undefined || !preData) {
      out.push({ ...base, status: 'no-pre-code' });
      continue;
    }
    let elf = preElves.get(record.unit);
    if (!elf) preElves.set(record.unit, (elf = parseElf(preData, record.unit)));
    const pre = preFunction(elf, record.preSymbol ?? record.function, record.unit);
    const image = kernelObjectImage(kernel.symbols, record.object, kernel.release);

    const candidates = kernel.symbols.functionCandidates(record.object, record.function, record.sympos);
    if (candidates.length === 0) {
      const what = record.sympos > 0 ? `no ${record.function} at position ${record.sympos}` : `no function ${record.function}`;
      throw noMatch(update, kernel, `${what} in ${record.object}`, { function: record.function, object: record.object });
    }
    const matches: Array<{ sym: KernelSymbol; ok: MatchOk }> = [];
    const failures: MatchFail[] = [];
    for (const sym of candidates) {
      const result = matchFunction(pre, sym.address, memory, image, { tolerances });
      if (!result.ok) {
        failures.push(result);
        continue;
      }
      const trailing = trailingCode(kernel.symbols, record, sym, result, memory);
      if (trailing) failures.push(trailing);
      else matches.push({ sym, ok: result });
    }
    if (matches.length === 0) {
      const best = failures.reduce((a, b) => (b.offset > a.offset ? b : a));
      throw noMatch(update, kernel, `${record.object}: ${describeFailure(pre, best)}`, {
        function: record.function, object: record.object, offset: best.offset, address: hex(best.address),
      });
    }
    if (matches.length > 1) {
      const where = matches.map((m) => `${hex(m.sym.address)} (sympos ${m.sym.sympos})`).join(', ');
      throw noMatch(update, kernel, `${record.function} matches ${matches.length} functions of ${record.object} (${where}) and the update does not say which`, {
        function: record.function, object: record.object,
      });
    }
    const [{ sym, ok }] = matches;
    const key = `${record.unit}\0${record.object}`;
    const set = resolved.get(key) ?? new ResolutionSet(image);
    const conflict = set.addAll(ok.resolutions);
    if (conflict) {
      throw noMatch(update, kernel, `${record.function} matches at ${hex(sym.address)}, but ${conflict}`, {
        function: record.function, object: record.object,
      });
    }
    resolved.set(key, set);
    out.push({ ...base, sympos: sym.sympos, address: sym.address, size: ok.size, status: 'matched' });
  }
  return out;
}

/**
 * The running function must end where the pre code ends: what follows up to
 * the next symbol may only be padding (int3 fills the kernel's text, NOPs
 * align). Otherwise a longer function that merely starts like the pre code
 * would match.
 */
function trailingCode(
  symbols: KernelSymbols, record: KernelFunctionRecord, sym: KernelSymbol, ok: MatchOk, memory: CodeReader,
): MatchFail | undefined {
  const extent = symbols.extentOf(record.object, sym.address);
  if (extent === undefined || extent <= ok.size) return undefined;
  // Only look a short way: long gaps are alignment of the next section, not code.
  const end = Math.min(extent, ok.size + 64);
  let bytes: Buffer;
  try {
    bytes = memory.read(sym.address + BigInt(ok.size), end - ok.size);
  } catch {
    return undefined;
  }
  for (let at = 0; at < bytes.length;) {
    const insn = decodeOne(bytes.subarray(at), sym.address + BigInt(ok.size + at));
    if (insn.invalid) return undefined; // cut off at the end of the window
    if (!isPadding(insn) && insn.mnemonic !== Mnemonic.Int3) {
      return {
        ok: false, offset: ok.size, address: insn.ip,
        reason: `the running function continues after the end of the pre code`,
      };
    }
    at += insn.length;
  }
  return undefined;
}
