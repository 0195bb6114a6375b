// Seize, freeze, resume, detach and remote system calls on real processes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { isTspliceError } from '../../src/errors.js';
import { findMapping, readMaps } from '../../src/targets/process/maps.js';
import { PROT_EXEC, PROT_READ, remoteMmap, remoteMunmap, REL32_REACH } from '../../src/targets/process/remote-syscall.js';
import { ProcessSession } from '../../src/targets/process/session.js';
import { tempDir } from '../helpers/tmp.js';
import { startProgram, waitFor } from './target-program.js';

// 64 threads: 61 workers (half spin, half sleep in nanosleep), a reader blocked
// in read() on a pipe fed by a writer thread, and main, which sleeps in
// nanosleep and reports. A forked parent watches for stops it could notice.
const BUSY_PROCESS = String.raw`
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#define WORKERS 61
static volatile long counters[WORKERS];
static volatile int signals_seen, read_errors;
static volatile long reads_done;
static int pipe_fds[2];
static void on_signal(int s) { (void)s; signals_seen++; }
static void *worker(void *arg) {
  long i = (long)arg;
  for (;;) {
    counters[i]++;
    if (i % 2) { struct timespec ts = {0, 1000000}; nanosleep(&ts, 0); }
  }
  return 0;
}
static void *writer(void *arg) {
  (void)arg;
  for (unsigned char n = 0;; n++) {
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, 0);
    if (write(pipe_fds[1], &n, 1) != 1) read_errors++;
  }
  return 0;
}
static void *reader(void *arg) {
  (void)arg;
  for (unsigned char expect = 0;; expect++) {
    unsigned char got;
    if (read(pipe_fds[0], &got, 1) != 1 || got != expect) { read_errors++; expect = got; }
    reads_done++;
  }
  return 0;
}
int main(void) {
  pid_t child = fork();
  if (child > 0) {
    int status;
    pid_t r = waitpid(child, &status, WUNTRACED | WCONTINUED);
    printf("parent saw %d status 0x%x\n", (int)r, status);
    fflush(stdout);
    return 0;
  }
  for (int s = 1; s < 32; s++) if (s != SIGKILL && s != SIGSTOP) signal(s, on_signal);
  if (pipe(pipe_fds) != 0) return 1;
  pthread_t t;
  for (long i = 0; i < WORKERS; i++) pthread_create(&t, 0, worker, (void *)i);
  pthread_create(&t, 0, writer, 0);
  pthread_create(&t, 0, reader, 0);
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  long last[WORKERS] = {0};
  for (;;) {
    struct timespec ts = {0, 100000000}, a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int r = nanosleep(&ts, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    int progressed = 0;
    for (int i = 0; i < WORKERS; i++) { if (counters[i] != last[i]) progressed++; last[i] = counters[i]; }
    printf("tick r=%d ms=%ld signals=%d read_errors=%d reads=%ld progressed=%d\n",
           r, ms, signals_seen, read_errors, reads_done, progressed);
    fflush(stdout);
  }
}
`;

interface Tick {
  r: number;
  ms: number;
  signals: number;
  readErrors: number;
  reads: number;
  progressed: number;
}

function ticks(text: string): Tick[] {
  return [...text.matchAll(/^tick r=(-?\d+) ms=(\d+) signals=(\d+) read_errors=(\d+) reads=(\d+) progressed=(\d+)$/gm)].map((m) => ({
    r: Number(m[1]),
    ms: Number(m[2]),
    signals: Number(m[3]),
    readErrors: Number(m[4]),
    reads: Number(m[5]),
    progressed: Number(m[6]),
  }));
}

