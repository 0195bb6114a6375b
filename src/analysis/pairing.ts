// Which function or variable of the post object is which of the pre object.
//
// Names pair them once compiler numbering is removed (names.ts). Several
// entities can share a normalised name: static locals of the same name in
// different functions (`count.0` in f, `count.1` in g), every `__func__.N`,
// two constprop clones of one function. Those are told apart by who uses
// them — the normalised names of the functions that reference them — and only
// then by their order, so that a new `static int count` in an earlier
// function, which renumbers all the others, does not pair f's counter with
// the new one.

import type { Entity, ObjectIndex } from './object.js';

export interface Pairing {
  /** Pre entity → its post counterpart. */
  preToPost: Map<Entity, Entity>;
  /** Post entity → its pre counterpart. */
  postToPre: Map<Entity, Entity>;
}

/** Every function of an index, `.cold` parts included. */
export function allFunctions(index: ObjectIndex): Entity[] {
  return index.functions.flatMap((f) => [f, ...f.coldParts]);
}

export function pairEntities(pre: ObjectIndex, post: ObjectIndex): Pairing {
  const pairing: Pairing = { preToPost: new Map(), postToPre: new Map() };
  pairGroup(allFunctions(pre), allFunctions(post), pairing);
  pairGroup(pre.data, post.data, pairing);
  return pairing;
}

function usersKey(e: Entity): string {
  return [...e.users].sort().join(',');
}

/** Natural order of compiler numbering: `x.2` before `x.10`. */
function byNumbering(a: Entity, b: Entity): number {
  return a.name.localeCompare(b.name, 'en', { numeric: true });
}

function groupByName(entities: Entity[]): Map<string, Entity[]> {
  const groups = new Map<string, Entity[]>();
  for (const e of entities) {
    const list = groups.get(e.normalized) ?? [];
    list.push(e);
    groups.set(e.normalized, list);
  }
  for (const list of groups.values()) list.sort(byNumbering);
  return groups;
}

function pairGroup(preEntities: Entity[], postEntities: Entity[], pairing: Pairing): void {
  const preGroups = groupByName(preEntities);
  const postGroups = groupByName(postEntities);
  for (const [name, preList] of preGroups) {
    const postList = postGroups.get(name);
    if (!postList) continue;
    const link = (a: Entity, b: Entity): void => {
      pairing.preToPost.set(a, b);
      pairing.postToPre.set(b, a);
    };
    // A plain C identifier names one thing in a unit whatever uses it.
    if (preList.length === 1 && postList.length === 1 && !isNumbered(preList[0]) && !isNumbered(postList[0])) {
      link(preList[0], postList[0]);
      continue;
    }
    const unpairedPost = new Set(postList);
    const leftoverPre: Entity[] = [];
    for (const a of preList) {
      const key = usersKey(a);
      const b = postList.find((c) => unpairedPost.has(c) && usersKey(c) === key);
      if (b) {
        link(a, b);
        unpairedPost.delete(b);
      } else {
        leftoverPre.push(a);
      }
    }
    // What is left pairs in numbering order, but never a variable used only
    // by f with one used only by g: that is one removed and one added.
    for (const a of leftoverPre) {
      const b = postList.find((c) => unpairedPost.has(c) && mayBeSame(a, c));
      if (!b) continue;
      link(a, b);
      unpairedPost.delete(b);
    }
  }
}

/** The compiler numbered the name (`count.3`, `f.constprop.0`): it may belong to a different one each build. */
function isNumbered(e: Entity): boolean {
  return e.name !== e.normalized;
}

function mayBeSame(a: Entity, b: Entity): boolean {
  if (a.users.size === 0 || b.users.size === 0) return true;
  for (const u of a.users) if (b.users.has(u)) return true;
  return false;
}

/**
 * A name for an entity that is the same on both sides when the two are
 * paired, and can never be equal to anything on the other side otherwise.
 */
export function pairedId(pairing: Pairing, side: 'pre' | 'post', e: Entity): string {
  if (side === 'post') {
    return pairing.postToPre.has(e) ? `${e.kind}:${e.name}#${e.symbol.index}` : `new:${e.name}`;
  }
  const partner = pairing.preToPost.get(e);
  return partner ? `${partner.kind}:${partner.name}#${partner.symbol.index}` : `old:${e.name}`;
}
