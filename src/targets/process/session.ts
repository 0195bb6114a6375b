// A ptrace session on every thread of one process.
//
// Threads are PTRACE_SEIZEd (not PTRACE_ATTACHed): seizing does not stop them,
// PTRACE_INTERRUPT stops them without a signal the program could see, and the
// stops are invisible to the real parent. PTRACE_O_TRACECLONE makes threads
// created later start traced and stopped, so a freeze cannot miss them.
//
// While seized but not frozen, signals sent to the target pass through us:
// a timer (only while Node's event loop runs) and every session call re-inject
// them at once, so the program sees each signal exactly once.
//
// Every wait is a WNOHANG poll with a deadline: a thread that exits, a process
// that dies or a thread stuck in uninterruptible sleep ends in a clear error,
// never a hang.
import { existsSync, readFileSync } from 'node:fs';
import { TspliceError } from '../../errors.js';
import {
  ECHILD,
  ESRCH,
  PTRACE_CONT,
  PTRACE_DETACH,
  PTRACE_EVENT_CLONE,
  PTRACE_EVENT_EXEC,
  PTRACE_EVENT_STOP,
  PTRACE_GETEVENTMSG,
  PTRACE_INTERRUPT,
  PTRACE_LISTEN,
  PTRACE_O_TRACECLONE,
  PTRACE_O_TRACEEXEC,
  PTRACE_SEIZE,
  PTRACE_SINGLESTEP,
  SIGSTOP,
  SIGTRAP,
  SIGTSTP,
  SIGTTIN,
  SIGTTOU,
  WNOHANG,
  ptrace,
  ptraceError,
  ptraceWithBuffer,
  runAsRealtime,
  tgkill,
  waitpid,
  wExitStatus,
  wPtraceEvent,
  wStopSig,
  wTermSig,
  wifExited,
  wifSignaled,
  wifStopped,
} from './libc.js';
import { ProcessMemory } from './memory.js';
import { getRegisters, setRegisters, type Registers } from './regs.js';
import { listThreadIds, statusField, threadName } from './threads.js';

/**
 * running: executing (or blocked in the kernel) under our trace.
 * stopping: PTRACE_INTERRUPT sent, stop not yet collected.
 * starting: a new clone whose first stop is not yet collected.
 * stopped: in a ptrace-stop, registers readable.
 */
type ThreadState = 'running' | 'stopping' | 'starting' | 'stopped';

interface TracedThread {
  tid: number;
  state: ThreadState;
  /** Stopped by job control (SIGSTOP & co.): resume with PTRACE_LISTEN so it stays stopped. */
  groupStop: boolean;
  /** The current stop is a signal-delivery-stop (a signal can be injected on resume). */
  signalStop: boolean;
  /** Signals held back while we ran code in the thread; delivered on resume. */
  heldSignals: number[];
}

export interface StoppedThread {
  tid: number;
  name: string;
  regs: Registers;
}

export interface SessionOptions {
  /** How long a thread may take to stop before the freeze gives up (default 2000 ms). */
  stopTimeoutMs?: number;
  /** How often pending signals are passed on while seized and not frozen (default 5 ms). */
  pumpIntervalMs?: number;
}

/**
 * Processes this Node process has a session on. ptrace state belongs to the
 * whole tracer process, so this is process-wide too: it tells a thread that
 * TRACECLONE attached to our session from one traced by another session.
 */
const sessionPids = new Set<number>();

const JOB_CONTROL_STOPS = new Set([SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU]);

/** Sleep without yielding to the event loop: the freeze must stay synchronous. */
function pauseMicroseconds(us: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, us / 1000);
}

export class ProcessSession {
  readonly pid: number;
  readonly memory: ProcessMemory;
  private readonly threads = new Map<number, TracedThread>();
  private readonly stopTimeoutMs: number;
  private frozen = false;
  /** Ends the real-time priority taken for the freeze. */
  private endRealtime: (() => void) | undefined;
  /** Thread names, read outside the freeze (they rarely change). */
  private readonly names = new Map<number, string>();
  private attached = true;
  private pump: NodeJS.Timeout | undefined;

