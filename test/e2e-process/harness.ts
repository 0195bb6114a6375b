// End-to-end harness: C projects written and built at test time, updates
// made from diffs with `tsplice create`, programs started as live targets and
// patched with the CLI, run as a separate process like an operator would.
//
// Targets are started detached, with their output in a file: the CLI (a
// sibling process) is their tracer, and this process only reaps them once
// they exit. Every test program calls alarm() so it ends even if the test
// runner dies; after() kills them all.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after } from 'node:test';
import { writeTree } from '../helpers/cc.js';
import { REPO_ROOT, type CliResult } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

export type Files = Record<string, string>;

export interface Project {
  /** Scratch directory of the test. */
  dir: string;
  /** The source tree as it was built (the running program's source). */
  src: string;
  files: Files;
}

/** Write `files` into a fresh source tree and build it with make, as the program's own build would. */
export function buildProject(files: Files, dir = tempDir('tsplice-e2e-')): Project {
  const src = join(dir, 'src');
  writeTree(src, files);
  const r = spawnSync('make', ['-s'], { cwd: src, encoding: 'utf8' });
  assert.equal(r.status, 0, `make failed in ${src}:\n${r.stdout}${r.stderr}`);
  return { dir, src, files };
}

/**
 * A unified diff (as `diff -u` makes it) taking the tree `before` to `after`,
 * file by file; a file missing from `before` is added.
 */
export function writePatch(dir: string, name: string, before: Files, afterFiles: Files): string {
  const work = join(dir, `diff-${name}`);
  rmSync(work, { recursive: true, force: true });
  const a = join(work, 'a');
  const b = join(work, 'b');
  mkdirSync(a, { recursive: true });
  mkdirSync(b, { recursive: true });
  writeTree(a, before);
  writeTree(b, afterFiles);
  let text = '';
  for (const file of Object.keys(afterFiles).sort()) {
    if (before[file] === afterFiles[file]) continue;
    const r = spawnSync('diff', ['-uN', `a/${file}`, `b/${file}`], { cwd: work, encoding: 'utf8' });
    assert.equal(r.status, 1, `diff of ${file}: ${r.stderr}`);
    text += r.stdout;
  }
  assert.notEqual(text, '', `patch ${name} changes nothing`);
  const path = join(dir, `${name}.patch`);
  writeFileSync(path, text);
  return path;
}

export interface Update {
  id: string;
  path: string;
  changes: Array<{ object: string; function: string; kind: string }>;
}

/**
 * `tsplice create` for the change from `project`'s files to `afterFiles`.
 * `base` (default: the project's files) is the source the update is built
 * from, for an update stacked on an earlier one.
 */
export async function createUpdate(project: Project, id: string, afterFiles: Files, base: Files = project.files): Promise<Update> {
  let srcDir = project.src;
  if (base !== project.files) {
    srcDir = join(project.dir, `src-${id}`);
    writeTree(srcDir, base);
  }
  const patch = writePatch(project.dir, id, base, afterFiles);
  const out = join(project.dir, 'updates');
  const r = await runCli(['create', '--patch', patch, '--id', id, '-o', out, '--json', srcDir]);
  assert.equal(r.status, 0, `tsplice create ${id} failed:\n${r.stderr}${r.stdout}`);
  return { id, path: join(out, `tsplice-${id}.tar.gz`), changes: (r.json?.changes ?? []) as Update['changes'] };
}

export interface ErrorJson {
  code: string;
  message: string;
  [key: string]: unknown;
}

/**
 * The tsplice CLI as a separate process, as test/helpers/cli.ts runs it, but
 * without blocking this process: the tests of a file run side by side, and
 * their targets' output keeps being watched while a command runs.
 */
export function runCli(args: string[], timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(REPO_ROOT, 'src/cli/run.ts'), ...args], {
      cwd: REPO_ROOT, env: { ...process.env, FORCE_COLOR: '0' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const result: CliResult = { status: code ?? -1, stdout, stderr };
      if (args.includes('--json') && stdout.trim().startsWith('{')) result.json = JSON.parse(stdout);
      resolve(result);
    });
  });
}

/** Run a CLI command with --json; the parsed output, its status and the error when it failed. */
export async function tsplice(args: string[]): Promise<CliResult & { error?: ErrorJson }> {
  const r = await runCli([...args, '--json']);
  const error = r.json?.ok === false ? (r.json.error as ErrorJson) : undefined;
  return { ...r, ...(error ? { error } : {}) };
}

/** `tsplice apply` that must succeed: the redirected function names. */
export async function applyOk(update: Update, pid: number, extra: string[] = []): Promise<CliResult & { functions: string[] }> {
  const r = await tsplice(['apply', update.path, '--pid', String(pid), ...extra]);
  assert.equal(r.status, 0, `apply ${update.id} to ${pid} failed:\n${r.stdout}${r.stderr}`);
  const functions = ((r.json?.functions ?? []) as Array<{ function: string }>).map((f) => f.function);
  return { ...r, functions };
}

