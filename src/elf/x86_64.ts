// x86-64 relocation types (psABI) and how each one's field is computed.
// Everything architecture-specific about relocations lives here so that an
// AArch64 table can sit beside it.

export const R_X86_64_NONE = 0;
export const R_X86_64_64 = 1;
export const R_X86_64_PC32 = 2;
export const R_X86_64_GOT32 = 3;
export const R_X86_64_PLT32 = 4;
export const R_X86_64_COPY = 5;
export const R_X86_64_GLOB_DAT = 6;
export const R_X86_64_JUMP_SLOT = 7;
export const R_X86_64_RELATIVE = 8;
export const R_X86_64_GOTPCREL = 9;
export const R_X86_64_32 = 10;
export const R_X86_64_32S = 11;
export const R_X86_64_16 = 12;
export const R_X86_64_PC16 = 13;
export const R_X86_64_8 = 14;
export const R_X86_64_PC8 = 15;
export const R_X86_64_DTPMOD64 = 16;
export const R_X86_64_DTPOFF64 = 17;
export const R_X86_64_TPOFF64 = 18;
export const R_X86_64_TLSGD = 19;
export const R_X86_64_TLSLD = 20;
export const R_X86_64_DTPOFF32 = 21;
export const R_X86_64_GOTTPOFF = 22;
export const R_X86_64_TPOFF32 = 23;
export const R_X86_64_PC64 = 24;
export const R_X86_64_GOTOFF64 = 25;
export const R_X86_64_GOTPC32 = 26;
export const R_X86_64_SIZE32 = 32;
export const R_X86_64_SIZE64 = 33;
export const R_X86_64_GOTPC32_TLSDESC = 34;
export const R_X86_64_TLSDESC_CALL = 35;
export const R_X86_64_TLSDESC = 36;
export const R_X86_64_IRELATIVE = 37;
export const R_X86_64_GOTPCRELX = 41;
export const R_X86_64_REX_GOTPCRELX = 42;

const NAMES: Record<number, string> = {
  0: 'R_X86_64_NONE', 1: 'R_X86_64_64', 2: 'R_X86_64_PC32', 3: 'R_X86_64_GOT32', 4: 'R_X86_64_PLT32',
  5: 'R_X86_64_COPY', 6: 'R_X86_64_GLOB_DAT', 7: 'R_X86_64_JUMP_SLOT', 8: 'R_X86_64_RELATIVE',
  9: 'R_X86_64_GOTPCREL', 10: 'R_X86_64_32', 11: 'R_X86_64_32S', 12: 'R_X86_64_16', 13: 'R_X86_64_PC16',
  14: 'R_X86_64_8', 15: 'R_X86_64_PC8', 16: 'R_X86_64_DTPMOD64', 17: 'R_X86_64_DTPOFF64',
  18: 'R_X86_64_TPOFF64', 19: 'R_X86_64_TLSGD', 20: 'R_X86_64_TLSLD', 21: 'R_X86_64_DTPOFF32',
  22: 'R_X86_64_GOTTPOFF', 23: 'R_X86_64_TPOFF32', 24: 'R_X86_64_PC64', 25: 'R_X86_64_GOTOFF64',
  26: 'R_X86_64_GOTPC32', 32: 'R_X86_64_SIZE32', 33: 'R_X86_64_SIZE64', 34: 'R_X86_64_GOTPC32_TLSDESC',
  35: 'R_X86_64_TLSDESC_CALL', 36: 'R_X86_64_TLSDESC', 37: 'R_X86_64_IRELATIVE',
  41: 'R_X86_64_GOTPCRELX', 42: 'R_X86_64_REX_GOTPCRELX',
};

export function relocationName(type: number): string {
  return NAMES[type] ?? `R_X86_64_<${type}>`;
}

/** Bytes the relocation writes at r_offset (0 for marker relocations). */
export function relocationFieldSize(type: number): number {
  switch (type) {
    case R_X86_64_NONE:
    case R_X86_64_TLSDESC_CALL:
      return 0;
    case R_X86_64_64:
    case R_X86_64_PC64:
    case R_X86_64_GOTOFF64:
    case R_X86_64_DTPMOD64:
    case R_X86_64_DTPOFF64:
    case R_X86_64_TPOFF64:
    case R_X86_64_SIZE64:
    case R_X86_64_GLOB_DAT:
    case R_X86_64_JUMP_SLOT:
    case R_X86_64_RELATIVE:
    case R_X86_64_IRELATIVE:
      return 8;
    case R_X86_64_16:
    case R_X86_64_PC16:
      return 2;
    case R_X86_64_8:
    case R_X86_64_PC8:
      return 1;
    case R_X86_64_TLSDESC:
      return 16;
    default:
      return 4;
  }
}

/** Field value depends on the address of the field itself (S + A - P). */
export function isPcRelative(type: number): boolean {
  return (
    type === R_X86_64_PC32 ||
    type === R_X86_64_PLT32 ||
    type === R_X86_64_PC16 ||
    type === R_X86_64_PC8 ||
    type === R_X86_64_PC64
  );
}

/** Field points at a GOT slot holding the symbol's address (PC-relative to the slot). */
export function isGotPcRelative(type: number): boolean {
  return type === R_X86_64_GOTPCREL || type === R_X86_64_GOTPCRELX || type === R_X86_64_REX_GOTPCRELX;
}

/** Thread-local storage access of any model. */
export function isTls(type: number): boolean {
  return (
    type === R_X86_64_TLSGD ||
    type === R_X86_64_TLSLD ||
    type === R_X86_64_DTPOFF32 ||
    type === R_X86_64_DTPOFF64 ||
    type === R_X86_64_GOTTPOFF ||
    type === R_X86_64_TPOFF32 ||
    type === R_X86_64_TPOFF64 ||
    type === R_X86_64_GOTPC32_TLSDESC ||
    type === R_X86_64_TLSDESC_CALL ||
    type === R_X86_64_TLSDESC
  );
}
