// `tsplice vm`: boot the pinned Debian kernel in a throwaway QEMU guest, run one
// command there with tsplice available, and hand back its output and exit status.

import { spawn, type StdioOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TspliceError } from '../../../errors.js';
import { STATUS_EXIT_PREFIX, STATUS_STARTED } from './guest-init.js';
import { ensureStaticInitramfs, findProjectFiles, type RunInitramfsOptions, writeRunInitramfs } from './initramfs.js';
import { defaultCacheDir, ensureKernelImage, type KernelPin } from './kernel-packages.js';
import { progressSink, type ProgressOption } from './progress.js';
import { findOnPath, findQemu, GUEST_CHANNELS, type GuestChannel, qemuArguments, type QemuOptions } from './qemu.js';

export interface VmRunOptions {
  /** The program and its arguments, run in the guest as given (no shell). */
  command: string[];
  /** Host files or directories to put in the guest at the same path. */
  copy?: string[];
  /** Guest memory; default 1024. */
  memoryMb?: number;
  /** Virtual CPUs; default 2. */
  cpus?: number;
  /** Kill the guest after this long (boot included); default 300 000 (5 min). */
  timeoutMs?: number;
  /** Progress lines (download, boot); default: on stderr when it is a terminal. */
  progress?: ProgressOption;
  /** Do not stream the command's output to this process's stdout/stderr while it runs (it is returned either way). */
  quiet?: boolean;
  /** Working directory in the guest; default the current one if it exists there, else "/". */
  cwd?: string;
  /** Environment variables for the command (besides PATH, HOME, TERM). */
  env?: Record<string, string>;
  /** More kernel modules of the pinned kernel to load before the command (by name). */
  modules?: string[];
  /** Extra kernel command-line words, e.g. "nokaslr". */
  kernelArgs?: string[];
  /** Also copy development-only node_modules (tsx, typescript...). */
  includeDevDependencies?: boolean;
  pin?: KernelPin;
  cacheDir?: string;
}

export interface VmRunResult {
  /** The command's exit status (128+N when killed by signal N). */
  exitCode: number;
  stdout: string;
  stderr: string;
  /** The kernel console (ttyS0): boot messages, dmesg output printed during the run. */
  console: string;
  /** The guest's `uname -r`. */
  release: string;
  /** From starting QEMU to the command starting, and to the guest powering off. */
  bootMs: number;
  totalMs: number;
}

/** The descriptor number the initrd has in QEMU. */
const INITRD_FD = 3;
const DEFAULT_MEMORY_MB = 1024;
const DEFAULT_CPUS = 2;
const DEFAULT_TIMEOUT_MS = 300_000;
/** The kernel could not unpack the whole initramfs (its tmpfs was full). */
const UNPACK_FAILED = /Initramfs unpacking failed/;
const OUT_OF_MEMORY = /Out of memory|out of memory|deadlocked on memory/;
/** Kept of the console for results and error messages. */
const CONSOLE_LIMIT = 4 << 20;

export async function vmRun(options: VmRunOptions): Promise<VmRunResult> {
  if (options.command.length === 0) throw new TspliceError('bad_input', 'no command given to run in the VM');
  for (const name of Object.keys(options.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new TspliceError('bad_input', `"${name}" is not a valid environment variable name`, { name });
    }
  }
  for (const [name, value, min] of [
    ['memoryMb', options.memoryMb, 64],
    ['cpus', options.cpus, 1],
    ['timeoutMs', options.timeoutMs, 1],
  ] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value >= min)) {
      throw new TspliceError('bad_input', `${name} must be a whole number of at least ${min}, not ${value}`, { [name]: value });
    }
  }
  const progress = progressSink(options.progress);
  const qemu = findQemu();
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const memoryMb = options.memoryMb ?? DEFAULT_MEMORY_MB;
  const cpus = options.cpus ?? DEFAULT_CPUS;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const copy = (options.copy ?? []).map((p) => resolve(p));

  const image = await ensureKernelImage({ pin: options.pin, cacheDir, progress });
  const staticArchive = ensureStaticInitramfs({ image, cacheDir });
  const project = findProjectFiles(dirname(fileURLToPath(import.meta.url)), options.includeDevDependencies);
  const guestDirs = [...copy, ...(project?.paths ?? [])];
  const cwd = options.cwd ?? (existsInGuest(process.cwd(), guestDirs) ? process.cwd() : '/');

  // The initrd exists only as an open descriptor QEMU inherits: no file is left
  // behind if this process is killed.
  const initrdFd = buildInitrd(staticArchive, {
    image,
    command: options.command,
    cwd,
    env: options.env ?? {},
    copy,
    project,
    modules: options.modules ?? [],
  });
  try {
    const initrdBytes = fstatSync(initrdFd).size;
    checkMemory(initrdBytes, memoryMb);
    progress?.(
      `booting ${image.release} (QEMU TCG, ${cpus} CPU${cpus > 1 ? 's' : ''}, ${memoryMb} MB, initramfs ${(initrdBytes / 1e6).toFixed(0)} MB)`,
    );
    const qemuOptions = {
      vmlinuz: image.vmlinuz,
      initrd: `/proc/self/fd/${INITRD_FD}`,
      memoryMb,
      cpus,
      kernelArgs: options.kernelArgs ?? [],
    };
    const outcome = await runQemu(qemu, qemuOptions, {
      initrdFd,
      timeoutMs,
      quiet: options.quiet ?? false,
      onStarted: (ms) => progress?.(`guest up in ${(ms / 1000).toFixed(1)} s, running ${describe(options.command)}`),
    });
    // A partly unpacked initramfs can still run something: never trust a run after it.
    if (outcome.exitCode === undefined || UNPACK_FAILED.test(outcome.console)) {
      throw guestFailure(outcome, timeoutMs, memoryMb);
    }
    progress?.(`command exited with status ${outcome.exitCode} after ${(outcome.totalMs / 1000).toFixed(1)} s`);
    return {
      exitCode: outcome.exitCode,
      stdout: outcome.stdout,
      stderr: outcome.stderr,
      console: outcome.console,
      release: image.release,
      bootMs: outcome.bootMs ?? outcome.totalMs,
      totalMs: outcome.totalMs,
    };
  } finally {
    closeSync(initrdFd);
  }
}

