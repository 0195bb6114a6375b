// Stable error codes, as Ksplice's abort_cause: every failure a user can meet
// carries one, and a message that says what to do next.

export const ERROR_CODES = [
  'no_match',
  'code_busy',
  'bad_input',
  'unsupported_change',
  'target_gone',
  'permission',
  'already_applied',
  'not_applied',
  'out_of_memory',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class TspliceError extends Error {
  readonly code: ErrorCode;
  /** Structured facts about the failure (function, offset, thread, ...) for --json. */
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'TspliceError';
    this.code = code;
    this.details = details;
  }
}

export function isTspliceError(e: unknown): e is TspliceError {
  return e instanceof TspliceError;
}

/** Wrap anything thrown into a TspliceError, keeping typed ones as they are. */
export function asTspliceError(e: unknown): TspliceError {
  if (e instanceof TspliceError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new TspliceError('internal', `internal error: ${message} (please report this with the command you ran)`);
}