  private constructor(pid: number, memory: ProcessMemory, options: SessionOptions) {
    this.pid = pid;
    this.memory = memory;
    this.stopTimeoutMs = options.stopTimeoutMs ?? 2000;
    const interval = options.pumpIntervalMs ?? 5;
    this.pump = setInterval(() => {
      try {
        this.passEvents();
      } catch {
        // A gone target is reported by the next explicit call.
      }
    }, interval);
    this.pump.unref();
  }

  /** Seize every thread of pid. Threads keep running. */
  static attach(pid: number, options: SessionOptions = {}): ProcessSession {
    if (sessionPids.has(pid)) {
      throw new TspliceError('permission', `process ${pid} is already being traced by this tsplice process ` +
        '(another operation on it is in progress); wait for it to finish', { pid });
    }
    checkAttachable(pid);
    const memory = new ProcessMemory(pid);
    const session = new ProcessSession(pid, memory, options);
    sessionPids.add(pid);
    try {
      session.seizeNewThreads();
      if (session.threads.size === 0) {
        throw new TspliceError('target_gone', `process ${pid} exited while tsplice attached to it`, { pid });
      }
    } catch (e) {
      session.detach();
      throw e;
    }
    return session;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  get isAttached(): boolean {
    return this.attached;
  }

  threadIds(): number[] {
    return [...this.threads.keys()].sort((a, b) => a - b);
  }

  /**
   * Stop every thread (including threads created meanwhile) and read their
   * registers. Fails with code_busy if a thread does not stop in time (it is
   * in uninterruptible sleep), target_gone if the process exits.
   */
  freeze(): StoppedThread[] {
    this.requireAttached();
    if (this.frozen) throw new TspliceError('internal', `process ${this.pid} is already frozen`);
    this.endRealtime = runAsRealtime();
    try {
      this.interruptAndCollect(this.stopTimeoutMs);
      this.frozen = true;
      return this.threadIds().map((tid) => this.describe(tid));
    } catch (e) {
      this.resumeStopped();
      this.leaveRealtime();
      throw e;
    }
  }

  /** Let every thread run again. */
  resume(): void {
    this.requireAttached();
    try {
      this.resumeStopped();
    } finally {
      this.frozen = false;
      this.leaveRealtime();
    }
    this.passEvents();
  }

  private leaveRealtime(): void {
    this.endRealtime?.();
    this.endRealtime = undefined;
  }

  /**
   * Stop one thread, for running code in it, and return it; the others keep
   * running. When frozen, returns a frozen thread. Call resume() afterwards
   * (when not frozen) to let it go.
   */
  stopOneThread(): StoppedThread {
    this.requireAttached();
    this.passEvents();
    for (const thread of this.threads.values()) {
      if (thread.state === 'stopped') return this.describe(thread.tid);
    }
    for (const tid of this.threadIds()) {
      const thread = this.threads.get(tid);
      if (!thread || thread.state !== 'running') continue;
      if (!this.interrupt(thread)) continue;
      this.collect(new Set([tid]), Math.min(this.stopTimeoutMs, 200), false);
      if (this.threads.get(tid)?.state === 'stopped') return this.describe(tid);
    }
    if (this.threads.size === 0 || isExiting(this.pid, this.pid)) throw this.goneError('stopping a thread');
    throw new TspliceError('code_busy', `no thread of process ${this.pid} could be stopped; try again later`, {
      pid: this.pid,
    });
  }

  registers(tid: number): Registers {
    const regs = getRegisters(tid);
    if (typeof regs === 'number') throw this.ptraceFailure('PTRACE_GETREGS', tid, regs);
    return regs;
  }

  setRegisters(tid: number, regs: Registers): void {
    const errno = setRegisters(tid, regs);
    if (errno !== 0) throw this.ptraceFailure('PTRACE_SETREGS', tid, errno);
  }

  /**
   * Execute one instruction in a stopped thread and wait until it stops again.
   * Signals that arrive meanwhile are held and delivered when the thread resumes.
   */
  singleStep(tid: number): void {
    const thread = this.threads.get(tid);
    if (thread?.state !== 'stopped') throw new TspliceError('internal', `thread ${tid} is not stopped`);
    const deadline = Date.now() + this.stopTimeoutMs;
    let { errno } = ptrace(PTRACE_SINGLESTEP, tid, 0n, 0n);
    if (errno !== 0) throw this.ptraceFailure('PTRACE_SINGLESTEP', tid, errno);
    thread.state = 'running';
    for (;;) {
      const w = waitpid(tid, WNOHANG);
      if (w.pid === 0) {
        if (Date.now() > deadline) {
          throw new TspliceError('internal', `thread ${tid} of process ${this.pid} did not finish a single step in time`, {
            pid: this.pid,
            tid,
          });
        }
        pauseMicroseconds(20);
        continue;
      }
      if (w.pid === -1) throw this.goneError(`waiting for thread ${tid}`);
      if (wifExited(w.status) || wifSignaled(w.status)) {
        this.threads.delete(tid);
        throw this.goneError(`a single step in thread ${tid}`, w.status);
      }
      const signal = wStopSig(w.status);
      const event = wPtraceEvent(w.status);
      if (event === 0 && signal === SIGTRAP) {
        thread.state = 'stopped';
        thread.signalStop = true;
        return;
      }
      if (event === PTRACE_EVENT_EXEC) throw this.execError(tid);
      // Any other stop before the step completed: hold a signal back, step again.
      if (event === 0) thread.heldSignals.push(signal);
      ({ errno } = ptrace(PTRACE_SINGLESTEP, tid, 0n, 0n));
      if (errno !== 0) throw this.ptraceFailure('PTRACE_SINGLESTEP', tid, errno);
    }
  }

  /**
   * End the session: every thread is stopped briefly and detached, so it
   * continues with no signal and its interrupted system call restarts. Never
   * throws for a target that is gone.
   */
  detach(): void {
    if (!this.attached) return;
    if (this.pump) clearInterval(this.pump);
    this.pump = undefined;
    try {
      this.interruptAndCollect(this.stopTimeoutMs);
    } catch {
      // Collect what is still on its way to a stop (interrupted, or a new clone), so that it can be
      // detached too: a thread left traced by a long-lived tracer would stay stopped for good.
      const pending = new Set([...this.threads.values()].filter((t) => t.state !== 'stopped').map((t) => t.tid));
      try {
        for (const tid of pending) {
          const thread = this.threads.get(tid);
          if (thread?.state === 'running') this.interrupt(thread);
        }
        this.collect(pending, 500, false);
      } catch {
        // A thread that never stopped is detached by the kernel when tsplice exits.
      }
    }
    for (const thread of this.threads.values()) {
      if (thread.state !== 'stopped') continue;
      const signal = thread.signalStop && thread.heldSignals.length > 0 ? thread.heldSignals.shift()! : 0;
      ptrace(PTRACE_DETACH, thread.tid, 0n, BigInt(signal));
      for (const held of thread.heldSignals) tgkill(this.pid, thread.tid, held);
    }
    this.threads.clear();
    this.attached = false;
    sessionPids.delete(this.pid);
    this.frozen = false;
    this.leaveRealtime();
    this.memory.close();
  }

  // ---- internals ----

  private describe(tid: number): StoppedThread {
    let name = this.names.get(tid);
    if (name === undefined) {
      name = threadName(this.pid, tid);
      this.names.set(tid, name);
    }
    return { tid, name, regs: this.registers(tid) };
  }

  private requireAttached(): void {
    if (!this.attached) throw new TspliceError('internal', `session on process ${this.pid} is already detached`);
  }

  /** Seize threads listed in /proc/PID/task we do not trace yet, until a scan finds none. */
  private seizeNewThreads(): number[] {
    const added: number[] = [];
    for (;;) {
      let fresh = 0;
      for (const tid of listThreadIds(this.pid)) {
        if (this.threads.has(tid)) continue;
        const { errno } = ptrace(PTRACE_SEIZE, tid, 0n, BigInt(PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC));
        if (errno === ESRCH) continue; // exited between the listing and the seize
        if (isExiting(this.pid, tid)) continue; // a zombie cannot be traced, and needs no freezing
        if (errno !== 0 && tracedByUs(this.pid, tid)) {
          // Cloned by a thread we trace (TRACECLONE attached it) before its clone event was collected:
          // it is ours already, and starts with a stop of its own to collect.
          this.threads.set(tid, newThread(tid, 'starting'));
          added.push(tid);
          fresh++;
          continue;
        }
        if (errno !== 0) throw attachError(this.pid, tid, errno);
        this.threads.set(tid, newThread(tid, 'running'));
        if (!this.frozen) this.names.set(tid, threadName(this.pid, tid));
        added.push(tid);
        fresh++;
      }
      if (fresh === 0) return added;
    }
  }

  /** PTRACE_INTERRUPT one running thread; false if it has gone. */
  private interrupt(thread: TracedThread): boolean {
    const { errno } = ptrace(PTRACE_INTERRUPT, thread.tid);
    if (errno === 0) {
      thread.state = 'stopping';
      return true;
    }
    if (errno === ESRCH) {
      this.reapIfGone(thread.tid);
      return false;
    }
    throw this.ptraceFailure('PTRACE_INTERRUPT', thread.tid, errno);
  }

  /** Interrupt everything that runs, collect all stops, repeat for threads found meanwhile. */
  private interruptAndCollect(timeoutMs: number): void {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const thread of [...this.threads.values()]) {
        if (thread.state === 'running') this.interrupt(thread);
      }
      const waiting = new Set([...this.threads.values()].filter((t) => t.state !== 'stopped').map((t) => t.tid));
      this.collect(waiting, Math.max(0, deadline - Date.now()), true);
      // Threads cloned by a thread we had not seized yet (attach race).
      const added = this.seizeNewThreads();
      if (added.length === 0 && [...this.threads.values()].every((t) => t.state === 'stopped')) break;
    }
    if (this.threads.size === 0) throw this.goneError('freezing its threads');
  }

  /**
   * Wait until every thread in `waiting` (plus clones announced meanwhile)
   * is stopped or gone. With mustAll, a thread that does not stop in time is
   * code_busy; otherwise the caller checks states itself.
   */
  private collect(waiting: Set<number>, timeoutMs: number, mustAll: boolean): void {
    const deadline = Date.now() + timeoutMs;
    let idleSweeps = 0;
    while (waiting.size > 0) {
      let progressed = false;
      for (const tid of [...waiting]) {
        const w = waitpid(tid, WNOHANG);
        if (w.pid === 0) continue;
        progressed = true;
        if (w.pid === -1) {
          if (w.errno === ECHILD) this.forget(tid);
          waiting.delete(tid);
          continue;
        }
        const child = this.handleStatus(tid, w.status, true);
        if (child !== undefined) waiting.add(child);
        if (this.threads.get(tid)?.state !== 'stopping' && this.threads.get(tid)?.state !== 'starting') waiting.delete(tid);
      }
      if (progressed) {
        idleSweeps = 0;
        continue;
      }
      if (Date.now() > deadline) {
        if (!mustAll) return;
        const [tid] = waiting;
        const state = statusField(`/proc/${this.pid}/task/${tid}`, 'State') ?? 'unknown';
        throw new TspliceError(
          'code_busy',
          `thread ${tid} (${threadName(this.pid, tid)}) of process ${this.pid} did not stop within ${timeoutMs} ms ` +
            `(state: ${state}); it may be in uninterruptible sleep. Try again later.`,
          { pid: this.pid, tid, threadName: threadName(this.pid, tid), state },
        );
      }
      if (++idleSweeps > 2) pauseMicroseconds(20);
    }
  }

  /**
   * Act on one wait status. `wantStopped`: we are stopping threads and keep
   * a thread that reaches an interrupt stop; otherwise it keeps running.
   * Returns the tid of a new thread to wait for, if the status announced one.
   */
  private handleStatus(tid: number, status: number, wantStopped: boolean): number | undefined {
    const thread = this.threads.get(tid);
    if (!thread) return undefined;
    if (wifExited(status) || wifSignaled(status)) {
      this.threads.delete(tid);
      if (this.threads.size === 0 || (tid === this.pid && !existsSync(`/proc/${this.pid}/task`))) {
        throw this.goneError('the operation', status);
      }
      return undefined;
    }
    if (!wifStopped(status)) return undefined;
    const signal = wStopSig(status);
    const event = wPtraceEvent(status);
    if (event === PTRACE_EVENT_CLONE) {
      const child = this.adoptClone(tid);
      // Let the parent finish clone(). Any ptrace trap clears a pending PTRACE_INTERRUPT, so a thread we
      // are stopping is interrupted again: it stops as soon as clone() has returned to user space, a clean
      // stop in which system calls can be injected (unlike this one, inside clone()).
      this.continueThread(thread, 0);
      if (wantStopped) this.reinterrupt(thread);
      return child;
    }
    if (event === PTRACE_EVENT_EXEC) throw this.execError(tid);
    if (event === PTRACE_EVENT_STOP) {
      const jobControl = JOB_CONTROL_STOPS.has(signal);
      if (wantStopped) {
        thread.state = 'stopped';
        thread.groupStop = jobControl;
        thread.signalStop = false;
      } else {
        // Someone stopped the process (SIGSTOP): keep it stopped as they asked.
        if (jobControl) ptrace(PTRACE_LISTEN, tid);
        else this.continueThread(thread, 0);
        thread.state = 'running';
      }
      return undefined;
    }
    if (event === 0) {
      if (wantStopped) {
        // A signal on its way to the program while we stop the thread: held back and sent again when the
        // thread resumes; this trap cleared our pending interrupt, so interrupt again.
        thread.heldSignals.push(signal);
        this.continueThread(thread, 0);
        this.reinterrupt(thread);
      } else {
        // Pass it on untouched.
        this.continueThread(thread, signal);
      }
    }
    return undefined;
  }

  /** PTRACE_INTERRUPT a thread that is still on its way to the stop we want. */
  private reinterrupt(thread: TracedThread): void {
    if (!this.threads.has(thread.tid)) return;
    const { errno } = ptrace(PTRACE_INTERRUPT, thread.tid);
    if (errno === ESRCH) this.reapIfGone(thread.tid);
    else if (errno !== 0) throw this.ptraceFailure('PTRACE_INTERRUPT', thread.tid, errno);
  }

  /** A traced thread cloned: trace the child if it belongs to this process. */
  private adoptClone(parentTid: number): number | undefined {
    const msg = Buffer.alloc(8);
    if (ptraceWithBuffer(PTRACE_GETEVENTMSG, parentTid, msg) !== 0) return undefined;
    const childTid = Number(msg.readBigUInt64LE(0));
    if (this.threads.has(childTid)) return undefined;
    if (!existsSync(`/proc/${this.pid}/task/${childTid}`)) {
      // clone() of a new process without SIGCHLD: not ours to trace.
      this.releaseForeignChild(childTid);
      return undefined;
    }
    // It starts in a ptrace-stop of its own, to be collected.
    this.threads.set(childTid, newThread(childTid, 'starting'));
    return childTid;
  }

  private releaseForeignChild(childTid: number): void {
    const deadline = Date.now() + 200;
    while (Date.now() < deadline) {
      const w = waitpid(childTid, WNOHANG);
      if (w.pid === childTid && wifStopped(w.status)) {
        ptrace(PTRACE_DETACH, childTid);
        return;
      }
      if (w.pid === -1) return;
      pauseMicroseconds(50);
    }
  }

  private continueThread(thread: TracedThread, signal: number): void {
    const { errno } = ptrace(PTRACE_CONT, thread.tid, 0n, BigInt(signal));
    if (errno === 0) return;
    if (errno === ESRCH) {
      this.reapIfGone(thread.tid);
      return;
    }
    throw this.ptraceFailure('PTRACE_CONT', thread.tid, errno);
  }

  /** Restart one stopped thread the way it was stopped (job-control stops stay stopped). */
  private restart(thread: TracedThread): void {
    let signal = 0;
    if (thread.signalStop && thread.heldSignals.length > 0) signal = thread.heldSignals.shift()!;
    for (const held of thread.heldSignals.splice(0)) tgkill(this.pid, thread.tid, held);
    const { errno } = thread.groupStop ? ptrace(PTRACE_LISTEN, thread.tid) : ptrace(PTRACE_CONT, thread.tid, 0n, BigInt(signal));
    if (errno !== 0 && errno !== ESRCH) throw this.ptraceFailure('resume', thread.tid, errno);
    thread.state = 'running';
    thread.signalStop = false;
    if (errno === ESRCH) this.reapIfGone(thread.tid);
  }

  private resumeStopped(): void {
    for (const thread of [...this.threads.values()]) {
      if (thread.state === 'stopped') this.restart(thread);
    }
  }

  /** Pass on whatever happened to running threads (signals, clones, exits). */
  private passEvents(): void {
    if (!this.attached || this.frozen) return;
    for (const thread of [...this.threads.values()]) {
      if (thread.state === 'stopped') continue;
      for (;;) {
        const w = waitpid(thread.tid, WNOHANG);
        if (w.pid === 0) break;
        if (w.pid === -1) {
          if (w.errno === ECHILD) this.forget(thread.tid);
          break;
        }
        const child = this.handleStatus(thread.tid, w.status, false);
        if (child !== undefined) this.startClone(child);
        if (!this.threads.has(thread.tid)) break;
      }
    }
  }

  /** A new thread while not frozen: collect its first stop and let it run. */
  private startClone(tid: number): void {
    const thread = this.threads.get(tid);
    if (!thread) return;
    this.collect(new Set([tid]), this.stopTimeoutMs, false);
    if (thread.state !== 'stopped') return;
    this.continueThread(thread, 0);
    thread.state = 'running';
  }

  private reapIfGone(tid: number): void {
    const w = waitpid(tid, WNOHANG);
    if (w.pid === -1 || (w.pid === tid && (wifExited(w.status) || wifSignaled(w.status)))) this.forget(tid);
    else if (!existsSync(`/proc/${this.pid}/task/${tid}`)) this.forget(tid);
  }

  private forget(tid: number): void {
    this.threads.delete(tid);
    this.names.delete(tid);
  }

  private ptraceFailure(what: string, tid: number, errno: number): TspliceError {
    if (errno === ESRCH) return this.goneError(what);
    return ptraceError(what, this.pid, tid, errno);
  }

  private goneError(during: string, status?: number): TspliceError {
    let how = 'exited';
    if (status !== undefined && wifSignaled(status)) how = `was killed by signal ${wTermSig(status)}`;
    else if (status !== undefined && wifExited(status)) how = `exited with status ${wExitStatus(status)}`;
    return new TspliceError('target_gone', `process ${this.pid} ${how} during ${during}; nothing was changed in it`, {
      pid: this.pid,
    });
  }

  private execError(tid: number): TspliceError {
    ptrace(PTRACE_DETACH, tid);
    return new TspliceError(
      'target_gone',
      `process ${this.pid} replaced its program (execve) while tsplice was working on it; run the command again on the new program`,
      { pid: this.pid },
    );
  }
}

