// tsplice create --patch FILE [--build CMD] [--id ID] [-o DIR] SRC_DIR

import { TspliceError } from '../errors.js';
import { createProgress } from '../progress.js';
import { createUpdate } from '../update/create.js';
import { intOption, type Parsed, parseCommand, stringOption } from './args.js';
import type { Output } from './output.js';

export const CREATE_USAGE = 'tsplice create --patch FILE [--build CMD] [--id ID] [-o DIR] [--jobs N] [--json] SRC_DIR\n' +
  '       tsplice create --kernel --patch FILE [--source DIR] [--config FILE] [--kernel-release REL] [--id ID] [-o DIR] [--json]';

export async function createCommand(argv: string[], out: Output): Promise<number> {
  const p = parseCommand('create', argv, {
    patch: { type: 'string' },
    build: { type: 'string' },
    id: { type: 'string' },
    output: { type: 'string', short: 'o' },
    jobs: { type: 'string', short: 'j' },
    'keep-work': { type: 'boolean' },
    json: { type: 'boolean' },
    kernel: { type: 'boolean' },
    source: { type: 'string' },
    config: { type: 'string' },
    'kernel-release': { type: 'string' },
  }, CREATE_USAGE);
  const patchFile = stringOption(p, 'patch');
  if (!patchFile) throw new TspliceError('bad_input', `create needs --patch FILE\nusage: ${CREATE_USAGE}`);
  if (p.values.kernel === true) return createKernelCommand(p, patchFile, out);
  for (const option of ['source', 'config', 'kernel-release']) {
    if (p.values[option] !== undefined) throw new TspliceError('bad_input', `--${option} goes with --kernel\nusage: ${CREATE_USAGE}`);
  }
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

/** The kernel branch: a livepatch module for the pinned distribution kernel (see targets/kernel/create.ts). */
async function createKernelCommand(p: Parsed, patchFile: string, out: Output): Promise<number> {
  if (p.positionals.length > 0 || p.values.build !== undefined || p.values.jobs !== undefined) {
    throw new TspliceError('bad_input', `create --kernel takes no SRC_DIR, --build or --jobs (use --source DIR)\nusage: ${CREATE_USAGE}`);
  }
  const { createKernelUpdate } = await import('../targets/kernel/create.js');
  const result = await createKernelUpdate({
    patchFile,
    sourceDir: stringOption(p, 'source'),
    config: stringOption(p, 'config'),
    kernelRelease: stringOption(p, 'kernel-release'),
    id: stringOption(p, 'id'),
    outDir: stringOption(p, 'output') ?? '.',
    keepWorkDir: p.values['keep-work'] === true,
    progress: createProgress({ quiet: out.json }),
  });
  const { manifest } = result;
  const target = manifest.target.kind === 'kernel' ? manifest.target : undefined;
  out.result({
    ok: true, id: manifest.id, path: result.path, seconds: result.seconds, kernel: target?.release,
    module: result.moduleName, prepareSeconds: result.prepareSeconds,
    changes: manifest.functions.map((f) => ({
      object: f.object, unit: f.unit, function: f.function, kind: f.kind, reason: f.reason, sympos: f.sympos,
    })),
  });
  out.say(`created kernel update ${manifest.id} for ${target?.release}: ${result.path} (livepatch module ` +
    `${result.moduleName}, ${result.seconds.toFixed(1)} s)`);
  for (const f of manifest.functions) {
    const pos = f.sympos ? ` #${f.sympos}` : '';
    out.say(`  ${f.kind.padEnd(8)} ${f.object}: ${f.function}${pos} (${f.reason})`);
  }
  return 0;
}
