import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDepFile } from '../../src/build/deps.js';

describe('parseDepFile', () => {
  it('reads prerequisites over continued lines, resolved against the cwd', () => {
    const text = 'sub/b.o: sub/b.c ../inc.h \\\n /usr/include/stdio.h \\\n  my\\ file.h\n';
    assert.deepEqual(parseDepFile(text, '/t'), ['/t/sub/b.c', '/inc.h', '/usr/include/stdio.h', '/t/my file.h']);
  });

  it('ignores the phony targets of -MP and unescapes $$', () => {
    const text = 'a.o: a.c x$$y.h inc.h\n\ninc.h:\n\nx$$y.h:\n';
    assert.deepEqual(parseDepFile(text, '/t'), ['/t/a.c', '/t/x$y.h', '/t/inc.h']);
  });
});
