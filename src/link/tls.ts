// TLS access-model relaxation, as GNU ld does it when it links -fPIC code into
// an executable. When the running executable holds a thread-local variable at a
// fixed tp offset, the new code's __tls_get_addr sequence is rewritten to read
// the thread pointer instead; only the exact sequences gcc emits (which the psABI
// requires for this purpose) are rewritten.

export type TlsRelaxation = 'gd-le' | 'gd-ie' | 'ld-le';

/** Bytes of a general- or local-dynamic sequence, relative to the TLSGD/TLSLD field offset. */
export interface TlsSequence {
  start: number;
  end: number;
  /** The call goes through the GOT (-fno-plt) instead of the PLT. */
  viaGot: boolean;
}

function bytesAt(code: Buffer, at: number, expected: number[]): boolean {
  if (at < 0 || at + expected.length > code.length) return false;
  return expected.every((b, i) => code[at + i] === b);
}

/**
 * The general-dynamic sequence around a TLSGD field at `offset`:
 *   66 48 8d 3d <tlsgd>   data16 lea x@tlsgd(%rip),%rdi
 *   66 66 48 e8 <plt32>   data16 data16 rex.W call __tls_get_addr@PLT
 * or, with -fno-plt, `66 48 ff 15 <gotpcrelx>` (data16 rex.W call *__tls_get_addr@GOTPCREL(%rip)).
 */
export function generalDynamicSequence(code: Buffer, offset: number): TlsSequence | undefined {
  if (!bytesAt(code, offset - 4, [0x66, 0x48, 0x8d, 0x3d])) return undefined;
  if (bytesAt(code, offset + 4, [0x66, 0x66, 0x48, 0xe8])) return { start: offset - 4, end: offset + 12, viaGot: false };
  if (bytesAt(code, offset + 4, [0x66, 0x48, 0xff, 0x15])) return { start: offset - 4, end: offset + 12, viaGot: true };
  return undefined;
}

/**
 * The local-dynamic sequence around a TLSLD field at `offset`:
 *   48 8d 3d <tlsld>   lea x@tlsld(%rip),%rdi
 *   e8 <plt32>         call __tls_get_addr@PLT      (or ff 15 <gotpcrelx> with -fno-plt)
 */
export function localDynamicSequence(code: Buffer, offset: number): TlsSequence | undefined {
  if (!bytesAt(code, offset - 3, [0x48, 0x8d, 0x3d])) return undefined;
  if (bytesAt(code, offset + 4, [0xe8])) return { start: offset - 3, end: offset + 9, viaGot: false };
  if (bytesAt(code, offset + 4, [0xff, 0x15])) return { start: offset - 3, end: offset + 10, viaGot: true };
  return undefined;
}

const MOV_FS0_RAX = [0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0];

/**
 * Rewrite a sequence in place (`code` is the section's copy in the block). For gd-le `value` is the tp
 * offset; for gd-ie it is the displacement from the end of the sequence to the GOT slot holding the tp
 * offset; ld-le takes none (the DTPOFF fields that follow become tp offsets).
 */
export function relaxTlsSequence(code: Buffer, seq: TlsSequence, relaxation: TlsRelaxation, value = 0n): void {
  let bytes: number[];
  switch (relaxation) {
    case 'gd-le': // mov %fs:0,%rax ; lea value(%rax),%rax
      bytes = [...MOV_FS0_RAX, 0x48, 0x8d, 0x80, 0, 0, 0, 0];
      break;
    case 'gd-ie': // mov %fs:0,%rax ; add value(%rip),%rax
      bytes = [...MOV_FS0_RAX, 0x48, 0x03, 0x05, 0, 0, 0, 0];
      break;
    case 'ld-le': // data16 prefixes pad the mov %fs:0,%rax to the sequence's length
      bytes = [...new Array<number>(seq.end - seq.start - MOV_FS0_RAX.length).fill(0x66), ...MOV_FS0_RAX];
      break;
  }
  if (bytes.length !== seq.end - seq.start) throw new Error(`TLS ${relaxation} rewrite does not fit its sequence`);
  Buffer.from(bytes).copy(code, seq.start);
  if (relaxation !== 'ld-le') code.writeInt32LE(Number(BigInt.asIntN(32, value)), seq.start + 12);
}
