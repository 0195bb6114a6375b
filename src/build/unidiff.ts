// Unified diff parsing, and the post→pre line mapping that a diff implies.
//
// The mapping is what lets the `lines` build give every unchanged line of a
// patched file its pre-patch number again, so that code which differs only
// through __LINE__ (assert, logging macros) is not taken for a change.

/** One `@@ -a,b +c,d @@` hunk. */
export interface Hunk {
  /** 1-based first line in the old file (for a zero-length range: the line it follows). */
  oldStart: number;
  oldLines: number;
  newStart: number;
  newLines: number;
  /** Body lines with their ' ', '-' or '+' marker (no "\ No newline" lines). */
  lines: string[];
  /** Line of the patch file where the hunk header is (1-based), for messages. */
  patchLine: number;
}

/** The hunks for one file, with the names from the `---`/`+++` headers (undefined for /dev/null). */
export interface FileDiff {
  oldName: string | undefined;
  newName: string | undefined;
  hunks: Hunk[];
  /** The file is created (/dev/null as old name, or `diff -N` style: one hunk from range 0,0). */
  created: boolean;
  /** The file is deleted (the same, on the new side). */
  deleted: boolean;
}

/** A run of unchanged lines: post lines postStart..postStart+length-1 are pre lines preStart.. */
export interface LineRun {
  postStart: number;
  preStart: number;
  length: number;
}

/** Post→pre line mapping of one file: the unchanged runs, in order. Lines in no run are new. */
export interface LineMap {
  runs: LineRun[];
}

const HUNK_HEADER = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/;

/** Strip a header name of its timestamp (tab-separated) and C-style quotes (git quotes odd names). */
function headerName(raw: string): string | undefined {
  let name = raw.split('\t')[0].trimEnd();
  if (name.startsWith('"') && name.endsWith('"') && name.length >= 2) name = unquoteC(name.slice(1, -1));
  if (name === '/dev/null') return undefined;
  return name;
}

