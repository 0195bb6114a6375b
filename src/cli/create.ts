// tsplice create --patch FILE [--build CMD] [--id ID] [-o DIR] SRC_DIR

import { TspliceError } from '../errors.js';
import { createProgress } from '../progress.js';
import { createUpdate } from '../update/create.js';
import { intOption, parseCommand, stringOption } from './args.js';
import type { Output } from './output.js';

export const CREATE_USAGE = 'tsplice create --patch FILE [--build CMD] [--id ID] [-o DIR] [--jobs N] [--json] SRC_DIR';

export async function createCommand(argv: string[], out: Output): Promise<number> {
  const p = parseCommand('create', argv, {
    patch: { type: 'string' },
    build: { type: 'string' },
    id: { type: 'string' },
    output: { type: 'string', short: 'o' },
    jobs: { type: 'string', short: 'j' },
    'keep-work': { type: 'boolean' },
    json: { type: 'boolean' },
  }, CREATE_USAGE);
  const patchFile = stringOption(p, 'patch');
  if (!patchFile) throw new TspliceError('bad_input', `create needs --patch FILE\nusage: ${CREATE_USAGE}`);
  if (p.positionals.length !== 1) throw new TspliceError('bad_input', `create needs exactly one SRC_DIR\nusage: ${CREATE_USAGE}`);
  const result = await createUpdate({
    srcDir: p.positionals[0],
    patchFile,
    buildCommand: stringOption(p, 'build'),
    id: stringOption(p, 'id'),
    outDir: stringOption(p, 'output') ?? '.',
    jobs: p.values.jobs === undefined ? undefined : intOption(p, 'jobs', 1, 1),
    keepWorkDir: p.values['keep-work'] === true,
    progress: createProgress({ quiet: out.json }),
  });
  const { manifest } = result;
  out.result({
    ok: true, id: manifest.id, path: result.path, seconds: result.seconds,
    objects: manifest.objects.map((o) => o.name),
    changes: manifest.functions.map((f) => ({ object: f.object, unit: f.unit, function: f.function, kind: f.kind, reason: f.reason })),
    unlinkedUnits: result.unlinkedUnits,
  });
  out.say(`created update ${manifest.id}: ${result.path} (${result.seconds.toFixed(1)} s)`);
  for (const f of manifest.functions) out.say(`  ${f.kind.padEnd(8)} ${f.object}: ${f.function} (${f.reason})`);
  for (const u of result.unlinkedUnits) out.say(`  note: ${u} changed but is linked into no executable or library; skipped`);
  return 0;
}
