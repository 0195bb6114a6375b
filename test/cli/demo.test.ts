// The README's main command: the live demo must work and say what it did.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';

test('tsplice demo fixes the leak in the running server, with the same pid, and takes it back', () => {
  const r = runCli(['demo', '--json'], { timeoutMs: 120_000 });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  const j = r.json as {
    ok: boolean; before: { leak: string }; after: { leak: string; normal: string }; afterUndo: { leak: string };
    applyFreezeMs: number; traffic: { sent: number; failed: number };
  };
  assert.equal(j.ok, true);
  assert.match(j.before.leak, /api-key=/);
  assert.equal(j.after.leak, 'ECHO hi');
  assert.equal(j.after.normal, 'ECHO hello');
  assert.match(j.afterUndo.leak, /api-key=/);
  assert.ok(j.applyFreezeMs > 0);
  assert.ok(j.traffic.sent > 0);
  assert.equal(j.traffic.failed, 0);
});