export async function undoOk(id: string, pid: number): Promise<CliResult> {
  const r = await tsplice(['undo', id, '--pid', String(pid)]);
  assert.equal(r.status, 0, `undo ${id} in ${pid} failed:\n${r.stdout}${r.stderr}`);
  return r;
}

/** Ids of the updates `tsplice list` shows for pid, oldest first. */
export async function listIds(pid: number): Promise<string[]> {
  const r = await tsplice(['list', '--pid', String(pid)]);
  assert.equal(r.status, 0, `list ${pid} failed:\n${r.stdout}${r.stderr}`);
  return ((r.json?.updates ?? []) as Array<{ id: string }>).map((u) => u.id);
}

/** A command's failure: its status must be 1 and its error code `code`. */
export function expectError(r: CliResult & { error?: ErrorJson }, code: string): ErrorJson {
  assert.equal(r.status, 1, `expected [${code}], got status ${r.status}:\n${r.stdout}${r.stderr}`);
  assert.ok(r.error, `no JSON error in:\n${r.stdout}${r.stderr}`);
  assert.equal(r.error.code, code, `expected [${code}], got [${r.error.code}] ${r.error.message}`);
  return r.error;
}

export interface Target {
  pid: number;
  /** Everything the program printed so far. */
  text(): string;
  lines(): string[];
  /** Whether the process still runs (not exited, not a zombie). */
  alive(): boolean;
  kill(): void;
}

/** Start `command` (a program of the project) detached, its output in a file; waits for a line matching `ready`. */
export async function startTarget(
  cwd: string, command: string, args: string[] = [], ready: RegExp = /^ready/m,
): Promise<Target> {
  const output = join(cwd, `out-${command.replace(/\W/g, '_')}-${Date.now()}-${Math.random().toString(36).slice(2)}.txt`);
  const fd = openSync(output, 'w');
  const child = spawn(join(cwd, command), args, { cwd, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  const pid = child.pid;
  assert.ok(pid, `could not start ${command}`);
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  const text = (): string => (existsSync(output) ? readFileSync(output, 'utf8') : '');
  const target: Target = {
    pid,
    text,
    lines: () => text().split('\n').filter((l) => l !== ''),
    alive: () => !exited && isRunning(pid),
    kill: () => {
      if (exited) return;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    },
  };
  after(() => target.kill());
  await waitUntil(() => ready.test(text()), `${command} to print ${ready}`, 10_000, () => target.alive() ? '' : `; it exited:\n${text()}`);
  return target;
}

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/s.test(stat);
  } catch {
    return false;
  }
}

export async function waitUntil(
  condition: () => boolean, what: string, timeoutMs = 10_000, more: () => string = () => '',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${more()}`);
    await new Promise((r) => setTimeout(r, 15));
  }
}

/** Wait until the program prints a line matching `re` after its first `from` lines; returns that line. */
export async function nextLine(target: Target, re: RegExp, from: number, timeoutMs = 10_000): Promise<string> {
  let found: string | undefined;
  await waitUntil(() => {
    found = target.lines().slice(from).find((l) => re.test(l));
    return found !== undefined;
  }, `a line matching ${re} from ${target.pid}`, timeoutMs, () => `; output so far:\n${target.lines().slice(-20).join('\n')}`);
  return found as string;
}

/** Wait for `count` more lines after the current ones; returns them. */
export async function moreLines(target: Target, count: number, timeoutMs = 10_000): Promise<string[]> {
  const from = target.lines().length;
  await waitUntil(() => target.lines().length >= from + count, `${count} more lines from ${target.pid}`, timeoutMs,
    () => `; alive: ${target.alive()}`);
  return target.lines().slice(from, from + count);
}

/** Talk to a TCP server on localhost: send one line, read the reply until the server closes. */
export async function request(port: number, line: string): Promise<string> {
  const { connect } = await import('node:net');
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setTimeout(5000, () => socket.destroy(new Error(`no reply from port ${port}`)));
    socket.on('connect', () => socket.write(`${line}\n`));
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}

/** The Makefile of a one-program project: `prog` from the given .c files, normal -O2 PIE build. */
export function programMakefile(sources: string[], extra = ''): string {
  const objects = sources.map((s) => s.replace(/\.c$/, '.o')).join(' ');
  return `CC ?= gcc
CFLAGS ?= -O2 -g -Wall
LDLIBS = -lpthread
prog: ${objects}
\t$(CC) $(CFLAGS) -o $@ ${objects} $(LDLIBS)
%.o: %.c
\t$(CC) $(CFLAGS) -c -o $@ $<
${extra}`;
}
