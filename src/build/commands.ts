// What a recorded compiler or archiver run did, read from its argv:
// which objects it compiled, what it linked, which members it put in an archive.

import { basename, extname, isAbsolute, join, resolve } from 'node:path';
import type { ToolRecord } from './wrapper.js';

/** One object file compiled from one source. Paths are absolute. */
export interface CompileCommand {
  cwd: string;
  source: string;
  output: string;
  /** The compiler's command words and the arguments the build gave. */
  tool: string[];
  args: string[];
  /** Flags the wrapper added. */
  added: string[];
  /** Make-style dependency file written by this compile (the headers it read), if any. */
  depFile: string | undefined;
}

export type LinkKind = 'executable' | 'shared' | 'relocatable';

/** One link. Paths are absolute. */
export interface LinkCommand {
  cwd: string;
  output: string;
  kind: LinkKind;
  /** File inputs named on the command line (objects, archives, shared libraries), in order. */
  inputs: string[];
  /** `-l` names, in order, with the -L directories to find them (used when there is no linker map). */
  libraries: Array<{ name: string; static: boolean }>;
  libraryDirs: string[];
  /** Sources compiled and linked in one command (no object file is kept for them). */
  inlineSources: string[];
  mapFile: string | undefined;
  tool: string[];
  args: string[];
}

/** One archiver run that adds or removes members. Paths are absolute. */
export interface ArchiveCommand {
  cwd: string;
  archive: string;
  operation: 'replace' | 'append' | 'delete';
  members: string[];
  thin: boolean;
}

/** gcc options whose value may be the next argument. */
const OPTIONS_WITH_VALUE = new Set([
  '-o', '-x', '-I', '-D', '-U', '-include', '-imacros', '-idirafter', '-iprefix', '-iwithprefix',
  '-iwithprefixbefore', '-isystem', '-isysroot', '-iquote', '-imultilib', '-imultiarch', '-MF', '-MT', '-MQ',
  '-L', '-l', '-T', '-u', '-e', '-z', '-Xlinker', '-Xassembler', '-Xpreprocessor', '-Xclang', '-aux-info',
  '--param', '-A', '-B', '-dumpbase', '-dumpbase-ext', '-dumpdir', '-wrapper', '-target', '--target',
  '--sysroot', '-specs', '-arch', '-G',
]);

/** Source languages gcc compiles (by extension, when no -x is given). */
const SOURCE_EXTENSIONS = new Set([
  '.c', '.i', '.ii', '.cc', '.cp', '.cxx', '.cpp', '.CPP', '.c++', '.C', '.m', '.mi', '.mm', '.M', '.mii',
  '.s', '.S', '.sx', '.f', '.for', '.ftn', '.F', '.FOR', '.f90', '.f95', '.f03', '.F90', '.go', '.d', '.adb',
]);

function isSource(path: string, language: string | undefined): boolean {
  if (language !== undefined && language !== 'none') return true;
  return SOURCE_EXTENSIONS.has(extname(path));
}

interface ParsedCompilerArgs {
  mode: 'compile' | 'assemble-only' | 'preprocess' | 'link';
  output: string | undefined;
  sources: string[];
  linkInputs: string[];
  libraries: Array<{ name: string; static: boolean }>;
  libraryDirs: string[];
  shared: boolean;
  relocatable: boolean;
  /** -MD/-MMD (or -Wp,-MD,file) given. */
  writesDeps: boolean;
  depFile: string | undefined;
}

/** Expand `@file` arguments (gcc response files: whitespace-separated, quotes and backslashes). */
function expandResponseFiles(args: readonly string[], cwd: string, readText: (p: string) => string | undefined): string[] {
  const out: string[] = [];
  for (const a of args) {
    if (a.startsWith('@') && a.length > 1) {
      const text = readText(resolve(cwd, a.slice(1)));
      if (text !== undefined) {
        out.push(...splitResponseFile(text));
        continue;
      }
    }
    out.push(a);
  }
  return out;
}

