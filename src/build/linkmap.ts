// Which linked files (executables, shared libraries) contain which object.
//
// An update is applied to the files a changed object ended up in, so this must
// be exact: an object in a static archive is in an executable only if the
// linker pulled that member in. The linker map (-Wl,-Map, added by the
// wrapper) says what was loaded and which archive members were included; the
// archiver records say which object file each member came from. Relocatable
// links (`ld -r`) and archives nest; shared libraries a link merely depends on
// do not contain anything of it.

import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';
import type { ArchiveCommand, LinkCommand, LinkKind } from './commands.js';

/** What a linker map says a link used. Paths are absolute. */
export interface LinkerMap {
  /** Every file the linker loaded (objects, archives, shared libraries), in order. */
  loaded: string[];
  /** Archive members included in the output. */
  archiveMembers: Array<{ archive: string; member: string }>;
}

/** A final linked file (what a process maps) that contains an object. */
export interface LinkedOutput {
  path: string;
  kind: Exclude<LinkKind, 'relocatable'>;
}

const MEMBERS_HEADER = 'Archive member included to satisfy reference by file (symbol)';

/** Parse a GNU ld / gold / lld-style map file written for a link run in cwd. */
export function parseLinkerMap(text: string, cwd: string): LinkerMap {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(cwd, p));
  const map: LinkerMap = { loaded: [], archiveMembers: [] };
  const lines = text.split('\n');
  let inMembers = false;
  for (const line of lines) {
    if (line === MEMBERS_HEADER) {
      inMembers = true;
      continue;
    }
    if (inMembers) {
      if (line === '' || /^\s/.test(line)) continue; // blank lines and "reason" continuation lines
      const member = /^(.+?)\(([^()]*)\)(?=\s|$)/.exec(line);
      if (member) {
        map.archiveMembers.push({ archive: abs(member[1]), member: member[2] });
        continue;
      }
      inMembers = false; // the next section's header
    }
    const load = /^LOAD (.+)$/.exec(line);
    if (load) map.loaded.push(abs(load[1]));
  }
  return map;
}

export type InputKind = 'object' | 'archive' | 'shared' | 'executable' | 'other';

/** The kind of a linker input, from its first bytes. */
export function inputKind(path: string): InputKind {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return 'other';
  }
  try {
    const head = Buffer.alloc(18);
    const n = readSync(fd, head, 0, 18, 0);
    const magic = head.subarray(0, 8).toString('latin1');
    if (n >= 8 && (magic === '!<arch>\n' || magic === '!<thin>\n')) return 'archive';
    if (n >= 18 && head.readUInt32BE(0) === 0x7f454c46) {
      const type = head.readUInt16LE(16);
      if (type === 1) return 'object';
      if (type === 2) return 'executable';
      if (type === 3) return 'shared';
    }
    return 'other';
  } finally {
    closeSync(fd);
  }
}

/** Archive → member name → object file it came from, after replaying the archiver runs in order. */
export function archiveContents(commands: readonly ArchiveCommand[]): Map<string, Map<string, string>> {
  const archives = new Map<string, Map<string, string>>();
  for (const cmd of commands) {
    let members = archives.get(cmd.archive);
    if (!members) {
      members = new Map();
      archives.set(cmd.archive, members);
    }
    for (const m of cmd.members) {
      if (cmd.operation === 'delete') members.delete(basename(m));
      else {
        members.set(basename(m), m);
        // Thin archives keep the path; maps name such members by it.
        if (cmd.thin) members.set(m, m);
      }
    }
  }
  return archives;
}

/** The library file `-l name` names, searching the link's -L dirs. */
function findLibrary(lib: { name: string; static: boolean }, dirs: readonly string[]): string | undefined {
  const names = lib.name.startsWith(':')
    ? [lib.name.slice(1)]
    : lib.static
      ? [`lib${lib.name}.a`]
      : [`lib${lib.name}.so`, `lib${lib.name}.a`];
  for (const dir of dirs) {
    for (const n of names) {
      if (existsSync(join(dir, n))) return join(dir, n);
    }
  }
  return undefined;
}

interface LinkContents {
  /** Object files (or relocatable outputs) included whole. */
  objects: string[];
}

/** The object files one link put into its output (not through shared libraries). */
function contentsOfLink(link: LinkCommand, archives: Map<string, Map<string, string>>): LinkContents {
  const objects: string[] = [];
  const mapText = link.mapFile && existsSync(link.mapFile) ? readFileSync(link.mapFile, 'utf8') : undefined;
  if (mapText !== undefined) {
    const map = parseLinkerMap(mapText, link.cwd);
    for (const path of map.loaded) {
      const kind = inputKind(path);
      if (kind === 'object') objects.push(path);
    }
    for (const { archive, member } of map.archiveMembers) {
      const object = archives.get(archive)?.get(member) ?? archives.get(archive)?.get(basename(member));
      if (object !== undefined) objects.push(object);
    }
    return { objects };
  }
  // No map (a linker that does not write one): every archive member counts, conservatively.
  const inputs = [...link.inputs];
  for (const lib of link.libraries) {
    const found = findLibrary(lib, link.libraryDirs);
    if (found) inputs.push(found);
  }
  for (const path of inputs) {
    const kind = inputKind(path);
    if (kind === 'object') objects.push(path);
    else if (kind === 'archive') objects.push(...new Set(archives.get(path)?.values() ?? []));
  }
  return { objects };
}

/**
 * For each object, the executables and shared libraries that contain it,
 * through archives and relocatable links. `links` and `archiveCommands` are in
 * the order they ran; for an output linked several times, the last link counts.
 */
export function containingOutputs(
  links: readonly LinkCommand[],
  archiveCommands: readonly ArchiveCommand[],
): Map<string, LinkedOutput[]> {
  const archives = archiveContents(archiveCommands);
  const lastLink = new Map<string, LinkCommand>();
  for (const link of links) lastLink.set(link.output, link);

  // Edges: object (or relocatable output) → outputs it is directly part of.
  const partOf = new Map<string, Set<string>>();
  for (const link of lastLink.values()) {
    for (const object of contentsOfLink(link, archives).objects) {
      let set = partOf.get(object);
      if (!set) partOf.set(object, (set = new Set()));
      set.add(link.output);
    }
  }

  const result = new Map<string, LinkedOutput[]>();
  const finalsOf = (object: string, seen: Set<string>): LinkedOutput[] => {
    const out: LinkedOutput[] = [];
    for (const container of partOf.get(object) ?? []) {
      if (seen.has(container)) continue;
      seen.add(container);
      const link = lastLink.get(container);
      if (!link) continue;
      if (link.kind === 'relocatable') out.push(...finalsOf(container, seen));
      else out.push({ path: container, kind: link.kind });
    }
    return out;
  };
  for (const object of partOf.keys()) result.set(object, finalsOf(object, new Set()));
  return result;
}
