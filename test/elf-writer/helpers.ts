// readelf / objdump views of an object, to check the writer against independent tools.
import { execFileSync, spawnSync } from 'node:child_process';

export interface ReadelfResult {
  stdout: string;
  stderr: string;
}

/** Run readelf; stderr is kept so tests can insist it has nothing to complain about. */
export function readelf(args: string[], path: string): ReadelfResult {
  const r = spawnSync('readelf', [...args, path], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`readelf ${args.join(' ')} ${path} failed: ${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

export interface ReadelfSection {
  index: number;
  name: string;
  type: string;
  offset: number;
  size: number;
  entsize: number;
  flags: string;
  link: number;
  info: number;
  align: number;
}

/** Parse `readelf -W -S` section lines. */
export function readelfSections(stdout: string): ReadelfSection[] {
  const sections: ReadelfSection[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^\s*\[\s*(\d+)\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2].trim().split(/\s+/);
    if (Number(m[1]) === 0) continue;
    const [name, type, , off, size, es] = f;
    const rest = f.slice(6);
    const flags = rest.length === 4 ? rest[0] : '';
    const [lk, inf, al] = rest.slice(rest.length - 3);
    sections.push({
      index: Number(m[1]), name, type, offset: parseInt(off, 16), size: parseInt(size, 16),
      entsize: parseInt(es, 16), flags, link: Number(lk), info: Number(inf), align: Number(al),
    });
  }
  return sections;
}

export interface ReadelfSymbol {
  index: number;
  value: bigint;
  size: number;
  type: string;
  bind: string;
  vis: string;
  ndx: string;
  name: string;
}

/** Parse `readelf -W -s` lines of .symtab. */
export function readelfSymbols(stdout: string): ReadelfSymbol[] {
  const out: ReadelfSymbol[] = [];
  for (const line of stdout.split('\n')) {
    // Ndx is a number, UND, ABS, COM, or "OS [0xff20]".
    const m = /^\s*(\d+):\s+([0-9a-f]+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(OS \[0x[0-9a-f]+\]|\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      index: Number(m[1]), value: BigInt('0x' + m[2]), size: Number(m[3]), type: m[4], bind: m[5], vis: m[6],
      ndx: m[7], name: m[8],
    });
  }
  return out;
}

/** `objdump -dr` of one section, without the file-name header. */
export function disassemble(path: string, section: string): string {
  const out = execFileSync('objdump', ['-dr', `--section=${section}`, path], { encoding: 'utf8' });
  const start = out.indexOf('Disassembly of section');
  if (start < 0) throw new Error(`objdump shows no code for ${section} in ${path}`);
  return out.slice(start);
}