/** The command as one short line, for progress messages. */
function describe(command: string[]): string {
  const line = command.join(' ').replace(/\s+/g, ' ');
  return line.length > 80 ? `${line.slice(0, 77)}...` : line;
}

/** Write this run's initramfs to a temporary file, open it, and remove the file. */
function buildInitrd(staticArchive: string, run: Omit<RunInitramfsOptions, 'staticArchive' | 'output'>): number {
  const work = mkdtempSync(join(tmpdir(), 'tsplice-vm-'));
  try {
    const output = join(work, 'initrd.cpio');
    writeRunInitramfs({ ...run, staticArchive, output });
    return openSync(output, 'r');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** True when path will be a directory in the guest: a copied directory, inside one, or a parent of a copied path. */
function existsInGuest(path: string, copied: string[]): boolean {
  return copied.some((c) => {
    const rel = relative(c, path);
    const inside = rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'));
    if (inside) return rel === '' ? isDirectory(c) : isDirectory(path);
    const up = relative(path, c);
    return !up.startsWith('..') && !up.startsWith('/');
  });
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The guest's root filesystem is a tmpfs, which may fill only half of the
 * memory the kernel sees (about 35 MB less than QEMU gives it), and holds the
 * unpacked initramfs plus whatever the command writes to /tmp.
 */
function checkMemory(initrdBytes: number, memoryMb: number): void {
  const neededMb = Math.ceil((2.2 * initrdBytes) / (1 << 20)) + 128;
  if (memoryMb < neededMb) {
    throw new TspliceError(
      'out_of_memory',
      `the VM needs at least ${neededMb} MB for an initramfs of ${Math.round(initrdBytes / (1 << 20))} MB; ` +
        `give it more memory (memoryMb / --memory) or copy less into it`,
      { memoryMb, neededMb, initrdBytes },
    );
  }
}

interface QemuOutcome {
  exitCode?: number;
  stdout: string;
  stderr: string;
  console: string;
  qemuStderr: string;
  qemuExit: number | null;
  qemuSignal: NodeJS.Signals | null;
  timedOut: boolean;
  bootMs?: number;
  totalMs: number;
}

interface RunQemuOptions {
  /** Open descriptor of the initrd, given to QEMU as INITRD_FD. */
  initrdFd: number;
  timeoutMs: number;
  quiet: boolean;
  onStarted: (ms: number) => void;
}

/** Listen on one abstract Unix socket per guest channel; each takes QEMU's one connection. */
async function listenForChannels(): Promise<{ sockets: Record<GuestChannel, string>; servers: Server[] }> {
  const sockets = {} as Record<GuestChannel, string>;
  const servers: Server[] = [];
  const prefix = `tsplice-vm-${process.pid}-${randomBytes(6).toString('hex')}`;
  for (const channel of GUEST_CHANNELS) {
    sockets[channel] = `${prefix}-${channel}`;
    const server = createServer();
    server.maxConnections = 1;
    server.listen(`\0${sockets[channel]}`);
    servers.push(server);
  }
  await Promise.all(servers.map((server) => once(server, 'listening')));
  return { sockets, servers };
}

/** Resolves once the channel's connection has closed (all its data read), or the server closed unused. */
function drain(server: Server, onData: (chunk: Buffer) => void): Promise<void> {
  return new Promise((done) => {
    let connected = false;
    server.once('connection', (connection) => {
      connected = true;
      server.close(); // one connection only: stop listening
      connection.on('data', onData);
      connection.on('error', () => undefined);
      connection.on('close', () => done());
    });
    server.once('close', () => {
      if (!connected) done();
    });
  });
}

async function runQemu(qemu: string, qemuOptions: Omit<QemuOptions, 'sockets'>, options: RunQemuOptions): Promise<QemuOutcome> {
  const { sockets, servers } = await listenForChannels();
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const qemuStderr: Buffer[] = [];
  let console = '';
  let status = '';
  let bootMs: number | undefined;
  let timedOut = false;
  const started = Date.now();

  const onData: Record<GuestChannel, (chunk: Buffer) => void> = {
    console: (chunk) => {
      console += chunk.toString('utf8');
      if (console.length > CONSOLE_LIMIT) console = console.slice(-CONSOLE_LIMIT);
    },
    stdout: (chunk) => {
      stdout.push(chunk);
      if (!options.quiet) process.stdout.write(chunk);
    },
    stderr: (chunk) => {
      stderr.push(chunk);
      if (!options.quiet) process.stderr.write(chunk);
    },
    status: (chunk) => {
      status += chunk.toString('utf8');
      if (bootMs === undefined && status.split('\n').includes(STATUS_STARTED)) {
        bootMs = Date.now() - started;
        options.onStarted(bootMs);
      }
    },
  };
  const drained = GUEST_CHANNELS.map((channel, i) => drain(servers[i], onData[channel]));

  // setpriv --pdeathsig: if this process dies, the kernel kills QEMU too.
  const args = qemuArguments({ ...qemuOptions, sockets });
  const setpriv = findOnPath('setpriv');
  const [file, argv] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', qemu, ...args]] : [qemu, args];
  const stdio: StdioOptions = ['ignore', 'ignore', 'pipe'];
  stdio[INITRD_FD] = options.initrdFd;
  const child = spawn(file, argv, { stdio });
  if (!child.stderr) throw new TspliceError('internal', 'no stderr pipe from QEMU');
  child.stderr.on('data', (chunk: Buffer) => qemuStderr.push(chunk));
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, options.timeoutMs);

  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolvePromise, reject) => {
      child.on('error', (e) => reject(new TspliceError('internal', `could not start ${qemu}: ${e.message}`, { qemu })));
      child.on('close', (exitCode, exitSignal) => resolvePromise([exitCode, exitSignal]));
    });
    for (const server of servers) server.close();
    await Promise.all(drained);
    const exitLine = status.split('\n').find((line) => line.startsWith(STATUS_EXIT_PREFIX));
    return {
      exitCode: exitLine === undefined ? undefined : Number(exitLine.slice(STATUS_EXIT_PREFIX.length)),
      stdout: Buffer.concat(stdout).toString('utf8'),
      stderr: Buffer.concat(stderr).toString('utf8'),
      console,
      qemuStderr: Buffer.concat(qemuStderr).toString('utf8'),
      qemuExit: code,
      qemuSignal: signal,
      timedOut,
      bootMs,
      totalMs: Date.now() - started,
    };
  } finally {
    clearTimeout(timer);
    for (const server of servers) server.close();
  }
}

