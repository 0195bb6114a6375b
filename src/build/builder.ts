// Pre and post builds of a user-space C project, through the wrappers.
//
//   pre    a copy of the source, built in full: every object is recorded.
//   post   a copy of the built pre tree (mtimes kept) with the patch applied,
//          built again: make rebuilds only what the patch touched, and the
//          wrapper records say which objects those are.
//   lines  the same as post, but with `#line` directives giving unchanged
//          lines their pre numbers: comparing its objects with pre separates
//          "only __LINE__ moved" from a real change.
//
// All three compile with the same flags and map their tree's path to the
// original source dir, so identical code gives identical bytes.

import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, isAbsolute, join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { TspliceError } from '../errors.js';
import { type Progress, silentProgress } from '../progress.js';
import {
  type ArchiveCommand,
  type CompileCommand,
  type LinkCommand,
  type LinkKind,
  interpretArchiverRun,
  interpretCompilerRun,
  recompileArgs,
} from './commands.js';
import { parseDepFile } from './deps.js';
import { insertLineDirectives, takesLineDirectives } from './lines.js';
import { type LinkedOutput, containingOutputs } from './linkmap.js';
import { type AppliedPatch, applyPatch, checkPatch, lastLines } from './patch.js';
import { ageBuildProducts, copyTree, ensureNewer, runBuild } from './tree.js';
import { type Wrappers, installWrappers, readRecords, wrapperEnvironment } from './wrapper.js';

