// tsplice inspect UPDATE: what an update changes and why.

import { TspliceError } from '../errors.js';
import { readUpdate } from '../update/package.js';
import { parseCommand } from './args.js';
import type { Output } from './output.js';

export const INSPECT_USAGE = 'tsplice inspect UPDATE [--json]';

const KIND_NAMES = { executable: 'executable', shared: 'shared library', vmlinux: 'kernel', module: 'kernel module' } as const;

export function inspectCommand(argv: string[], out: Output): number {
  const p = parseCommand('inspect', argv, { json: { type: 'boolean' } }, INSPECT_USAGE);
  if (p.positionals.length !== 1) {
    throw new TspliceError('bad_input', `inspect takes exactly one update file\nusage: ${INSPECT_USAGE}`);
  }
  const { manifest } = readUpdate(p.positionals[0]);
  const changes = manifest.functions.map((f) => ({
    object: f.object, unit: f.unit, function: f.function, kind: f.kind, reason: f.reason,
    ...(f.sympos !== undefined ? { sympos: f.sympos } : {}),
  }));
  out.result({
    ok: true,
    id: manifest.id,
    format: manifest.format,
    createdAt: manifest.createdAt,
    tool: manifest.tool,
    target: manifest.target,
    patch: manifest.patch,
    objects: manifest.objects,
    changes,
    data: manifest.data,
  });
  out.say(`update ${manifest.id} (made ${manifest.createdAt} by tsplice ${manifest.tool.version})`);
  if (manifest.target.kind === 'kernel') {
    out.say(`for kernel ${manifest.target.release} (${manifest.target.version}), livepatch module ${manifest.target.module.name}`);
  }
  out.say(`patch: ${manifest.patch.file} (${manifest.patch.files.join(', ')})`);
  for (const o of manifest.objects) {
    out.say(`\n${o.name} (${KIND_NAMES[o.kind]}):`);
    for (const f of manifest.functions.filter((x) => x.object === o.name)) {
      const name = f.sympos ? `${f.function},${f.sympos}` : f.function;
      out.say(`  ${f.kind.padEnd(8)} ${name.padEnd(28)} ${f.unit}: ${f.reason}`);
    }
    for (const d of manifest.data.filter((x) => x.object === o.name)) {
      out.say(`  ${d.kind.padEnd(8)} ${d.symbol.padEnd(28)} ${d.unit}: ${d.reason} (data)`);
    }
  }
  if (manifest.functions.length === 0) out.say('\nthis update changes no function');
  return 0;
}
