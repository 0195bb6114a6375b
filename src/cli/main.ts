// tsplice command line: dispatch to one command per file.

import { TspliceError } from '../errors.js';
import { HelpShown } from './args.js';
import { inspectCommand } from './inspect.js';
import { makeOutput, reportError, type Output } from './output.js';

type Command = (argv: string[], out: Output) => number | Promise<number>;

const COMMANDS: Record<string, { run: () => Promise<Command>; summary: string }> = {
  create: { run: async () => (await import('./create.js')).createCommand, summary: 'build an update from a patch and the source' },
  inspect: { run: async () => inspectCommand, summary: 'show what an update changes and why' },
  apply: { run: async () => (await import('./apply.js')).applyCommand, summary: 'apply an update to running processes (or the kernel)' },
  undo: { run: async () => (await import('./undo.js')).undoCommand, summary: 'take an applied update back' },
  list: { run: async () => (await import('./list.js')).listCommand, summary: 'list the updates applied to a process' },
  demo: { run: async () => (await import('./demo.js')).demoCommand, summary: 'live demo: patch a running server without restarting it' },
  vm: { run: async () => (await import('./vm.js')).vmCommand, summary: 'run a command in a throwaway VM of the target kernel' },
};

const HELP = `tsplice: rebootless, restartless security updates for Linux

usage: tsplice COMMAND [options]

${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`).join('\n')}

Every command takes --json for machine-readable output. Run tsplice COMMAND --help for its options.
`;

export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  try {
    if (!command) throw new TspliceError('bad_input', `unknown command "${name}"; run tsplice --help for the list`);
    const run = await command.run();
    return await run(rest, makeOutput(json));
  } catch (e) {
    if (e instanceof HelpShown) return 0;
    return reportError(e, json);
  }
}
