// Make-style dependency files (gcc -MD): which files an object was built from.
//
// A patch to a header must rebuild every object that includes it, even when
// the project's Makefile does not track headers; the dependency files of the
// pre build say which objects those are.

import { isAbsolute, resolve } from 'node:path';

/**
 * The prerequisites listed in a dependency file ("target: a.c b.h \" lines),
 * as absolute paths resolved against cwd. Escaped spaces ("\ ") and "$$" are
 * unescaped; phony targets from -MP ("b.h:") add nothing.
 */
export function parseDepFile(text: string, cwd: string): string[] {
  const joined = text.replace(/\\\r?\n/g, ' ');
  const deps = new Set<string>();
  for (const line of joined.split('\n')) {
    const colon = findRuleColon(line);
    if (colon < 0) continue;
    for (const word of splitWords(line.slice(colon + 1))) {
      deps.add(isAbsolute(word) ? word : resolve(cwd, word));
    }
  }
  return [...deps];
}

/** Index of the ':' separating targets from prerequisites (not an escaped one, not a drive letter). */
function findRuleColon(line: string): number {
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '\\') i++;
    else if (line[i] === ':' && (i + 1 >= line.length || /[\s]/.test(line[i + 1]))) return i;
  }
  return -1;
}

function splitWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && (text[i + 1] === ' ' || text[i + 1] === '#' || text[i + 1] === '\\')) {
      word += text[++i];
    } else if (c === '$' && text[i + 1] === '$') {
      word += '$';
      i++;
    } else if (/\s/.test(c)) {
      if (word) words.push(word);
      word = '';
    } else word += c;
  }
  if (word) words.push(word);
  return words;
}