function unquoteC(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== '\\') {
      bytes.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const n = s[++i];
    const simple: Record<string, number> = { n: 10, t: 9, r: 13, a: 7, b: 8, f: 12, v: 11, '\\': 92, '"': 34 };
    if (n in simple) bytes.push(simple[n]);
    else if (/[0-7]/.test(n)) {
      const oct = s.slice(i, i + 3);
      bytes.push(parseInt(oct, 8));
      i += 2;
    } else bytes.push(...Buffer.from(n, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * Parse the unified-diff parts of a patch (git or plain `diff -u`). Text between
 * file sections (commit messages, `diff --git` and `index` lines) is skipped, as
 * GNU patch does. Returns only files that have at least one hunk.
 */
export function parseUnifiedDiff(text: string): FileDiff[] {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const files: FileDiff[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = stripCr(lines[i]);
    if (line.startsWith('--- ') && i + 1 < lines.length && stripCr(lines[i + 1]).startsWith('+++ ')) {
      const file: FileDiff = {
        oldName: headerName(line.slice(4)),
        newName: headerName(stripCr(lines[i + 1]).slice(4)),
        hunks: [],
        created: false,
        deleted: false,
      };
      i += 2;
      while (i < lines.length) {
        const m = HUNK_HEADER.exec(stripCr(lines[i]));
        if (!m) break;
        const hunk: Hunk = {
          oldStart: Number(m[1]),
          oldLines: m[2] === undefined ? 1 : Number(m[2]),
          newStart: Number(m[3]),
          newLines: m[4] === undefined ? 1 : Number(m[4]),
          lines: [],
          patchLine: i + 1,
        };
        i++;
        let oldLeft = hunk.oldLines;
        let newLeft = hunk.newLines;
        while (i < lines.length && (oldLeft > 0 || newLeft > 0)) {
          const body = stripCr(lines[i]);
          const mark = body[0] ?? ' '; // some mailers drop the space of empty context lines
          if (mark === '\\') {
            i++;
            continue;
          }
          if (mark === ' ') {
            oldLeft--;
            newLeft--;
          } else if (mark === '-') oldLeft--;
          else if (mark === '+') newLeft--;
          else break;
          hunk.lines.push(body.length === 0 ? ' ' : body);
          i++;
        }
        // A truncated hunk is kept as it is: GNU patch reports it precisely.
        while (i < lines.length && stripCr(lines[i]).startsWith('\\')) i++;
        file.hunks.push(hunk);
      }
      if (file.hunks.length > 0) {
        const only = file.hunks.length === 1 ? file.hunks[0] : undefined;
        file.created = file.oldName === undefined || (only?.oldStart === 0 && only.oldLines === 0);
        file.deleted = file.newName === undefined || (only?.newStart === 0 && only.newLines === 0);
        files.push(file);
      }
      continue;
    }
    i++;
  }
  return files;
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/** Remove `strip` leading path components, as `patch -pN` does; undefined if too few components. */
export function stripPath(name: string, strip: number): string | undefined {
  // "/a/b" splits to ["", "a", "b"]: -p1 removes the leading "/" as GNU patch does.
  const parts = name.split(/\/+/);
  if (parts.length <= strip) return undefined;
  const rest = parts.slice(strip).join('/');
  return rest === '' ? undefined : rest;
}

/**
 * The unchanged runs of a file, from its hunks. `postLineCount` is the number of
 * lines of the patched file (for the run after the last hunk). Hunks must be
 * where they were applied (a hunk GNU patch applied at an offset has to be
 * shifted first; `validateLineMap` catches a map that does not fit the files).
 */
export function lineMapFromHunks(hunks: readonly Hunk[], postLineCount: number): LineMap {
  const runs: LineRun[] = [];
  let pre = 1;
  let post = 1;
  const push = (postStart: number, preStart: number, length: number): void => {
    if (length <= 0) return;
    const last = runs[runs.length - 1];
    if (last && last.postStart + last.length === postStart && last.preStart + last.length === preStart) {
      last.length += length;
    } else runs.push({ postStart, preStart, length });
  };
  for (const h of hunks) {
    const hunkPre = h.oldLines === 0 ? h.oldStart + 1 : h.oldStart;
    const hunkPost = h.newLines === 0 ? h.newStart + 1 : h.newStart;
    // Lines between hunks are unchanged; both sides must have the same count.
    const gap = Math.min(hunkPre - pre, hunkPost - post);
    push(post, pre, gap);
    pre = hunkPre;
    post = hunkPost;
    for (const line of h.lines) {
      if (line[0] === ' ') {
        push(post, pre, 1);
        pre++;
        post++;
      } else if (line[0] === '-') pre++;
      else post++;
    }
  }
  push(post, pre, postLineCount - post + 1);
  return { runs };
}

/** True when every line the map calls unchanged is the same text in both files. */
export function validateLineMap(map: LineMap, preLines: readonly string[], postLines: readonly string[]): boolean {
  for (const run of map.runs) {
    if (run.preStart < 1 || run.postStart < 1) return false;
    if (run.preStart + run.length - 1 > preLines.length) return false;
    if (run.postStart + run.length - 1 > postLines.length) return false;
    for (let k = 0; k < run.length; k++) {
      if (preLines[run.preStart - 1 + k] !== postLines[run.postStart - 1 + k]) return false;
    }
  }
  return true;
}

/** The pre line of a post line, or undefined if the patch added it. */
export function preLineOf(map: LineMap, postLine: number): number | undefined {
  for (const run of map.runs) {
    if (postLine >= run.postStart && postLine < run.postStart + run.length) {
      return run.preStart + (postLine - run.postStart);
    }
  }
  return undefined;
}

/** Split file text into lines as a compiler counts them (a final newline ends the last line). */
export function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}
