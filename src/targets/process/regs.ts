// x86-64 struct user_regs_struct (<sys/user.h>), as PTRACE_GETREGS fills it.
import { PTRACE_GETREGS, PTRACE_SETREGS, ptraceWithBuffer } from './libc.js';

export const REGISTER_NAMES = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8',
  'rax', 'rcx', 'rdx', 'rsi', 'rdi', 'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss',
  'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const;

export type RegisterName = (typeof REGISTER_NAMES)[number];
export type Registers = Record<RegisterName, bigint>;

const USER_REGS_SIZE = REGISTER_NAMES.length * 8;

/** Fetch registers of a ptrace-stopped thread; returns errno on failure. */
export function getRegisters(tid: number): Registers | number {
  const raw = Buffer.alloc(USER_REGS_SIZE);
  const errno = ptraceWithBuffer(PTRACE_GETREGS, tid, raw);
  if (errno !== 0) return errno;
  const regs = {} as Registers;
  REGISTER_NAMES.forEach((name, i) => {
    regs[name] = raw.readBigUInt64LE(i * 8);
  });
  return regs;
}

/** Set registers of a ptrace-stopped thread; returns errno (0 on success). */
export function setRegisters(tid: number, regs: Registers): number {
  const raw = Buffer.alloc(USER_REGS_SIZE);
  REGISTER_NAMES.forEach((name, i) => {
    raw.writeBigUInt64LE(BigInt.asUintN(64, regs[name]), i * 8);
  });
  return ptraceWithBuffer(PTRACE_SETREGS, tid, raw);
}
