// Which functions the object diff reports, for the rules that decide it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { diffUnit } from '../../src/analysis/diff.js';
import { buildObject, dataSummary, diffSources, functionSummary, LEVELS, reasonOf } from './units.js';

function hasFunction(source: string, level: (typeof LEVELS)[number], name: string): boolean {
  return buildObject(source, level).symbols.some((s) => s.name === name);
}

for (const level of LEVELS) {
  describe(`object diff at ${level}`, () => {
    it('reports a changed call target, and not a caller of a changed function', () => {
      const base = `
__attribute__((noinline)) int bar(int x) { return x + 1; }
__attribute__((noinline)) int baz(int x) { return x + 2; }
int f(int x) { return bar(x) * 3; }
int g(int x) { return bar(x) - 1; }
`;
      const retarget = diffSources({ pre: base, post: base.replace('return bar(x) * 3', 'return baz(x) * 3') }, level);
      assert.deepEqual(functionSummary(retarget), ['changed f']);
      assert.match(reasonOf(retarget, 'f'), /calls baz instead of bar/);

      const calleeChanged = diffSources({ pre: base, post: base.replace('x + 1;', 'x + 10;') }, level);
      assert.deepEqual(functionSummary(calleeChanged), ['changed bar']);
      assert.match(reasonOf(calleeChanged, 'bar'), /code differs at bar\+0x[0-9a-f]+/);
    });

    it('reports deleted and new functions', () => {
      const pre = 'int old_api(int x) { return x * 7; }\nint keep(int x) { return x - 3; }\n';
      const post = 'int new_api(int x) { return x * 9; }\nint keep(int x) { return x - 3; }\n';
      const d = diffSources({ pre, post }, level);
      assert.deepEqual(functionSummary(d), ['deleted old_api', 'new new_api']);
      assert.equal(reasonOf(d, 'new_api'), 'new function');
      const deleted = d.functions.find((f) => f.kind === 'deleted');
      assert.equal(deleted?.pre?.section, '.text.old_api');
      assert.equal(deleted?.post, undefined);
    });

    it('reports every caller a changed static function was inlined into, and the function itself', () => {
      const pre = `
extern int ext(int);
static int check(int x) { if (x < 0) return ext(-x); return x * 2; }
int ca(int x) { return check(x) + 1; }
int cb(int x) { return check(x + 5) * 3; }
int cc(int *p) { return check(*p) - 2; }
int (*checker(void))(int) { return check; }
int other(int x) { return ext(x) + 4; }
`;
      const post = pre.replace('return x * 2;', 'return x * 3;');
      const d = diffSources({ pre, post }, level);
      // -O0 inlines nothing: the callers call check and stay as they are.
      const expected = level === '-O0'
        ? ['changed check']
        : ['changed ca', 'changed cb', 'changed cc', 'changed check'];
      assert.deepEqual(functionSummary(d), expected);
    });

    it('pairs static locals whose numbers changed and reports only the new one', () => {
      const pre = `
int f(void) { static int count; return ++count; }
int g(void) { static int count; return count += 2; }
`;
      const post = `
int e(void) { static int count; return count += 3; }
${pre}`;
      const d = diffSources({ pre, post }, level);
      assert.deepEqual(functionSummary(d), ['new e']);
      assert.equal(d.data.length, 1);
      assert.equal(d.data[0].kind, 'new');
      assert.match(d.data[0].symbol, /^count\.\d+$/);
    });

    it('pairs __func__ and assert strings across renumbering', () => {
      const pre = `
#include <assert.h>
#include <stdio.h>
int f(int x) { assert(x > 0); printf("%s\\n", __func__); return x; }
int g(int x) { assert(x < 9); printf("%s\\n", __func__); return x + 1; }
`;
      const post = pre.replace('int f(int x)', 'int e(int x) { assert(x != 3); return x; }\nint f(int x)');
      // Keep __LINE__ of f and g as they were: put e on the same line as f.
      const d = diffSources({ pre, post: post.replace('return x; }\nint f', 'return x; } int f') }, level);
      assert.deepEqual(functionSummary(d), ['new e']);
      assert.ok(d.data.every((c) => c.kind === 'new'), JSON.stringify(dataSummary(d)));
    });

    it('reports a changed clone (constprop/isra) under its clone name, not its callers', () => {
      const pre = `
extern int ext(int);
struct big { int a, b, c, d, e, f; };
static int __attribute__((noinline)) scale(int x, int k) { return ext(x) * k + ext(k) + ext(x + k); }
int s1(int x) { return scale(x, 7); }
int s2(int x) { return scale(x + 1, 7) + 1; }
static int __attribute__((noinline)) pick(const struct big *p) { int b = p->b, e = p->e; return ext(b) + ext(e) * b; }
int usepick(struct big *s) { return pick(s); }
int usepick2(struct big *s) { return pick(s + 1); }
`;
      const post = pre.replace('ext(x + k)', 'ext(x - k)').replace('ext(e) * b', 'ext(e) * b * 2');
      const d = diffSources({ pre, post }, level);
      const expected = level === '-O0'
        ? ['changed pick', 'changed scale']
        : ['changed pick.isra.0', 'changed scale.constprop.0'];
      assert.deepEqual(functionSummary(d), expected);
    });

    it('folds a .cold part into its function and handles .part clones', () => {
      const pre = `
#include <stdio.h>
extern int ext(int);
__attribute__((cold, noinline)) void oops(const char *m) { fprintf(stderr, "oops %s\\n", m); }
int guarded(int x) {
  if (__builtin_expect(x > 1000, 0)) { oops("big"); fprintf(stderr, "bad x=%d\\n", x); return -1; }
  return ext(x) + 5;
}
int work(int x) {
  if (x < 0) return -1;
  if (__builtin_expect(x > 100000, 0)) {
    fprintf(stderr, "too big: %d\\n", x); ext(1); ext(2); ext(3); ext(4); ext(x); ext(x + 1); ext(x * 3);
    return 5;
  }
  return x + 1;
}
int callwork(int x) { return work(x) + work(x + 1); }
int unrelated(int x) { return ext(x) * 11; }
`;
      const post = pre.replace('too big: %d', 'far too big: %d').replace('bad x=', 'bad value x=');
      if (level === '-O2') {
        const names = buildObject(pre, level).symbols.map((s) => s.name);
        assert.ok(names.includes('guarded.cold') && names.includes('work.part.0'), `fixture clones: ${names}`);
      }
      const d = diffSources({ pre, post }, level);
      const expected = level === '-O0' ? ['changed guarded', 'changed work'] : ['changed guarded', 'changed work.part.0'];
      assert.deepEqual(functionSummary(d), expected);
      assert.match(reasonOf(d, 'guarded'), /string literal changed: "bad x=%d\\n" → "bad value x=%d\\n"/);
      if (level === '-O2') assert.match(reasonOf(d, 'guarded'), /guarded\.cold\+0x/);
    });

    it('pairs functions across .text.unlikely/.hot/.startup prefixes', () => {
      const pre = `
extern int ext(int);
__attribute__((cold, noinline)) int rare(int x) { return ext(x) * 5; }
__attribute__((hot)) int fast(int x) { return ext(x) + 2; }
int mover(int x) { return ext(x) - 1; }
int main(int argc, char **argv) { (void)argv; return (argc > 5 ? rare(argc) : 0) + fast(argc); }
`;
      const post = pre.replace('* 5', '* 6').replace('fast(argc); }', 'fast(argc) + 1; }')
        .replace('int mover', '__attribute__((cold)) int mover');
      const d = diffSources({ pre, post }, level);
      const names = functionSummary(d);
      assert.ok(names.includes('changed rare') && names.includes('changed main'), `${names}`);
      assert.ok(!names.some((n) => n.includes('fast')), `${names}`);
      assert.ok(names.every((n) => n.startsWith('changed ')), `moved functions stay paired: ${names}`);
      const section = (fn: string): string | undefined => d.functions.find((f) => f.function === fn)?.section;
      if (level === '-O2') {
        assert.equal(section('rare'), '.text.unlikely.rare');
        assert.equal(section('main'), '.text.startup.main');
        const mover = d.functions.find((f) => f.function === 'mover');
        if (mover) assert.equal(mover.pre?.section, '.text.mover');
      }
    });

    it('ignores debug info, notes and unwind tables', () => {
      const pre = 'extern int ext(int);\nint f(int x) { return ext(x) + 1; }\nint g(int x) { return ext(x) * 2; }\n';
      const post = `/* a comment\n   that moves\n   every line */\n${pre}`;
      const flags = ['-g'];
      const preObj = buildObject(pre, level, flags);
      const postObj = buildObject(post, level, flags);
      const debugLine = (o: typeof preObj): Buffer | undefined => o.sections.find((s) => s.name === '.debug_line')?.data;
      assert.notDeepEqual(debugLine(preObj), debugLine(postObj), 'the fixture must change debug info');
      const d = diffUnit({ unit: 'unit.c', pre: preObj, post: postObj });
      assert.deepEqual(functionSummary(d), []);
      assert.deepEqual(dataSummary(d), []);
    });

    it('uses the lines object so moved __LINE__ values do not count', () => {
      const pre = [
        '#include <assert.h>',
        'extern int ext(int);',
        'int first(int x) { return ext(x) + 1; }',
        'int checked(int x) {',
        '  assert(x > 0);',
        '  return ext(x) * 2;',
        '}',
        '',
      ].join('\n');
      const postLines = [
        '#include <assert.h>',
        'extern int ext(int);',
        'int first(int x) {',
        '  int y = ext(x);',
        '  return y + 2;',
        '}',
        'int checked(int x) {',
        '  assert(x > 0);',
        '  return ext(x) * 2;',
        '}',
        '',
      ];
      const post = postLines.join('\n');
      // What the build's line map produces: unchanged lines get their pre numbers back.
      const lines = [...postLines.slice(0, 6), '#line 4', ...postLines.slice(6)].join('\n');

      const withoutLines = diffSources({ pre, post }, level);
      assert.deepEqual(functionSummary(withoutLines), ['changed checked', 'changed first'],
        'the fixture must move assert line numbers');
      const d = diffSources({ pre, post, lines }, level);
      assert.deepEqual(functionSummary(d), ['changed first']);
      assert.equal(d.functions[0].post?.section, '.text.first');
    });

    it('keeps the unit in every record so equal static names in two files stay apart', () => {
      const a = 'static int helper(int x) { return x + 1; }\nint a_api(int x) { return helper(x); }\n';
      const b = 'static int helper(int x) { return x * 2; }\nint b_api(int x) { return helper(x) + 1; }\n';
      const da = diffSources({ unit: 'a.c', pre: a, post: a.replace('x + 1', 'x + 2') }, level);
      const db = diffSources({ unit: 'b.c', pre: b, post: b.replace('x * 2', 'x * 4') }, level);
      const all = [...da.functions, ...db.functions];
      const expected = level === '-O0'
        ? ['a.c:helper', 'b.c:helper']
        : ['a.c:a_api', 'b.c:b_api'];
      assert.deepEqual(all.map((f) => `${f.unit}:${f.function}`).sort(), expected);
      assert.ok(all.every((f) => f.kind === 'changed'));
      if (level === '-O0') assert.ok(all.every((f) => f.local));
    });

    it('finds exactly the one function a patch changes in a realistic file', () => {
      const d = diffSources({ pre: REALISTIC, post: REALISTIC.replace('if (len < 4)', 'if (len < 8)') }, level);
      assert.deepEqual(functionSummary(d), ['changed parse_header']);
      assert.deepEqual(dataSummary(d), []);
    });
  });
}