function newThread(tid: number, state: ThreadState): TracedThread {
  return { tid, state, groupStop: false, signalStop: false, heldSignals: [] };
}

/** Refuse early, with a clear reason, what cannot be traced. */
function checkAttachable(pid: number): void {
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new TspliceError('bad_input', `"${pid}" is not a process id`, { pid });
  }
  if (pid === process.pid) throw new TspliceError('bad_input', 'tsplice cannot patch itself', { pid });
  const proc = `/proc/${pid}`;
  if (!existsSync(proc)) {
    throw new TspliceError('target_gone', `no process with id ${pid} (it is not running, or it has exited); check the pid with ps`, {
      pid,
    });
  }
  const state = statusField(proc, 'State') ?? '';
  if (state.startsWith('Z') || state.startsWith('X')) {
    throw new TspliceError('target_gone', `process ${pid} has already exited (zombie)`, { pid });
  }
  let maps = '';
  try {
    maps = readFileSync(`${proc}/maps`, 'utf8');
  } catch {
    // reported below as a kernel thread or missing permission
  }
  if (maps === '') {
    throw new TspliceError('bad_input', `process ${pid} has no user memory (a kernel thread?); use --kernel for the kernel`, {
      pid,
    });
  }
}

function isExiting(pid: number, tid: number): boolean {
  const state = statusField(`/proc/${pid}/task/${tid}`, 'State');
  return state === undefined || state.startsWith('Z') || state.startsWith('X');
}

function attachError(pid: number, tid: number, errno: number): TspliceError {
  const tracer = Number(statusField(`/proc/${pid}/task/${tid}`, 'TracerPid') ?? '0');
  if (tracer !== 0) {
    const name = tracer === process.pid ? 'this tsplice process' : `process ${tracer} (${commOf(tracer)})`;
    return new TspliceError(
      'permission',
      `process ${pid} is already being traced by ${name}; a debugger or strace must detach before tsplice can patch it`,
      { pid, tid, tracerPid: tracer },
    );
  }
  return ptraceError('PTRACE_SEIZE', pid, tid, errno);
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trimEnd();
  } catch {
    return '?';
  }
}

/** The thread is already traced by this process (attached through TRACECLONE). */
function tracedByUs(pid: number, tid: number): boolean {
  return Number(statusField(`/proc/${pid}/task/${tid}`, 'TracerPid') ?? '0') === process.pid;
}