function splitResponseFile(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (quote) {
      if (c === quote) quote = undefined;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

function parseCompilerArgs(args: readonly string[]): ParsedCompilerArgs {
  const parsed: ParsedCompilerArgs = {
    mode: 'link',
    output: undefined,
    sources: [],
    linkInputs: [],
    libraries: [],
    libraryDirs: [],
    shared: false,
    relocatable: false,
    writesDeps: false,
    depFile: undefined,
  };
  let language: string | undefined;
  let staticLibs = false;
  const stops = { c: false, S: false, E: false };
  const linkerOption = (opt: string): void => {
    if (opt === '-Bstatic' || opt === '-static' || opt === '-dn' || opt === '-non_shared') staticLibs = true;
    else if (opt === '-Bdynamic' || opt === '-dy' || opt === '-call_shared') staticLibs = false;
    else if (opt === '-r' || opt === '--relocatable' || opt === '-i') parsed.relocatable = true;
    else if (opt === '-shared' || opt === '-Bshareable') parsed.shared = true;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = (): string => args[++i] ?? '';
    if (a === '-' || !a.startsWith('-')) {
      if (a === '-' || isSource(a, language)) parsed.sources.push(a);
      else parsed.linkInputs.push(a);
      continue;
    }
    if (a === '-c') stops.c = true;
    else if (a === '-S') stops.S = true;
    else if (a === '-E' || a === '-M' || a === '-MM' || a === '-fsyntax-only') stops.E = true;
    else if (a === '-shared') parsed.shared = true;
    else if (a === '-r') parsed.relocatable = true;
    else if (a === '-static') staticLibs = true;
    else if (a === '-MD' || a === '-MMD') parsed.writesDeps = true;
    else if (a === '-MF') parsed.depFile = value();
    else if (a.startsWith('-MF')) parsed.depFile = a.slice(3);
    else if (/^-Wp,-M?MD,/.test(a)) {
      parsed.writesDeps = true;
      parsed.depFile = a.slice(a.indexOf(',', 4) + 1);
    } else if (a === '-o') parsed.output = value();
    else if (a.startsWith('-o')) parsed.output = a.slice(2);
    else if (a === '-x') language = value();
    else if (a.startsWith('-x')) language = a.slice(2);
    else if (a === '-l') parsed.libraries.push({ name: value(), static: staticLibs });
    else if (a.startsWith('-l')) parsed.libraries.push({ name: a.slice(2), static: staticLibs });
    else if (a === '-L') parsed.libraryDirs.push(value());
    else if (a.startsWith('-L')) parsed.libraryDirs.push(a.slice(2));
    else if (a.startsWith('-Wl,')) {
      const parts = a.slice(4).split(',');
      for (let k = 0; k < parts.length; k++) {
        if (parts[k] === '-L' && k + 1 < parts.length) parsed.libraryDirs.push(parts[++k]);
        else if (parts[k].startsWith('-L')) parsed.libraryDirs.push(parts[k].slice(2));
        else linkerOption(parts[k]);
      }
    } else if (a === '-Xlinker') linkerOption(value());
    else if (OPTIONS_WITH_VALUE.has(a)) i++;
  }
  if (stops.E) parsed.mode = 'preprocess';
  else if (stops.S) parsed.mode = 'assemble-only';
  else if (stops.c) parsed.mode = 'compile';
  return parsed;
}

/** The object gcc writes for a source compiled with -c and no -o: its base name with .o, in the cwd. */
function defaultObjectName(source: string): string {
  const base = basename(source);
  const ext = extname(base);
  return `${ext ? base.slice(0, -ext.length) : base}.o`;
}

export interface CompilerRunMeaning {
  compiles: CompileCommand[];
  link: LinkCommand | undefined;
}

/** What a successful compiler-driver run produced. */
export function interpretCompilerRun(
  record: ToolRecord,
  readText: (path: string) => string | undefined = () => undefined,
): CompilerRunMeaning {
  const meaning: CompilerRunMeaning = { compiles: [], link: undefined };
  if (record.status !== 0) return meaning;
  const cwd = record.cwd;
  const args = expandResponseFiles(record.args, cwd, readText);
  // The wrapper's own flags count too: they may ask for a dependency file.
  const parsed = parseCompilerArgs([...args, ...record.added]);
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(cwd, p));
  if (parsed.mode === 'compile') {
    const sources = parsed.sources.filter((s) => s !== '-');
    for (const source of sources) {
      const output = parsed.output !== undefined && sources.length === 1 ? parsed.output : defaultObjectName(source);
      // With several sources every TU writes the same -MF file: it only describes the last one.
      const depFile =
        !parsed.writesDeps || sources.length !== 1
          ? undefined
          : (parsed.depFile ?? `${output.slice(0, output.length - extname(output).length)}.d`);
      meaning.compiles.push({
        cwd,
        source: abs(source),
        output: abs(output),
        tool: record.tool,
        args: record.args,
        added: record.added,
        depFile: depFile === undefined ? undefined : abs(depFile),
      });
    }
    return meaning;
  }
  if (parsed.mode !== 'link') return meaning;
  if (parsed.sources.length === 0 && parsed.linkInputs.length === 0) return meaning; // --version, -print-*, ...
  meaning.link = {
    cwd,
    output: abs(parsed.output ?? 'a.out'),
    kind: parsed.relocatable ? 'relocatable' : parsed.shared ? 'shared' : 'executable',
    inputs: parsed.linkInputs.map(abs),
    libraries: parsed.libraries,
    libraryDirs: parsed.libraryDirs.map(abs),
    inlineSources: parsed.sources.filter((s) => s !== '-').map(abs),
    mapFile: record.mapFile,
    tool: record.tool,
    args: record.args,
  };
  return meaning;
}

/** Long ar options that take a value. */
const AR_OPTIONS_WITH_VALUE = new Set(['--plugin', '--target', '--output', '--record-libdeps']);

/** What a successful ar run did to an archive (undefined for listing/extracting runs). */
export function interpretArchiverRun(record: ToolRecord): ArchiveCommand | undefined {
  if (record.status !== 0) return undefined;
  const args = record.args;
  let i = 0;
  let key = '';
  let thin = false;
  // GNU ar: dash options (`-rcs`, `-r -c -s`, long ones), or a bare key (`rcs`).
  while (i < args.length && args[i].startsWith('-')) {
    const a = args[i];
    if (a.startsWith('--')) {
      if (a === '--thin') thin = true;
      if (AR_OPTIONS_WITH_VALUE.has(a)) i++;
    } else key += a.slice(1);
    i++;
  }
  if (!/[dmpqrstx]/.test(key) && i < args.length) key += args[i++];
  const op = /[dmpqrstx]/.exec(key)?.[0];
  if (key.includes('T')) thin = true;
  // Modifiers a, b, i take a member name; N takes a count.
  if (/[abi]/.test(key.replace(/[dmpqrstx]/, ''))) i++;
  if (key.includes('N')) i++;
  const archive = args[i++];
  if (archive === undefined) return undefined;
  const members = args.slice(i).map((m) => (isAbsolute(m) ? m : join(record.cwd, m)));
  const operation = op === 'r' ? 'replace' : op === 'q' ? 'append' : op === 'd' ? 'delete' : undefined;
  if (operation === undefined) return undefined;
  return {
    cwd: record.cwd,
    archive: isAbsolute(archive) ? archive : resolve(record.cwd, archive),
    operation,
    members: operation === 'delete' ? args.slice(i) : members,
    thin,
  };
}

/** Dependency-file options: a recompile for another output must not rewrite the build's own .d files. */
const DEPENDENCY_FLAGS = new Set(['-MD', '-MMD', '-MP', '-MG']);
const DEPENDENCY_FLAGS_WITH_VALUE = new Set(['-MF', '-MT', '-MQ']);

/**
 * The arguments that compile `compile.source` again, exactly as the build did
 * (its flags and the wrapper's), into `output` instead, with `extra` flags
 * appended. Response files are expanded, other sources of the same run,
 * the output and dependency-file options are dropped. Run with `compile.tool`
 * in `compile.cwd`.
 */
export function recompileArgs(
  compile: CompileCommand,
  output: string,
  extra: readonly string[],
  readText: (path: string) => string | undefined = () => undefined,
): string[] {
  const given = [...expandResponseFiles(compile.args, compile.cwd, readText), ...compile.added];
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(compile.cwd, p));
  const kept: string[] = [];
  let language: string | undefined;
  for (let i = 0; i < given.length; i++) {
    const a = given[i];
    if (a === '-' || !a.startsWith('-')) {
      // Sources compiled by the same run are other objects; link inputs do not matter with -c.
      if (a !== '-' && isSource(a, language) && abs(a) !== compile.source) continue;
      kept.push(a);
      continue;
    }
    if (a === '-o' || DEPENDENCY_FLAGS_WITH_VALUE.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-o') || DEPENDENCY_FLAGS.has(a) || /^-M[FTQ]./.test(a) || /^-Wp,-M?MD,/.test(a)) continue;
    if (a === '-x') language = given[i + 1];
    else if (a.startsWith('-x')) language = a.slice(2);
    kept.push(a);
    if (OPTIONS_WITH_VALUE.has(a) && i + 1 < given.length) kept.push(given[++i]);
  }
  return [...kept, '-o', output, ...extra];
}
