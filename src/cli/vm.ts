// tsplice vm run [--copy PATH]... [--memory MB] [--timeout SECONDS] [--json] -- COMMAND...
//
// Boot the pinned distribution kernel in a throwaway QEMU guest with tsplice
// inside, run COMMAND there, pass its output and exit status back.

import { TspliceError } from '../errors.js';
import { vmRun } from '../targets/kernel/vm/index.js';
import { intOption, parseCommand, stringOption } from './args.js';
import type { Output } from './output.js';

export const VM_USAGE =
  'tsplice vm run [--copy PATH]... [--memory MB] [--cpus N] [--timeout SECONDS] [--module NAME]... [--json] -- COMMAND...';

export async function vmCommand(argv: string[], out: Output): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'run') throw new TspliceError('bad_input', `vm: unknown subcommand ${sub ?? '(none)'}\nusage: ${VM_USAGE}`);
  const dashdash = rest.indexOf('--');
  const options = dashdash < 0 ? rest : rest.slice(0, dashdash);
  const command = dashdash < 0 ? [] : rest.slice(dashdash + 1);
  const p = parseCommand('vm run', options, {
    copy: { type: 'string', multiple: true },
    module: { type: 'string', multiple: true },
    memory: { type: 'string' },
    cpus: { type: 'string' },
    timeout: { type: 'string' },
    'kernel-arg': { type: 'string', multiple: true },
    json: { type: 'boolean' },
  }, VM_USAGE);
  if (command.length === 0 || p.positionals.length > 0) {
    throw new TspliceError('bad_input', `vm run needs a command after --\nusage: ${VM_USAGE}`);
  }
  const list = (name: string): string[] => (p.values[name] as string[] | undefined) ?? [];
  const result = await vmRun({
    command,
    copy: list('copy'),
    modules: list('module'),
    kernelArgs: list('kernel-arg'),
    memoryMb: p.values.memory === undefined ? undefined : intOption(p, 'memory', 1024, 256),
    cpus: p.values.cpus === undefined ? undefined : intOption(p, 'cpus', 2, 1),
    timeoutMs: stringOption(p, 'timeout') === undefined ? undefined : intOption(p, 'timeout', 300, 1) * 1000,
    // Stream the command's output live to a person; collect it for --json.
    quiet: out.json,
  });
  out.result({
    ok: result.exitCode === 0, exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr,
    release: result.release, bootMs: result.bootMs, totalMs: result.totalMs,
  });
  return result.exitCode;
}
