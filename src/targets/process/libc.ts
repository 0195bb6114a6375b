// The few libc entry points the process back end needs, bound through koffi.
// All calls are synchronous on purpose: a ptrace tracer is a *thread*, and
// every request must come from the thread that attached (Node's main thread).
import koffi from 'koffi';
import { TspliceError } from '../../errors.js';

export const PTRACE_CONT = 7;
export const PTRACE_SINGLESTEP = 9;
export const PTRACE_GETREGS = 12;
export const PTRACE_SETREGS = 13;
export const PTRACE_DETACH = 17;
export const PTRACE_GETEVENTMSG = 0x4201;
export const PTRACE_SEIZE = 0x4206;
export const PTRACE_INTERRUPT = 0x4207;
export const PTRACE_LISTEN = 0x4208;

export const PTRACE_O_TRACECLONE = 0x8;
export const PTRACE_O_TRACEEXEC = 0x10;

export const PTRACE_EVENT_CLONE = 3;
export const PTRACE_EVENT_EXEC = 4;
export const PTRACE_EVENT_STOP = 128;

export const WNOHANG = 1;
export const __WALL = 0x40000000;

export const SIGTRAP = 5;
export const SIGSTOP = 19;
export const SIGTSTP = 20;
export const SIGTTIN = 21;
export const SIGTTOU = 22;

export const ESRCH = 3;
export const EINTR = 4;
export const ECHILD = 10;
export const EPERM = 1;
export const EEXIST = 17;
export const ENOMEM = 12;

// Loaded once at import: libc is already mapped into Node, so this is cheap.
const lib = koffi.load('libc.so.6');
const libc = {
  ptraceInt: lib.func('long ptrace(int req, int pid, uintptr_t addr, uintptr_t data)'),
  ptraceBuf: lib.func('ptrace', 'long', ['int', 'int', 'uintptr_t', 'void *']),
  waitpid: lib.func('int waitpid(int pid, void *status, int options)'),
  tgkill: lib.func('int tgkill(int tgid, int tid, int sig)'),
  schedGetScheduler: lib.func('int sched_getscheduler(int pid)'),
  schedGetParam: lib.func('int sched_getparam(int pid, void *param)'),
  schedSetScheduler: lib.func('int sched_setscheduler(int pid, int policy, void *param)'),
} as const;

export function lastErrno(): number {
  return koffi.errno();
}

/** A ptrace request failed: turn errno into the error a user can act on. */
export function ptraceError(what: string, pid: number, tid: number, errno: number): TspliceError {
  if (errno === ESRCH) {
    return new TspliceError('target_gone', `process ${pid} is gone: thread ${tid} exited or was killed during ${what}`, {
      pid,
      tid,
      operation: what,
    });
  }
  if (errno === EPERM) {
    return new TspliceError(
      'permission',
      `not allowed to trace process ${pid} (${what}): run tsplice as root, or check /proc/sys/kernel/yama/ptrace_scope; ` +
        'a debugger or strace already attached to the process also prevents this',
      { pid, tid, operation: what },
    );
  }
  return new TspliceError('internal', `ptrace ${what} on thread ${tid} of process ${pid} failed: errno ${errno}`, {
    pid,
    tid,
    operation: what,
    errno,
  });
}

/** ptrace with integer addr/data; returns the raw result and errno (0 on success). */
export function ptrace(req: number, tid: number, addr: bigint = 0n, data: bigint = 0n): { result: bigint; errno: number } {
  koffi.errno(0);
  const result = BigInt(libc.ptraceInt(req, tid, addr, data));
  return { result, errno: result === -1n ? lastErrno() : 0 };
}

/** ptrace whose data argument is a buffer the kernel reads or fills. */
export function ptraceWithBuffer(req: number, tid: number, data: Buffer): number {
  koffi.errno(0);
  const result = BigInt(libc.ptraceBuf(req, tid, 0n, data));
  return result === -1n ? lastErrno() : 0;
}

export interface WaitResult {
  /** 0 when WNOHANG found nothing; -1 on error (see errno). */
  pid: number;
  status: number;
  errno: number;
}

export function waitpid(tid: number, options: number): WaitResult {
  const statusBuffer = Buffer.alloc(4);
  for (;;) {
    koffi.errno(0);
    const pid = libc.waitpid(tid, statusBuffer, options | __WALL);
    if (pid === -1) {
      const errno = lastErrno();
      if (errno === EINTR) continue;
      return { pid, status: 0, errno };
    }
    return { pid, status: statusBuffer.readInt32LE(0), errno: 0 };
  }
}

/** Queue a signal for one thread; returns errno (0 on success). */
export function tgkill(pid: number, tid: number, signal: number): number {
  koffi.errno(0);
  return libc.tgkill(pid, tid, signal) === -1 ? lastErrno() : 0;
}

const SCHED_FIFO = 1;

/**
 * Run the calling thread under SCHED_FIFO until the returned function is
 * called. During a freeze the tracer competes for CPU with every thread it
 * resumes; as a real-time thread it is not preempted by them, so the last
 * thread is resumed microseconds, not milliseconds, after the first. Without
 * the privilege this is a no-op.
 */
export function runAsRealtime(): () => void {
  const previousPolicy = libc.schedGetScheduler(0);
  const previousParam = Buffer.alloc(4);
  if (previousPolicy < 0 || libc.schedGetParam(0, previousParam) !== 0) return () => undefined;
  const param = Buffer.alloc(4);
  param.writeInt32LE(1, 0);
  if (libc.schedSetScheduler(0, SCHED_FIFO, param) !== 0) return () => undefined;
  return () => {
    libc.schedSetScheduler(0, previousPolicy, previousParam);
  };
}

// Wait-status decoding, as <sys/wait.h>.
export const wifExited = (s: number): boolean => (s & 0x7f) === 0;
export const wifSignaled = (s: number): boolean => (s & 0x7f) !== 0 && (s & 0x7f) !== 0x7f;
export const wifStopped = (s: number): boolean => (s & 0xff) === 0x7f;
export const wStopSig = (s: number): number => (s >> 8) & 0xff;
export const wExitStatus = (s: number): number => (s >> 8) & 0xff;
export const wTermSig = (s: number): number => s & 0x7f;
/** The PTRACE_EVENT_* number of a stop, 0 for a plain signal-delivery stop. */
export const wPtraceEvent = (s: number): number => (s >> 16) & 0xffff;