/** Why the guest stopped without reporting the command's exit status. */
function guestFailure(outcome: QemuOutcome, timeoutMs: number, memoryMb: number): TspliceError {
  const consoleTail = outcome.console.trimEnd().split('\n').slice(-15).join('\n');
  const details = { console: consoleTail, qemuStderr: outcome.qemuStderr.trim(), qemuExit: outcome.qemuExit };
  if (outcome.timedOut) {
    const where = outcome.bootMs === undefined ? 'before the command started (boot hung)' : 'while the command ran';
    return new TspliceError(
      'target_gone',
      `the VM did not finish within ${timeoutMs / 1000} s and was killed ${where}; ` +
        `raise the timeout if the command needs longer. Last console lines:\n${consoleTail}`,
      { ...details, reason: 'timeout' },
    );
  }
  if (UNPACK_FAILED.test(outcome.console) || OUT_OF_MEMORY.test(outcome.console)) {
    return new TspliceError(
      'out_of_memory',
      `the VM ran out of memory (${memoryMb} MB); give it more (memoryMb / --memory). Last console lines:\n${consoleTail}`,
      { ...details, memoryMb },
    );
  }
  if (outcome.qemuExit !== 0 && outcome.qemuStderr.trim()) {
    return new TspliceError('internal', `QEMU failed: ${outcome.qemuStderr.trim()}`, details);
  }
  const panic = /Kernel panic - not syncing:.*/.exec(outcome.console)?.[0];
  return new TspliceError(
    'target_gone',
    `the VM stopped before the command finished${panic ? ` (${panic})` : ''}. Last console lines:\n${consoleTail}`,
    details,
  );
}
