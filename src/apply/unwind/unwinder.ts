// Walk a stopped thread's stack frame by frame with .eh_frame CFI (x86-64):
// the return addresses of every caller frame, or the reason the walk could
// not be trusted. Pure computation over tables built before the freeze and
// the thread's stack bytes read once, so it is fast enough for the freeze.
import { cfaRowAt, type RegisterRule } from './cfa-program.js';
import { CfiError } from './dwarf-cursor.js';
import type { EhFrameTable } from './eh-frame.js';

/** x86-64 DWARF register numbers. */
export const DWARF_REGISTERS = [
  'rax', 'rdx', 'rcx', 'rbx', 'rsi', 'rdi', 'rbp', 'rsp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip',
] as const;
const RSP = 7;
const RIP = 16;
/** Preserved across calls by the SysV ABI: "unspecified" means "same value" for them. */
const CALLEE_SAVED = new Set([3, 6, 12, 13, 14, 15]);

export type UnwindRegisters = Partial<Record<(typeof DWARF_REGISTERS)[number], bigint>> & { rip: bigint; rsp: bigint };

/** Finds the CFI table of the object whose code holds pc. */
export interface CfiLookup {
  tableFor(pc: bigint): EhFrameTable | undefined;
  /** A call instruction ends right before `ra` (see call-site.ts); absent: not checked. */
  followsCall?(ra: bigint): boolean;
}

/** The thread's stack, copied once: [start, start + bytes.length). */
export interface StackWindow {
  start: bigint;
  bytes: Buffer;
}

export type UnwindResult =
  | { ok: true; /** Return address of each caller frame, innermost first. */ returnAddresses: bigint[] }
  | { ok: false; reason: string; /** Return addresses found before the failure. */ partial: bigint[] };

export const MAX_FRAMES = 1024;

export function unwindStack(lookup: CfiLookup, registers: UnwindRegisters, stack: StackWindow): UnwindResult {
  const returnAddresses: bigint[] = [];
  const fail = (reason: string): UnwindResult => ({ ok: false, reason, partial: returnAddresses });
  let regs: Array<bigint | undefined> = DWARF_REGISTERS.map((name) => registers[name]);
  const stackEnd = stack.start + BigInt(stack.bytes.length);
  const read8 = (addr: bigint): bigint | undefined => {
    if (addr < stack.start || addr + 8n > stackEnd) return undefined;
    return stack.bytes.readBigUInt64LE(Number(addr - stack.start));
  };
  for (let frame = 0; frame < MAX_FRAMES; frame++) {
    const pc = regs[RIP]!;
    // A caller's pc is a return address: the call may be the last
    // instruction of its function (noreturn callee), so look up pc - 1.
    const lookupPc = frame === 0 ? pc : pc - 1n;
    const where = `0x${pc.toString(16)}`;
    const table = lookup.tableFor(lookupPc);
    if (!table) return fail(`no CFI for the code at ${where} (frame ${frame})`);
    let row;
    let signalFrame;
    try {
      const fde = table.find(lookupPc);
      if (!fde) return fail(`no FDE covers ${where} (frame ${frame})`);
      signalFrame = fde.cie.signalFrame;
      if (fde.cie.returnColumn !== RIP) return fail(`the CFI at ${where} uses return column ${fde.cie.returnColumn}`);
      row = table.rowCache.get(lookupPc);
      if (!row) {
        row = cfaRowAt(table, fde, lookupPc);
        table.rowCache.set(lookupPc, row);
      }
    } catch (e) {
      if (e instanceof CfiError) return fail(`bad CFI at ${where}: ${e.message}`);
      throw e;
    }
    if (signalFrame) return fail(`signal frame at ${where}`);
    if (row.cfaRegister === undefined) return fail(`CFA expression at ${where}`);
    if (row.cfaRegister > RIP) return fail(`CFA based on register ${row.cfaRegister} at ${where}`);
    const base = regs[row.cfaRegister];
    if (base === undefined) return fail(`CFA register ${DWARF_REGISTERS[row.cfaRegister]} unknown at ${where}`);
    const cfa = BigInt.asUintN(64, base + row.cfaOffset);
    // Each caller's stack pointer (the CFA) lies above the callee's: no loops.
    if (cfa <= regs[RSP]!) return fail(`CFA 0x${cfa.toString(16)} does not lie above the stack pointer at ${where}`);

    const raRule = row.rules.get(RIP);
    if (raRule?.kind === 'undefined') return { ok: true, returnAddresses }; // the outermost frame
    const caller: Array<bigint | undefined> = new Array(DWARF_REGISTERS.length).fill(undefined);
    for (let r = 0; r <= RIP; r++) {
      if (r === RSP) continue;
      const rule: RegisterRule | undefined = row.rules.get(r);
      if (!rule) {
        if (CALLEE_SAVED.has(r)) caller[r] = regs[r];
        continue;
      }
      switch (rule.kind) {
        case 'undefined':
          break;
        case 'same':
          caller[r] = regs[r];
          break;
        case 'offset': {
          const value = read8(BigInt.asUintN(64, cfa + rule.offset));
          if (value === undefined) return fail(`${DWARF_REGISTERS[r]} saved outside the stack at ${where}`);
          caller[r] = value;
          break;
        }
        case 'val-offset':
          caller[r] = BigInt.asUintN(64, cfa + rule.offset);
          break;
        case 'register':
          caller[r] = rule.register <= RIP ? regs[rule.register] : undefined;
          break;
        case 'expression':
          // Only registers the walk needs must be recoverable.
          if (CALLEE_SAVED.has(r) || r === RIP) return fail(`${DWARF_REGISTERS[r]} has a DWARF expression rule at ${where}`);
          break;
      }
    }
    const ra = caller[RIP];
    if (ra === undefined) return fail(`no return address rule at ${where}`);
    if (ra === 0n) return { ok: true, returnAddresses }; // a zeroed return address ends the chain
    if (lookup.followsCall && !lookup.followsCall(ra)) {
      return fail(`the return address 0x${ra.toString(16)} found for ${where} does not follow a call`);
    }
    caller[RSP] = cfa;
    returnAddresses.push(ra);
    regs = caller;
  }
  return fail(`more than ${MAX_FRAMES} frames`);
}