describe('object diff without a pre object', () => {
  it('reports everything in a file the patch adds as new', () => {
    const post = buildObject('static int n;\nint added(int x) { n += x; return n; }\n', '-O2');
    const d = diffUnit({ unit: 'new.c', post });
    assert.deepEqual(functionSummary(d), ['new added']);
    assert.deepEqual(dataSummary(d), ['new n']);
  });
});

describe('a helper out of line at -O2', () => {
  it('is really absent at -O2 in the inlining fixture (so the expectation above means inlining)', () => {
    const src = 'extern int ext(int);\nstatic int check(int x) { if (x < 0) return ext(-x); return x * 2; }\n' +
      'int ca(int x) { return check(x) + 1; }\nint cb(int x) { return check(x + 5) * 3; }\n';
    assert.equal(hasFunction(src, '-O2', 'check'), false);
    assert.equal(hasFunction(src, '-O0', 'check'), true);
  });
});

const REALISTIC = `
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MAX_PAYLOAD 512

struct packet { uint8_t type; uint16_t len; uint8_t payload[MAX_PAYLOAD]; };

static unsigned long packets_seen;
static const char *const type_names[] = { "ping", "data", "close", "error" };
static const uint16_t crc_table[8] = { 0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7 };

static uint16_t checksum(const uint8_t *p, size_t n) {
  uint16_t crc = 0xffff;
  for (size_t i = 0; i < n; i++) crc = (uint16_t)((crc << 3) ^ crc_table[(crc ^ p[i]) & 7]);
  return crc;
}

const char *packet_type_name(unsigned type) {
  return type < sizeof type_names / sizeof type_names[0] ? type_names[type] : "unknown";
}

void log_packet(const struct packet *pkt) {
  fprintf(stderr, "packet %lu: %s, %u bytes\\n", packets_seen, packet_type_name(pkt->type), pkt->len);
}

int parse_header(const uint8_t *buf, size_t len, struct packet *out) {
  if (len < 4)
    return -1;
  out->type = buf[0];
  out->len = (uint16_t)(buf[1] | buf[2] << 8);
  return 0;
}

int handle_packet(const uint8_t *buf, size_t len) {
  struct packet pkt;
  if (len < 3 || len > MAX_PAYLOAD) return -1;
  pkt.type = buf[0];
  pkt.len = (uint16_t)(len - 3);
  memcpy(pkt.payload, buf + 3, pkt.len);
  packets_seen++;
  log_packet(&pkt);
  switch (pkt.type) {
  case 0: return 1;
  case 1: return checksum(pkt.payload, pkt.len) == 0 ? 2 : -2;
  case 2: return 3;
  case 3: fprintf(stderr, "peer error\\n"); return -3;
  case 4: return 5;
  case 5: return 8;
  default: return -4;
  }
}

unsigned long stats(void) { return packets_seen; }
`;
