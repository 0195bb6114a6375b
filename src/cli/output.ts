// How commands talk to people and machines: plain sentences on stdout, or
// one JSON object with --json; failures as "tsplice: error [code]: message".

import { asTspliceError, type TspliceError } from '../errors.js';

export interface Output {
  json: boolean;
  /** A line for people (suppressed under --json). */
  say(line: string): void;
  /** The command's machine-readable result (printed only under --json). */
  result(value: unknown): void;
}

export function makeOutput(json: boolean): Output {
  return {
    json,
    say: (line) => {
      if (!json) process.stdout.write(line + '\n');
    },
    result: (value) => {
      if (json) process.stdout.write(JSON.stringify(value, bigintReplacer, 2) + '\n');
    },
  };
}

export function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? '0x' + value.toString(16) : value;
}

/** Report a failure; returns the process exit code. */
export function reportError(e: unknown, json: boolean): number {
  const err: TspliceError = asTspliceError(e);
  if (json) {
    process.stdout.write(JSON.stringify({ ok: false, error: { code: err.code, message: err.message, ...err.details } },
      bigintReplacer, 2) + '\n');
  } else {
    process.stderr.write(`tsplice: error [${err.code}]: ${err.message}\n`);
    if (err.code === 'internal' && e instanceof Error && process.env.TSPLICE_DEBUG) process.stderr.write(`${e.stack}\n`);
  }
  return 1;
}
