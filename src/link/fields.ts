// Writing a computed relocation value into its field, with the overflow check
// the field's type calls for (as GNU ld: signed for PC-relative and 32S,
// unsigned for 32, either for 8/16).

export type FieldCheck = 'signed' | 'unsigned' | 'either' | 'none';

/** Whether `value` can be stored in a `bytes`-wide field under `check`. */
export function fitsField(value: bigint, bytes: number, check: FieldCheck): boolean {
  const bits = BigInt(bytes * 8);
  const signedMin = -(1n << (bits - 1n));
  const signedMax = (1n << (bits - 1n)) - 1n;
  const unsignedMax = (1n << bits) - 1n;
  switch (check) {
    case 'none':
      return true;
    case 'signed':
      return value >= signedMin && value <= signedMax;
    case 'unsigned':
      return value >= 0n && value <= unsignedMax;
    case 'either':
      return value >= signedMin && value <= unsignedMax;
  }
}

/** Store the low `bytes` bytes of `value` (two's complement) little-endian at `at`. */
export function writeField(buf: Buffer, at: number, bytes: number, value: bigint): void {
  let v = BigInt.asUintN(bytes * 8, value);
  for (let i = 0; i < bytes; i++) {
    buf[at + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

export function hex(v: bigint | number): string {
  const b = BigInt(v);
  return b < 0n ? `-0x${(-b).toString(16)}` : `0x${b.toString(16)}`;
}
