// Argument parsing shared by the commands (node:util parseArgs, strict).

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TspliceError } from '../errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Thrown after a command printed its usage for --help: the command is done, successfully. */
export class HelpShown extends Error {}

/** Parse a command's arguments; unknown options are a usage error (bad_input) naming the command. */
export function parseCommand(command: string, argv: string[], options: Options, usage: string): Parsed {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`usage: ${usage}\n`);
    throw new HelpShown();
  }
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: values as Parsed['values'], positionals };
  } catch (e) {
    throw new TspliceError('bad_input', `${command}: ${e instanceof Error ? e.message : String(e)}\nusage: ${usage}`);
  }
}

export function stringOption(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function intOption(p: Parsed, name: string, fallback: number, min = 0): number {
  const v = stringOption(p, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new TspliceError('bad_input', `--${name} must be a whole number >= ${min} (got "${v}")`);
  return n;
}
