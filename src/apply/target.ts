// What the switch engine needs from a target (a process, or anything else
// with threads and code): nothing more.

/** A thread as seen while the target is frozen. */
export interface FrozenThread {
  tid: number;
  name: string;
  /** Instruction pointer. */
  ip: bigint;
  /** Stack memory to scan: from the stack pointer up to the end of its stack; undefined if unknown. */
  stack?: { start: bigint; end: bigint };
  /**
   * The return address of every caller frame, innermost first, when the
   * target unwound the whole stack with trustworthy unwind information: the
   * stack check then looks at these only. Undefined: scan every stack word.
   */
  returnAddresses?: bigint[];
  /** Why the unwind was not trusted (for diagnostics), when it was tried. */
  unwindFailure?: string;
}

export interface SwitchTarget {
  /** Human name for messages, e.g. "process 1234". */
  readonly label: string;
  read(addr: bigint, length: number): Buffer;
  write(addr: bigint, bytes: Uint8Array): void;
  /** Slow preparation outside the freeze (e.g. reading the memory layout). */
  prepare?(): void;
  /** Stop every thread; the freeze starts here. */
  freeze(): FrozenThread[];
  /** The bytes of thread.stack (only called while frozen). */
  readStack(thread: FrozenThread): Buffer;
  /** Let every thread run again; the freeze ends when this returns. */
  resume(): void;
}
