// Call a function inside the target, in one of its stopped threads: used to
// run a GNU IFUNC resolver (e.g. glibc's strnlen) when new code needs a
// library function the program never called, so the implementation chosen
// is exactly the one the dynamic linker would choose for this CPU.
//
// The call runs on the thread's own stack, well below its red zone, and is
// single-stepped until it returns to a fake return address; the thread's
// registers are restored exactly afterwards.

import { TspliceError } from '../../errors.js';
import { readMaps } from './maps.js';
import type { Registers } from './regs.js';
import { findSyscallInstruction } from './remote-syscall.js';
import type { ProcessSession } from './session.js';

/** IFUNC resolvers run tens to a few thousand instructions; anything longer is not a resolver. */
const MAX_STEPS = 200_000;

/** Run fn(args...) in the target and return its rax. */
export function remoteFunctionCall(session: ProcessSession, fn: bigint, args: bigint[] = []): bigint {
  if (args.length > 6) throw new TspliceError('internal', 'remote calls take at most 6 arguments');
  const wasFrozen = session.isFrozen;
  const thread = session.stopOneThread();
  const saved: Registers = { ...thread.regs };
  try {
    // Any address that is not inside fn serves as the return address: we stop when rip reaches it.
    const returnTo = findSyscallInstruction(session, readMaps(session.pid));
    // Skip the 128-byte red zone and some more; at entry (rsp + 8) must be 16-byte aligned.
    const rsp = ((saved.rsp - 1024n) & ~15n) - 8n;
    const ret = Buffer.alloc(8);
    ret.writeBigUInt64LE(returnTo);
    session.memory.write(rsp, ret);
    const [rdi = 0n, rsi = 0n, rdx = 0n, rcx = 0n, r8 = 0n, r9 = 0n] = args;
    session.setRegisters(thread.tid, { ...saved, rip: fn, rsp, rdi, rsi, rdx, rcx, r8, r9, rax: 0n, orig_rax: -1n });
    for (let step = 0; step < MAX_STEPS; step++) {
      session.singleStep(thread.tid);
      const regs = session.registers(thread.tid);
      if (regs.rip === returnTo && regs.rsp === rsp + 8n) return regs.rax;
    }
    throw new TspliceError('internal',
      `the function at 0x${fn.toString(16)} did not return within ${MAX_STEPS} instructions in process ${session.pid}`,
      { pid: session.pid });
  } finally {
    try {
      session.setRegisters(thread.tid, saved);
    } finally {
      if (!wasFrozen) session.resume();
    }
  }
}
