// Names the compiler invents, reduced to what stays stable between the pre
// and post builds of one translation unit.
//
// gcc numbers clones and static locals with a counter that runs over the
// whole unit: `scale.constprop.0`, `use_b.isra.1`, `work.part.0`,
// `calls.2`, `__func__.3`, `helper.lto_priv.0`. Adding one static local or
// one clone anywhere renumbers the rest, so pairing compares names with every
// `.N` group removed. The clone kind (`.constprop`, `.isra`, `.part`,
// `.cold`) stays in the name: a constprop clone takes other arguments than
// the original, so it is a different function.

const NUMBER_GROUP = /\.\d+(?=\.|$)/g;

/** A symbol name with its compiler-generated numbers removed: `calls.2` → `calls`, `f.isra.0` → `f.isra`. */
export function normalizeSymbolName(name: string): string {
  return name.replace(NUMBER_GROUP, '');
}

const COLD_SUFFIX = /^(.+?)\.cold(?:\.\d+)?$/;

/**
 * The function a `.cold` part was split from (`foo.cold` → `foo`,
 * `foo.isra.0.cold` → `foo.isra.0`), or undefined for anything else. The
 * parent jumps into the cold part at arbitrary offsets, so the two are one
 * function for patching purposes.
 */
export function coldParentName(name: string): string | undefined {
  return COLD_SUFFIX.exec(name)?.[1];
}

/**
 * Prefixes gcc uses for function sections: `.text.NAME`, and with profile
 * or attribute hints `.text.unlikely.NAME`, `.text.hot.NAME`,
 * `.text.startup.NAME` (main and constructors at -O2), `.text.exit.NAME`.
 */
const TEXT_PREFIXES = ['.text.unlikely.', '.text.hot.', '.text.startup.', '.text.exit.', '.text.'];

/** The symbol name a function section was named after, or undefined when the section is not `.text.*`. */
export function functionNameOfSection(sectionName: string): string | undefined {
  for (const prefix of TEXT_PREFIXES) {
    if (sectionName.startsWith(prefix) && sectionName.length > prefix.length) return sectionName.slice(prefix.length);
  }
  return undefined;
}
