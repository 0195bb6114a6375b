// `#line` directives that give unchanged lines of a patched C file their
// pre-patch numbers again.
//
// A patch that adds lines above a function moves every __LINE__ below it
// (assert, logging macros): the post object then differs from pre although the
// function is unchanged. The `lines` build compiles the post sources with these
// directives, so comparing its objects with pre tells "only __LINE__ moved" from
// a real change.

import { extname } from 'node:path';
import type { LineMap } from './unidiff.js';

/** Files the C preprocessor reads, where a `#line` directive is meaningful. */
const PREPROCESSED_EXTENSIONS = new Set([
  '.c', '.h', '.cc', '.cp', '.cpp', '.cxx', '.c++', '.C', '.hh', '.hpp', '.hxx', '.h++', '.inl', '.ipp', '.tcc',
  '.S', '.sx', '.m', '.mm',
]);

/** True for a file into which `#line` directives may be inserted. */
export function takesLineDirectives(path: string): boolean {
  return PREPROCESSED_EXTENSIONS.has(extname(path));
}

/**
 * For each line (1-based index), whether a directive may be inserted just
 * before it: not inside a block comment and not after a line ending with a
 * backslash (macro definitions, continued strings and comments).
 */
export function directiveSafeLines(lines: readonly string[]): boolean[] {
  const safe: boolean[] = new Array(lines.length + 2).fill(false);
  let inBlockComment = false;
  let continued = false;
  for (let n = 0; n < lines.length; n++) {
    safe[n + 1] = !inBlockComment && !continued;
    const line = lines[n].endsWith('\r') ? lines[n].slice(0, -1) : lines[n];
    continued = line.endsWith('\\');
    inBlockComment = scanLine(line, inBlockComment);
  }
  safe[lines.length + 1] = !inBlockComment && !continued;
  return safe;
}

/** Lex one line; returns whether a block comment is still open at its end. */
function scanLine(line: string, inBlockComment: boolean): boolean {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (inBlockComment) {
      if (c === '*' && line[i + 1] === '/') {
        inBlockComment = false;
        i++;
      }
      continue;
    }
    if (quote !== undefined) {
      if (c === '\\') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '/' && line[i + 1] === '*') {
      inBlockComment = true;
      i++;
    } else if (c === '/' && line[i + 1] === '/') {
      // A line comment: if continued, the next line is comment too, but the
      // backslash already makes that line unsafe.
      return false;
    } else if (c === '"' || c === "'") {
      quote = c;
    }
  }
  // A quote still open ends with the line (if the line is continued, the next one is unsafe anyway).
  return inBlockComment;
}

/**
 * The text of the post file with `#line N` directives inserted so that every
 * unchanged line has its pre-patch number (as far as a directive may be placed:
 * one that would fall inside a macro continuation or a comment moves down to
 * the next safe unchanged line). Lines the patch added keep counting on from
 * the line above them.
 */
export function insertLineDirectives(postText: string, map: LineMap): string {
  const eol = postText.includes('\r\n') ? '\r\n' : '\n';
  const endsWithNewline = postText.endsWith('\n');
  const lines = postText.split('\n');
  if (endsWithNewline) lines.pop();
  const safe = directiveSafeLines(lines);

  // The compiler's line number for post line p is base + (p - from).
  let from = 1;
  let base = 1;
  const directives = new Map<number, number>(); // post line → number it must have
  const runs = [...map.runs].sort((a, b) => a.postStart - b.postStart);
  for (const run of runs) {
    for (let p = run.postStart; p < run.postStart + run.length; p++) {
      const want = run.preStart + (p - run.postStart);
      if (base + (p - from) === want) break; // already right, and so is the rest of the run
      if (!safe[p]) continue;
      directives.set(p, want);
      from = p;
      base = want;
      break;
    }
  }

  const out: string[] = [];
  for (let p = 1; p <= lines.length; p++) {
    const want = directives.get(p);
    if (want !== undefined) out.push(`#line ${want}${eol === '\r\n' ? '\r' : ''}`);
    out.push(lines[p - 1]);
  }
  return out.join('\n') + (endsWithNewline ? '\n' : '');
}