export interface BuildPrePostOptions {
  srcDir: string;
  patchFile: string;
  /** Shell command run at the tree's top (default `make`). */
  buildCommand?: string;
  /** Directory for the trees, wrappers and logs (created; pre/post/lines in it are replaced). */
  workDir: string;
  /** Parallel jobs, passed to make through MAKEFLAGS (default: the number of CPUs). */
  jobs?: number;
  progress?: Progress;
  /** -p level of the patch (detected when not given). */
  strip?: number;
  /** Fuzz allowed when applying the patch (default 0). */
  fuzz?: number;
  /** SOURCE_DATE_EPOCH for all three builds (default: the environment's, else now). */
  sourceDateEpoch?: number;
  /** Environment of the builds (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** An object file a build compiled. Paths relative to the tree unless outside it. */
export interface CompiledObject {
  object: string;
  /** Absolute path of the object file. */
  path: string;
  source: string;
  /** Directory the compiler ran in. */
  cwd: string;
  /** The real compiler's command words. */
  compiler: string[];
  /** Arguments as the build gave them. */
  args: string[];
  /** Flags the wrapper added (-ffunction-sections ...). */
  added: string[];
}

/** A link a build did. Paths relative to the tree unless outside it. */
export interface LinkRecord {
  output: string;
  /** Absolute path of the output. */
  path: string;
  kind: LinkKind;
  /** File inputs named on the command line. */
  inputs: string[];
  libraries: string[];
  cwd: string;
  args: string[];
}

/** An archiver run that changed an archive's members. */
export interface ArchiveRecord {
  archive: string;
  operation: ArchiveCommand['operation'];
  members: string[];
}

export interface TreeBuild {
  /** Absolute path of the tree. */
  dir: string;
  /** Objects compiled by this build (the last compile of each output). */
  objects: CompiledObject[];
  links: LinkRecord[];
  archives: ArchiveRecord[];
}

/** A final linked file containing a changed object, relative to the tree. */
export interface ContainingOutput {
  path: string;
  kind: LinkedOutput['kind'];
}

export interface ChangedObject {
  /** Path of the object relative to the tree (the same in pre, post and lines). */
  object: string;
  /** Absolute paths of the three builds of it; preObject is undefined for a new object. */
  preObject: string | undefined;
  postObject: string;
  linesObject: string;
  /**
   * The pre object compiled again with the flags of the shipped post objects
   * (SHIP_FLAGS): the code an earlier update's post build of this unit runs
   * as. Undefined for a new object.
   */
  preShippedObject: string | undefined;
  source: string;
  compiler: string[];
  /** The post compile's arguments as the build gave them. */
  args: string[];
  isNew: boolean;
  /** Executables and shared libraries containing this object (through archives and `ld -r`). */
  linkedInto: ContainingOutput[];
}

export interface PrePostBuild {
  pre: TreeBuild;
  post: TreeBuild;
  lines: TreeBuild;
  changed: ChangedObject[];
  /** Files the patch touches, relative to the tree. */
  patchedFiles: string[];
  patch: AppliedPatch;
  /** Seconds spent in each phase. */
  timings: Record<string, number>;
}

interface RawBuild {
  dir: string;
  compiles: CompileCommand[];
  links: LinkCommand[];
  archiveCommands: ArchiveCommand[];
}

/** Tree-relative path, or the absolute path for files outside the tree. */
function inTree(dir: string, path: string): string {
  const rel = relative(dir, path);
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Interpret a build's records: the last successful compile/link of each output that still exists. */
function interpretLog(dir: string, logDir: string): RawBuild {
  const compiles = new Map<string, CompileCommand>();
  const links = new Map<string, LinkCommand>();
  const archiveCommands: ArchiveCommand[] = [];
  for (const record of readRecords(logDir)) {
    if (record.kind === 'ar') {
      const cmd = interpretArchiverRun(record);
      if (cmd) archiveCommands.push(cmd);
      continue;
    }
    const meaning = interpretCompilerRun(record, readText);
    for (const c of meaning.compiles) {
      compiles.delete(c.output); // keep run order for the last one
      compiles.set(c.output, c);
    }
    if (meaning.link) {
      links.delete(meaning.link.output);
      links.set(meaning.link.output, meaning.link);
    }
  }
  return {
    dir,
    compiles: [...compiles.values()].filter((c) => existsSync(c.output)),
    links: [...links.values()].filter((l) => existsSync(l.output)),
    archiveCommands: archiveCommands.filter((a) => existsSync(a.archive)),
  };
}

function treeBuildOf(raw: RawBuild): TreeBuild {
  const rel = (p: string): string => inTree(raw.dir, p);
  return {
    dir: raw.dir,
    objects: raw.compiles.map((c) => ({
      object: rel(c.output),
      path: c.output,
      source: rel(c.source),
      cwd: rel(c.cwd),
      compiler: c.tool,
      args: c.args,
      added: c.added,
    })),
    links: raw.links.map((l) => ({
      output: rel(l.output),
      path: l.output,
      kind: l.kind,
      inputs: l.inputs.map(rel),
      libraries: l.libraries.map((x) => x.name),
      cwd: rel(l.cwd),
      args: l.args,
    })),
    archives: raw.archiveCommands.map((a) => ({
      archive: rel(a.archive),
      operation: a.operation,
      members: a.operation === 'delete' ? a.members : a.members.map(rel),
    })),
  };
}

/** object (tree-relative) → final outputs containing it (tree-relative). */
function containmentOf(raw: RawBuild): Map<string, ContainingOutput[]> {
  const out = new Map<string, ContainingOutput[]>();
  for (const [object, finals] of containingOutputs(raw.links, raw.archiveCommands)) {
    out.set(
      inTree(raw.dir, object),
      finals.map((f) => ({ path: inTree(raw.dir, f.path), kind: f.kind })),
    );
  }
  return out;
}

function sameBytes(a: string, b: string): boolean {
  const sa = statSync(a);
  const sb = statSync(b);
  return sa.size === sb.size && readFileSync(a).equals(readFileSync(b));
}

function newestMtime(paths: readonly string[]): number {
  let newest = 0;
  for (const p of paths) {
    try {
      newest = Math.max(newest, statSync(p).mtimeMs);
    } catch {
      // gone: irrelevant
    }
  }
  return newest;
}

class Phases {
  readonly timings: Record<string, number> = {};
  constructor(private readonly progress: Progress) {}

  async run<T>(name: string, text: string, fn: () => Promise<T> | T): Promise<T> {
    const start = performance.now();
    this.progress.step(text);
    try {
      const result = await fn();
      this.progress.done();
      return result;
    } catch (e) {
      this.progress.fail();
      throw e;
    } finally {
      this.timings[name] = Number(((performance.now() - start) / 1000).toFixed(3));
    }
  }
}

/**
 * Build the source before and after the patch (and the `lines` variant), and
 * find the objects the patch changed and the linked files that contain them.
 */
export async function buildPrePost(options: BuildPrePostOptions): Promise<PrePostBuild> {
  const progress = options.progress ?? silentProgress;
  const buildCommand = options.buildCommand ?? 'make';
  const env = options.env ?? process.env;
  const jobs = options.jobs ?? availableParallelism();
  const sourceDateEpoch =
    options.sourceDateEpoch ?? (Number(env.SOURCE_DATE_EPOCH) || Math.floor(Date.now() / 1000));

  let srcDir: string;
  try {
    srcDir = realpathSync(options.srcDir);
    if (!statSync(srcDir).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    throw new TspliceError('bad_input', `the source directory ${options.srcDir} is not usable: ${(e as Error).message}`, {
      srcDir: options.srcDir,
    });
  }
  mkdirSync(options.workDir, { recursive: true });
  const workDir = realpathSync(options.workDir);
  if (workDir === srcDir || workDir.startsWith(srcDir + sep)) {
    throw new TspliceError('bad_input', `the work directory ${workDir} must be outside the source directory`, {
      workDir,
      srcDir,
    });
  }
  const dirs = {
    pre: join(workDir, 'pre'),
    post: join(workDir, 'post'),
    lines: join(workDir, 'lines'),
    shipped: join(workDir, 'pre-shipped'),
    bin: join(workDir, 'bin'),
    logs: join(workDir, 'logs'),
  };
  for (const d of Object.values(dirs)) {
    if (srcDir === d || srcDir.startsWith(d + sep)) {
      throw new TspliceError('bad_input', `the source directory ${srcDir} is where tsplice builds: use another work directory`, {
        workDir,
        srcDir,
      });
    }
  }
  for (const d of Object.values(dirs)) rmSync(d, { recursive: true, force: true });
  const phases = new Phases(progress);

  const plan = await phases.run('copy', `copying ${srcDir}`, async () => {
    await copyTree(srcDir, dirs.pre);
    ageBuildProducts(dirs.pre);
    return checkPatch(dirs.pre, options.patchFile, { strip: options.strip, fuzz: options.fuzz });
  });
  const wrappers = installWrappers(dirs.bin, env);

  const pre = await phases.run('pre', 'building the original source', () =>
    buildTree(dirs.pre, 'pre', { wrappers, logs: dirs.logs, srcDir, sourceDateEpoch, buildCommand, jobs, env, progress }),
  );
  if (pre.compiles.length === 0) {
    throw new TspliceError(
      'bad_input',
      `"${buildCommand}" compiled nothing through tsplice's compiler wrapper: ` +
        'the build must call the compiler as $(CC), cc, gcc or another compiler found on PATH',
      { buildCommand },
    );
  }

  const patch = await phases.run('patch', 'applying the patch', async () => {
    await Promise.all([copyTree(dirs.pre, dirs.post), copyTree(dirs.pre, dirs.lines)]);
    const applied = await applyPatch(dirs.post, options.patchFile, { strip: plan.strip, fuzz: options.fuzz });
    writeLinesTree(dirs.post, dirs.lines, applied);
    // make must see every patched file as newer than anything the pre build made.
    const builtAt = newestMtime([
      ...pre.compiles.map((c) => c.output),
      ...pre.links.map((l) => l.output),
      ...pre.archiveCommands.map((a) => a.archive),
    ]);
    for (const tree of [dirs.post, dirs.lines]) {
      ensureNewer(
        applied.files.filter((f) => !f.deleted).map((f) => join(tree, f.path)),
        builtAt,
      );
    }
    return applied;
  });
  // Objects that read a patched file are removed, so the build must make them
  // again even if it does not track headers.
  const stale = objectsReadingPatchedFiles(pre, patch);
  for (const s of stale) {
    if (isAbsolute(s.object)) continue; // built outside the tree: not ours to remove
    for (const tree of [dirs.post, dirs.lines]) rmSync(join(tree, s.object), { force: true });
  }

  const buildArgs = { wrappers, logs: dirs.logs, srcDir, sourceDateEpoch, buildCommand, jobs, env, progress };
  const [post, lines] = await phases.run('post', 'building the patched source', () =>
    Promise.all([
      buildTree(dirs.post, 'post', buildArgs),
      buildTree(dirs.lines, 'lines', buildArgs).catch((e: unknown) => e as Error),
    ]),
  );
  if (lines instanceof Error) {
    const detail = lines instanceof TspliceError ? lines.details : {};
    throw new TspliceError(
      'internal',
      `the patched source builds, but not with the #line directives tsplice inserted: ${lines.message}`,
      detail,
    );
  }

  const rebuilt = new Set(post.compiles.map((c) => inTree(post.dir, c.output)));
  for (const s of stale) {
    if (!rebuilt.has(s.object) && existsSync(join(post.dir, s.source))) {
      throw new TspliceError(
        'bad_input',
        `"${buildCommand}" did not rebuild ${s.object} (removed because it reads the patched ${s.because}): ` +
          'the build must rebuild missing object files',
        { object: s.object, patchedFile: s.because },
      );
    }
  }

  const found = findChanged(pre, post, lines, patch);
  const changed = await phases.run('pre-shipped', 'compiling the original changed files as updates ship them', () =>
    compileShippedPre(pre, found, { dir: dirs.shipped, jobs, env: { ...env, SOURCE_DATE_EPOCH: String(sourceDateEpoch) } }),
  );
  return {
    pre: treeBuildOf(pre),
    post: treeBuildOf(post),
    lines: treeBuildOf(lines),
    changed,
    patchedFiles: patch.files.map((f) => f.path),
    patch,
    timings: phases.timings,
  };
}

/**
 * The post objects are what gets linked into the running process, in memory
 * near the patched file but far from the shared libraries. Code built for an
 * executable (-fPIE, -fno-pic) reaches external data such as `stderr`
 * directly (PC32, expecting a copy relocation), which cannot reach a
 * library's variable from there; this flag makes gcc go through the GOT for
 * every external symbol, which the linker builds locally. It changes nothing
 * but how external symbols are reached, so what changed is still decided by
 * comparing pre with the lines tree (built without it).
 */
const SHIP_FLAGS = ['-mno-direct-extern-access'];

interface BuildTreeArgs {
  wrappers: Wrappers;
  logs: string;
  srcDir: string;
  sourceDateEpoch: number;
  buildCommand: string;
  jobs: number;
  env: NodeJS.ProcessEnv;
  progress: Progress;
}

async function buildTree(dir: string, name: 'pre' | 'post' | 'lines', args: BuildTreeArgs): Promise<RawBuild> {
  const logDir = join(args.logs, name);
  mkdirSync(logDir, { recursive: true });
  const env = wrapperEnvironment(
    args.wrappers,
    {
      logDir, treeDir: dir, mapTreeTo: args.srcDir, sourceDateEpoch: args.sourceDateEpoch,
      shipFlags: name === 'post' ? SHIP_FLAGS : undefined,
    },
    args.env,
  );
  env.MAKEFLAGS = makeFlags(args.jobs, args.env.MAKEFLAGS);
  const result = await runBuild(args.buildCommand, dir, env, name === 'lines' ? silentProgress : args.progress);
  if (result.status !== 0) {
    const what = name === 'pre' ? 'the source does not build as it is' : 'the patched source does not build';
    const next =
      name === 'pre'
        ? 'check that the build command works in the source directory'
        : 'fix the patch so that the source still builds';
    const tail = lastLines(result.tail, 20);
    throw new TspliceError('bad_input', `${what} ("${args.buildCommand}" exited with ${result.status}); ${next}:\n${tail}`, {
      tree: name,
      status: result.status,
      output: tail,
    });
  }
  return interpretLog(dir, logDir);
}

interface StaleObject {
  object: string;
  source: string;
  /** The patched file it reads. */
  because: string;
}

/**
 * Pre objects built from a patched file: the source itself or, from the
 * compile's dependency file, a header. An object whose dependencies are unknown
 * counts when the patch touches anything other than compiled sources.
 */
function objectsReadingPatchedFiles(pre: RawBuild, patch: AppliedPatch): StaleObject[] {
  const patched = new Map<string, string>(); // absolute path in pre → tree-relative
  for (const f of patch.files) {
    patched.set(join(pre.dir, f.path), f.path);
    if (f.oldPath !== undefined) patched.set(join(pre.dir, f.oldPath), f.oldPath);
  }
  const sources = new Set(pre.compiles.map((c) => c.source));
  const nonSource = [...patched.entries()].find(([abs]) => !sources.has(abs))?.[1];
  const stale: StaleObject[] = [];
  for (const c of pre.compiles) {
    const entry = { object: inTree(pre.dir, c.output), source: inTree(pre.dir, c.source) };
    const direct = patched.get(c.source);
    if (direct !== undefined) {
      stale.push({ ...entry, because: direct });
      continue;
    }
    const depText = c.depFile === undefined ? undefined : readText(c.depFile);
    if (depText === undefined) {
      if (nonSource !== undefined) stale.push({ ...entry, because: nonSource });
      continue;
    }
    const hit = parseDepFile(depText, c.cwd).find((d) => patched.has(d));
    if (hit !== undefined) stale.push({ ...entry, because: patched.get(hit) as string });
  }
  return stale;
}

/**
 * MAKEFLAGS for a build: -jN, plus the caller's flags without a jobserver
 * handle (its file descriptors are not passed on to the build).
 */
function makeFlags(jobs: number, inherited: string | undefined): string {
  const kept = (inherited ?? '')
    .split(/\s+/)
    .filter((f) => f !== '' && !/^--jobserver-(auth|fds)=/.test(f) && !/^-j\d*$/.test(f));
  // A first word without a dash holds single-letter flags ("k"): it must stay first.
  return [...kept, `-j${jobs}`].join(' ');
}

/** Fill the lines tree (a copy of the built pre tree) with the post files, #line directives added. */
function writeLinesTree(postDir: string, linesDir: string, patch: AppliedPatch): void {
  for (const f of patch.files) {
    if (f.oldPath !== undefined && f.oldPath !== f.path) rmSync(join(linesDir, f.oldPath), { force: true });
    const target = join(linesDir, f.path);
    // What the patch left in post decides (an emptied file may or may not be removed).
    if (!existsSync(join(postDir, f.path))) {
      rmSync(target, { force: true });
      continue;
    }
    mkdirSync(dirname(target), { recursive: true });
    if (f.lineMap && takesLineDirectives(f.path)) {
      const text = readFileSync(join(postDir, f.path), 'latin1');
      writeFileSync(target, insertLineDirectives(text, f.lineMap), 'latin1');
    } else {
      copyFileSync(join(postDir, f.path), target);
    }
  }
}

function findChanged(pre: RawBuild, post: RawBuild, lines: RawBuild, patch: AppliedPatch): ChangedObject[] {
  const preObjects = new Map(pre.compiles.map((c) => [inTree(pre.dir, c.output), c]));
  const linesObjects = new Map(lines.compiles.map((c) => [inTree(lines.dir, c.output), c]));
  const preContainment = containmentOf(pre);
  const postContainment = containmentOf(post);

  // A patched source compiled and linked in one command leaves no object to compare.
  const compiledSources = new Set(post.compiles.map((c) => inTree(post.dir, c.source)));
  for (const link of post.links) {
    for (const source of link.inlineSources) {
      const rel = inTree(post.dir, source);
      if (patch.files.some((f) => f.path === rel) && !compiledSources.has(rel)) {
        throw new TspliceError(
          'unsupported_change',
          `${rel} is compiled and linked in one command (${inTree(post.dir, link.output)}), so there is no object ` +
            'file to compare: build it with "-c" into an object first',
          { source: rel, output: inTree(post.dir, link.output) },
        );
      }
    }
  }

  const changed: ChangedObject[] = [];
  for (const c of post.compiles) {
    const object = inTree(post.dir, c.output);
    const before = preObjects.get(object);
    const linesCompile = linesObjects.get(object);
    if (!linesCompile) {
      throw new TspliceError(
        'internal',
        `${object} was rebuilt after the patch but not in the #line build: the two builds must rebuild the same objects`,
        { object },
      );
    }
    // The lines build has pre's flags and line numbers (post has extra code-generation flags): same bytes, no change.
    if (before && sameBytes(before.output, linesCompile.output)) continue;
    const containers = new Map<string, ContainingOutput>();
    for (const o of [...(preContainment.get(object) ?? []), ...(postContainment.get(object) ?? [])]) {
      containers.set(o.path, o);
    }
    changed.push({
      object,
      preObject: before?.output,
      postObject: c.output,
      linesObject: linesCompile.output,
      preShippedObject: undefined,
      source: inTree(post.dir, c.source),
      compiler: c.tool,
      args: c.args,
      isNew: before === undefined,
      linkedInto: [...containers.values()].sort((a, b) => a.path.localeCompare(b.path)),
    });
  }
  return changed.sort((a, b) => a.object.localeCompare(b.object));
}

const execFileAsync = promisify(execFile);

interface ShippedPreArgs {
  /** Where the objects go (created). */
  dir: string;
  jobs: number;
  env: NodeJS.ProcessEnv;
}

/**
 * Compile the pre version of each changed object once more, with SHIP_FLAGS:
 * an update stacked on an earlier one that replaced a function finds that
 * function running as the earlier update's post build, which reaches
 * external data through a GOT slot where the original reads it directly.
 * Each object's recorded compile is re-run in the pre tree, into another
 * file; nothing else is rebuilt.
 */
async function compileShippedPre(pre: RawBuild, changed: ChangedObject[], args: ShippedPreArgs): Promise<ChangedObject[]> {
  const compiles = new Map(pre.compiles.map((c) => [inTree(pre.dir, c.output), c]));
  const queue = changed.map((c, index) => ({ c, index, compile: c.isNew ? undefined : compiles.get(c.object) }));
  const out = [...changed];
  const worker = async (): Promise<void> => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const { c, index, compile } = next;
      if (!compile) continue;
      const output = join(args.dir, String(index), basename(c.object));
      mkdirSync(dirname(output), { recursive: true });
      const [tool, ...toolArgs] = compile.tool;
      try {
        await execFileAsync(tool, [...toolArgs, ...recompileArgs(compile, output, SHIP_FLAGS, readText)], {
          cwd: compile.cwd, env: args.env, maxBuffer: 16 * 1024 * 1024,
        });
      } catch (e) {
        const err = e as Error & { stderr?: string };
        const tail = lastLines(err.stderr ?? err.message, 20);
        throw new TspliceError(
          'internal',
          `${c.object} compiles in the original source, but not again with ${SHIP_FLAGS.join(' ')} ` +
            `(needed to stack later updates on this one):\n${tail}`,
          { object: c.object, output: tail },
        );
      }
      out[index] = { ...c, preShippedObject: output };
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(args.jobs, queue.length)) }, worker));
  return out;
}
