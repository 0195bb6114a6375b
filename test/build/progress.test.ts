import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ProgressStream, createProgress, silentProgress } from '../../src/progress.js';

function capture(isTTY: boolean): ProgressStream & { text: string } {
  const stream = {
    isTTY,
    text: '',
    write(t: string) {
      stream.text += t;
      return true;
    },
  };
  return stream;
}

describe('progress', () => {
  it('shows steps with a spinner and a final mark on a terminal', async () => {
    const stream = capture(true);
    const progress = createProgress({ stream, intervalMs: 5 });
    progress.step('building the original source');
    progress.detail('cc -c   main.c');
    await new Promise((r) => setTimeout(r, 30));
    progress.step('building the patched source'); // ends the first step as done
    progress.fail();
    const finished = stream.text.split('\n').filter((l) => l !== '');
    assert.match(finished[0], /✓ building the original source \(\d+\.\ds\)$/);
    assert.match(finished[1], /✗ building the patched source \(\d+\.\ds\)$/);
    assert.match(stream.text, /cc -c main\.c/);
    // The spinner redrew the line while waiting.
    assert.ok((stream.text.match(/\r\x1b\[2K/g) ?? []).length >= 4);
  });

  it('writes nothing when not a terminal, or when quiet', () => {
    for (const [stream, quiet] of [
      [capture(false), false],
      [capture(true), true],
    ] as const) {
      const progress = createProgress({ stream, quiet });
      assert.equal(progress, silentProgress);
      progress.step('x');
      progress.done();
      assert.equal(stream.text, '');
    }
  });

  it('ignores done/fail/detail without a running step', () => {
    const stream = capture(true);
    const progress = createProgress({ stream });
    progress.detail('nothing');
    progress.done();
    progress.fail();
    assert.equal(stream.text, '');
  });
});