test('64 threads: freeze, resume and detach leave every thread working, unaware', async () => {
  const program = await startProgram(tempDir(), 'busy', BUSY_PROCESS);
  const session = ProcessSession.attach(program.pid);
  try {
    assert.equal(session.threadIds().length, 64);
    for (let i = 0; i < 5; i++) {
      const threads = session.freeze();
      assert.equal(threads.length, 64);
      assert.ok(threads.every((t) => t.regs.rip > 0n && t.regs.rsp > 0n));
      // Every thread is really stopped: its state is "t" (tracing stop).
      for (const t of threads) {
        const state = /State:\s+(\S)/.exec(readFileSync(`/proc/${program.pid}/task/${t.tid}/status`, 'utf8'))![1];
        assert.equal(state, 't', `thread ${t.tid}`);
      }
      session.resume();
      await new Promise((r) => setTimeout(r, 30));
    }
    // Inject system calls while the main thread sleeps in nanosleep (the first thread stopped).
    const exe = readMaps(program.pid).find((m) => m.path === program.binary)!;
    const region = remoteMmap(session, { near: exe.start, size: 10000, prot: PROT_READ | PROT_EXEC, name: 'tsplice-test:region' });
    assert.equal(region.size, 12288n);
    const distance = region.start > exe.start ? region.start - exe.start : exe.start - region.start;
    assert.ok(distance < REL32_REACH, 'within rel32 reach');
    const mapping = findMapping(readMaps(program.pid), region.start)!;
    assert.match(mapping.path, /tsplice-test:region/);
    assert.equal(mapping.perms.slice(0, 3), 'r-x');
    remoteMunmap(session, region);
    assert.equal(findMapping(readMaps(program.pid), region.start), undefined);
  } finally {
    session.detach();
  }
  assert.match(readFileSync(`/proc/${program.pid}/status`, 'utf8'), /TracerPid:\s+0\n/);
  const before = ticks(program.text()).length;
  await waitFor(() => ticks(program.text()).length >= before + 4, 'more ticks after detach');
  const all = ticks(program.text());
  for (const tick of all) {
    assert.equal(tick.r, 0, 'nanosleep was never cut short');
    assert.ok(tick.ms >= 100, `a restarted nanosleep still sleeps its full time (${tick.ms} ms)`);
    assert.equal(tick.signals, 0, 'the program saw no signal');
    assert.equal(tick.readErrors, 0, 'read() returned every byte in order');
  }
  const last = all[all.length - 1];
  assert.ok(last.reads > all[before - 1].reads, 'the reader keeps reading');
  await waitFor(() => ticks(program.text()).some((t, i) => i >= before && t.progressed === 61), 'every worker to progress');
  assert.doesNotMatch(program.text(), /parent saw/, 'the parent noticed no stop');
});

test('a pid that does not exist is target_gone', () => {
  const gone = Number(execFileSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).trim());
  assert.throws(
    () => ProcessSession.attach(gone),
    (e) => isTspliceError(e) && e.code === 'target_gone' && /no process with id/.test(e.message),
  );
});

const SIMPLE = String.raw`
#include <stdio.h>
#include <unistd.h>
#include <pthread.h>
static void *idle(void *a) { (void)a; for (;;) pause(); return 0; }
int main(void) {
  pthread_t t;
  for (int i = 0; i < 3; i++) pthread_create(&t, 0, idle, 0);
  printf("ready\n");
  fflush(stdout);
  for (;;) usleep(10000);
}
`;

test('a process killed mid-operation is target_gone, never a hang', async () => {
  const program = await startProgram(tempDir(), 'simple', SIMPLE);
  const session = ProcessSession.attach(program.pid);
  try {
    session.freeze();
    session.resume();
    program.kill();
    await waitFor(() => !/^State:\s+[RS]/m.test(safeRead(`/proc/${program.pid}/status`)), 'the kill');
    assert.throws(
      () => session.freeze(),
      (e) => isTspliceError(e) && e.code === 'target_gone',
    );
    assert.throws(
      () => remoteMmap(session, { size: 4096, prot: PROT_READ }),
      (e) => isTspliceError(e) && e.code === 'target_gone',
    );
  } finally {
    session.detach();
  }
});

test('a killed frozen process is target_gone on resume-and-freeze', async () => {
  const program = await startProgram(tempDir(), 'simple2', SIMPLE);
  const session = ProcessSession.attach(program.pid);
  try {
    session.freeze();
    program.kill();
    // SIGKILL ends even stopped threads; resuming them must not hang or throw.
    session.resume();
    assert.throws(
      () => session.freeze(),
      (e) => isTspliceError(e) && e.code === 'target_gone',
    );
  } finally {
    session.detach();
  }
});

test('a process that is already traced is a permission error that says so', async () => {
  const program = await startProgram(tempDir(), 'simple3', SIMPLE);
  const first = ProcessSession.attach(program.pid);
  try {
    assert.throws(
      () => ProcessSession.attach(program.pid),
      (e) => isTspliceError(e) && e.code === 'permission' && /already being traced/.test(e.message),
    );
  } finally {
    first.detach();
  }
  // After detaching, it can be traced again.
  ProcessSession.attach(program.pid).detach();
});

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
