// The object-code diff of one translation unit: which functions the patch
// changes, adds and deletes, and which variables.
//
// Whether something changed is decided between the pre object and the
// "lines" object when there is one (the post source with #line directives
// giving unchanged code its pre line numbers, so __LINE__ and assert() moves
// do not count); the names reported for shipping are those of the post
// object, which is what the update carries.

import { TspliceError } from '../errors.js';
import { STB_LOCAL } from '../elf/constants.js';
import type { ElfFile } from '../elf/reader.js';
import { compareData, compareFunctions, makeSide } from './compare.js';
import { indexObject, type Entity, type ObjectIndex } from './object.js';
import { pairEntities } from './pairing.js';

export type ChangeKind = 'changed' | 'new' | 'deleted';

/** Where an entity lives in one of the objects. */
export interface SymbolLocation {
  /** Symbol name exactly as in that object (`scale.constprop.1`). */
  symbol: string;
  section: string;
  size: number;
}

export interface FunctionChange {
  /** The translation unit (as given to diffUnit): static names are only unique within it. */
  unit: string;
  /** Post symbol name (pre name for a deleted function). */
  function: string;
  /** Post section (pre section for a deleted function). */
  section: string;
  kind: ChangeKind;
  /** Short human explanation, e.g. "calls bar instead of baz at f+0x1c". */
  reason: string;
  /** The function in the pre object (absent when new): what run-pre matching looks for. */
  pre?: SymbolLocation;
  /** The function in the post object (absent when deleted): what the update ships. */
  post?: SymbolLocation;
  /** Local (static) function: its name may repeat in other units. */
  local: boolean;
}

export interface DataChange {
  unit: string;
  /** Post symbol name (pre name for a deleted variable). */
  symbol: string;
  section: string;
  kind: ChangeKind;
  /** Writable at run time: an existing copy lives in the target and cannot just be replaced. */
  writable: boolean;
  /** Visible to other translation units. */
  global: boolean;
  reason: string;
  pre?: SymbolLocation;
  post?: SymbolLocation;
}

export interface UnitDiff {
  unit: string;
  functions: FunctionChange[];
  data: DataChange[];
}

export interface DiffInput {
  /** Name of the translation unit (its source path), kept in every record. */
  unit: string;
  /** The object before the patch; absent when the patch adds the file. */
  pre?: ElfFile;
  /** The object after the patch: what gets shipped. */
  post: ElfFile;
  /** The post source built with pre line numbers; decides what changed when given. */
  lines?: ElfFile;
}

function location(e: Entity): SymbolLocation {
  return { symbol: e.name, section: e.section.name, size: e.end - e.start };
}

function isGlobal(e: Entity): boolean {
  return e.symbol.bind !== STB_LOCAL;
}

/** Compare the pre and post objects of one translation unit. */
export function diffUnit(input: DiffInput): UnitDiff {
  const { unit } = input;
  const post = indexObject(input.post);
  const decide = input.lines ? indexObject(input.lines) : post;
  const pre = input.pre ? indexObject(input.pre) : emptyIndex(input.post);
  const shipped = (e: Entity): Entity => (decide === post ? e : counterpartInPost(unit, e, post));

  const pairing = pairEntities(pre, decide);
  const preSide = makeSide(pre, 'pre', pairing);
  const postSide = makeSide(decide, 'post', pairing);

  const functions: FunctionChange[] = [];
  for (const f of decide.functions) {
    const old = pairing.postToPre.get(f);
    const ship = shipped(f);
    const base = { unit, function: ship.name, section: ship.section.name, post: location(ship), local: !isGlobal(ship) };
    if (!old || old.coldParent) {
      functions.push({ ...base, kind: 'new', reason: 'new function' });
      continue;
    }
    const reason = compareFunctions(preSide, old, postSide, f);
    if (reason) functions.push({ ...base, kind: 'changed', reason, pre: location(old) });
  }
  for (const f of pre.functions) {
    const partner = pairing.preToPost.get(f);
    if (partner && !partner.coldParent) continue;
    functions.push({
      unit, function: f.name, section: f.section.name, kind: 'deleted', local: !isGlobal(f), pre: location(f),
      reason: 'no longer in the object after the patch (removed, or now inlined into its callers)',
    });
  }

  const data: DataChange[] = [];
  for (const d of decide.data) {
    const old = pairing.postToPre.get(d);
    const ship = shipped(d);
    const base = {
      unit, symbol: ship.name, section: ship.section.name, writable: ship.writable, global: isGlobal(ship),
      post: location(ship),
    };
    if (!old) {
      data.push({ ...base, kind: 'new', reason: 'new variable' });
      continue;
    }
    const reason = old.writable === d.writable
      ? compareData(preSide, old, postSide, d)
      : `moved from ${old.section.name} to ${d.section.name}`;
    // Writable on either side: the running copy may have been written to.
    if (reason) data.push({ ...base, writable: old.writable || d.writable, kind: 'changed', reason, pre: location(old) });
  }
  for (const d of pre.data) {
    if (pairing.preToPost.has(d)) continue;
    data.push({
      unit, symbol: d.name, section: d.section.name, kind: 'deleted', writable: d.writable, global: isGlobal(d),
      pre: location(d), reason: 'no longer in the object after the patch',
    });
  }

  functions.sort((a, b) => a.function.localeCompare(b.function, 'en', { numeric: true }));
  data.sort((a, b) => a.symbol.localeCompare(b.symbol, 'en', { numeric: true }));
  return { unit, functions, data };
}

/** The object a new file had before the patch: nothing. */
function emptyIndex(like: ElfFile): ObjectIndex {
  return indexObject({ ...like, name: `${like.name} (before the patch: absent)`, sections: [], symbols: [],
    relocations: new Map() });
}

/**
 * The lines object is the post source with only #line directives added, so
 * every function and variable has the same name in both.
 */
function counterpartInPost(unit: string, e: Entity, post: ObjectIndex): Entity {
  const pool = e.kind === 'function' ? post.functions.flatMap((f) => [f, ...f.coldParts]) : post.data;
  const match = pool.find((p) => p.name === e.name);
  if (!match) {
    throw new TspliceError('bad_input',
      `${unit}: the line-number build has ${e.kind} ${e.name} but the post build does not; both must come from the ` +
      'same patched source with the same flags (rebuild the update)', { unit, symbol: e.name });
  }
  return match;
}
