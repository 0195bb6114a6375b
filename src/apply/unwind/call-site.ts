// Is the instruction that ends right before `ra` a call? A return address
// always follows one. Unwinding trusts CFI, and CFI made for synchronous
// unwinding only (-fno-asynchronous-unwind-tables -fexceptions) is exact only
// at call sites: a thread stopped elsewhere in such code could be unwound to
// a wrong "return address". Checking each one against the code turns such a
// walk into a failure, and the thread gets the conservative scan.

/** Length of `ff /2` (call r/m64) from its opcode byte at `at`, or undefined if it is not one. */
function indirectCallLength(code: Buffer, at: number): number | undefined {
  if (at < 0 || at + 2 > code.length || code[at] !== 0xff) return undefined;
  const modrm = code[at + 1];
  if (((modrm >> 3) & 7) !== 2) return undefined;
  const mod = modrm >> 6;
  const rm = modrm & 7;
  if (mod === 3) return 2;
  let length = 2;
  if (rm === 4) {
    if (at + 3 > code.length) return undefined;
    length++; // SIB
    if (mod === 0 && (code[at + 2] & 7) === 5) length += 4;
  } else if (mod === 0 && rm === 5) {
    length += 4; // rip-relative
  }
  if (mod === 1) length += 1;
  if (mod === 2) length += 4;
  return length;
}

/** `code` holds the bytes from `start`; true when a call instruction ends exactly at `ra`. */
export function followsCall(code: Buffer, start: bigint, ra: bigint): boolean {
  const end = Number(ra - start);
  if (end < 2 || end > code.length) return false;
  if (end >= 5 && code[end - 5] === 0xe8) return true; // call rel32
  // call r/m64: 2 to 7 bytes (+ a REX prefix, which does not change where the opcode is found).
  for (let length = 2; length <= 7 && length <= end; length++) {
    if (indirectCallLength(code, end - length) === length) return true;
  }
  return false;
}
