// The stack check in running processes: a function that never leaves a
// thread's stack cannot be replaced (code_busy, nothing changed); one that is
// busy for a moment is replaced on a retry; 64 threads calling the patched
// function in a loop all switch to the new code without a crash.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  applyOk, buildProject, createUpdate, expectError, listIds, moreLines, nextLine, programMakefile, startTarget,
  tsplice, waitUntil, type Files,
} from './harness.js';

describe('the stack check in running processes', { concurrency: 2 }, () => {
  test('a function that is always on a stack: code_busy naming the thread, and the program runs on unchanged', async () => {
    const work = `#include <stdio.h>
#include <unistd.h>
void serve_forever(void)
{
	for (int n = 0;; n++) {
		printf("serve %d\\n", n);
		usleep(20000);
	}
}
`;
    const files: Files = {
      Makefile: programMakefile(['main.c', 'work.c']),
      'main.c': `#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
void serve_forever(void);
static void *server(void *arg)
{
	(void)arg;
	printf("ready tid=%ld\\n", (long)syscall(SYS_gettid));
	serve_forever();
	return NULL;
}
int main(void)
{
	pthread_t t;
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_create(&t, NULL, server, NULL);
	pthread_setname_np(t, "server-loop");
	pthread_join(t, NULL);
}
`,
      'work.c': work,
    };
    const project = buildProject(files);
    const update = await createUpdate(project, 'never', { ...files, 'work.c': work.replace('"serve %d\\n"', '"served %d\\n"') });
    const prog = await startTarget(project.src, 'prog');
    const tid = Number(/ready tid=(\d+)/.exec(prog.text())?.[1]);
    await moreLines(prog, 2);

    const r = await tsplice(['apply', update.path, '--pid', String(prog.pid), '--retries', '3']);
    const error = expectError(r, 'code_busy');
    assert.match(error.message, /serve_forever/);
    assert.match(error.message, new RegExp(`thread ${tid} \\(server-loop\\)`));
    assert.match(error.message, /tried 3 times/);
    const busy = error.busy as Array<{ tid: number; threadName: string; function: string }>;
    assert.ok(busy.some((b) => b.tid === tid && b.function === 'serve_forever' && b.threadName === 'server-loop'), JSON.stringify(busy));

    // Unchanged and still running: the same counter goes on, with the old text; no update is recorded.
    const last = Number(/serve (\d+)$/.exec(prog.lines().at(-1) ?? '')?.[1]);
    const after = await moreLines(prog, 5);
    after.forEach((l, k) => assert.equal(l, `serve ${last + 1 + k}`));
    assert.ok(prog.alive());
    assert.deepEqual(await listIds(prog.pid), []);
  });

  test('a function busy in another thread for a moment is replaced on a retry', async () => {
    const work = `#include <unistd.h>
int tracer_present(void);
/* With wait set, stays here until a tracer has been attached for 1.5 s (20 s at most). */
int hold(int wait)
{
	int traced_for = 0;

	for (int i = 0; wait && i < 2000 && traced_for < 150; i++) {
		if (tracer_present())
			traced_for++;
		usleep(10000);
	}
	return 1;
}
`;
    const files: Files = {
      Makefile: programMakefile(['main.c', 'work.c']),
      'main.c': `#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int hold(int wait);
int tracer_present(void)
{
	char line[128];
	int traced = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "TracerPid:", 10) == 0)
			traced = strtol(line + 10, NULL, 10) != 0;
	if (f)
		fclose(f);
	return traced;
}
static void *worker(void *arg)
{
	(void)arg;
	for (int k = 0;; k++) {
		int v = hold(k == 0);
		printf("hold=%d\\n", v);
		usleep(20000);
	}
	return NULL;
}
int main(void)
{
	pthread_t t;
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_create(&t, NULL, worker, NULL);
	puts("ready");
	pthread_join(t, NULL);
}
`,
      'work.c': work,
    };
    files['main.c'] = files['main.c'].replace('#include <string.h>', '#include <stdlib.h>\n#include <string.h>');
    const project = buildProject(files);
    const update = await createUpdate(project, 'moment', { ...files, 'work.c': work.replace('return 1;', 'return 2;') });
    const prog = await startTarget(project.src, 'prog');
    assert.deepEqual(prog.lines(), ['ready'], 'the worker is still in hold');
    // 30 tries 100 ms apart: the first ones find hold() busy, a later one finds it free.
    const r = await applyOk(update, prog.pid, ['--retries', '30']);
    const tries = r.json?.tries as number;
    assert.ok(tries > 1, `tries: ${tries}`);
    await nextLine(prog, /^hold=1$/, 0);
    const from = prog.lines().length;
    await nextLine(prog, /^hold=2$/, from);
    assert.deepEqual(prog.lines().slice(from).filter((l) => l !== 'hold=2'), []);
  });

  test('64 threads calling the patched function in a loop: no crash, every call after the apply is new', async () => {
    const work = `int answer(int id)
{
	if (id < 0)
		return -1;
	return id % 7 + 100;
}
`;
    const files: Files = {
      Makefile: programMakefile(['main.c', 'work.c']),
      'main.c': `#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#define THREADS 64
int answer(int id);
/* Set by SIGUSR1, which the test sends once tsplice apply has returned. */
static volatile sig_atomic_t applied;
static long calls_after[THREADS];
static int seen_new[THREADS], old_after_apply[THREADS], old_after_new[THREADS];
static void on_usr1(int sig)
{
	(void)sig;
	applied = 1;
}
static void *caller(void *arg)
{
	long id = (long)arg;

	for (;;) {
		int after_apply = applied;
		int v = answer((int)id);
		int is_new = v == (int)(id % 7) + 200;

		if (!is_new && v != (int)(id % 7) + 100)
			__atomic_store_n(&old_after_apply[id], 1000, __ATOMIC_RELAXED); /* neither old nor new */
		if (is_new)
			__atomic_store_n(&seen_new[id], 1, __ATOMIC_RELAXED);
		else if (__atomic_load_n(&seen_new[id], __ATOMIC_RELAXED))
			__atomic_add_fetch(&old_after_new[id], 1, __ATOMIC_RELAXED);
		if (after_apply) {
			if (!is_new)
				__atomic_add_fetch(&old_after_apply[id], 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&calls_after[id], 1, __ATOMIC_RELAXED);
		}
		usleep(5000);
	}
	return NULL;
}
int main(void)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	pthread_t t;

	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigaction(SIGUSR1, &sa, NULL);
	for (long i = 0; i < THREADS; i++)
		pthread_create(&t, NULL, caller, (void *)i);
	puts("ready");
	for (;;) {
		long least = -1;
		int news = 0, bad = 0, regressed = 0;

		for (int i = 0; i < THREADS; i++) {
			long c = __atomic_load_n(&calls_after[i], __ATOMIC_RELAXED);
			if (least < 0 || c < least)
				least = c;
			news += __atomic_load_n(&seen_new[i], __ATOMIC_RELAXED);
			bad += __atomic_load_n(&old_after_apply[i], __ATOMIC_RELAXED);
			regressed += __atomic_load_n(&old_after_new[i], __ATOMIC_RELAXED);
		}
		printf("applied=%d least=%ld new=%d bad=%d regressed=%d\\n", (int)applied, least, news, bad, regressed);
		usleep(50000);
	}
}
`,
      'work.c': work,
    };
    const project = buildProject(files);
    const update = await createUpdate(project, 'many', { ...files, 'work.c': work.replace('+ 100;', '+ 200;') });
    const prog = await startTarget(project.src, 'prog');
    await moreLines(prog, 2);
    assert.match(prog.lines().at(-1) ?? '', /new=0 bad=0 regressed=0$/);
    await applyOk(update, prog.pid, ['--retries', '20']);
    process.kill(prog.pid, 'SIGUSR1');
    // Every thread made at least 5 calls after the apply returned.
    await waitUntil(() => /least=([5-9]|\d\d+) /.test(prog.lines().at(-1) ?? ''), 'every thread to call 5 times after apply', 15_000,
      () => `; last: ${prog.lines().at(-1)}`);
    assert.match(prog.lines().at(-1) ?? '', /^applied=1 least=\d+ new=64 bad=0 regressed=0$/);
    assert.ok(prog.alive());
    assert.deepEqual(await listIds(prog.pid), ['many']);
  });
});
