// What the linker asks about symbols it does not place itself, and the
// answers it accepts. The caller answers from run-pre matching and from the
// dynamic symbols of the loaded objects; the linker never guesses an address.

/**
 * The kind of access a relocation needs, which decides the answers that make sense:
 * - `call`: direct call or jump target (R_X86_64_PLT32): an address, or an existing GOT slot (IFUNC);
 * - `address`: the symbol's address as data (PC32, 64, 32, 32S): an address;
 * - `got`: a GOT slot holding the address (GOTPCREL*): an address (a local slot is made) or an existing slot;
 * - `tpoff`: local-exec TLS (TPOFF32/64): the offset from the thread pointer;
 * - `gottpoff`: initial-exec TLS (GOTTPOFF): the tp offset (a local slot is made) or an existing slot holding it;
 * - `tlsgd`: general-dynamic TLS (TLSGD): the running object's GOT pair for __tls_get_addr; or, when the
 *   running executable was linked with the access relaxed, the tp offset (relaxed to local-exec) or an
 *   existing slot holding it (relaxed to initial-exec);
 * - `tlsld`: local-dynamic TLS (TLSLD): the module's GOT pair (offset 0), or a tp offset when the running
 *   executable uses local-exec (the sequence is relaxed, and `dtpoff` must then answer tp offsets too);
 * - `dtpoff`: offset inside the module's TLS block (DTPOFF32/64), or the tp offset after relaxation.
 */
export type SymbolAccess = 'call' | 'address' | 'got' | 'tpoff' | 'gottpoff' | 'tlsgd' | 'tlsld' | 'dtpoff';

export type SymbolBinding = 'local' | 'global' | 'weak';

export type SymbolKind = 'function' | 'object' | 'tls' | 'ifunc' | 'notype';

export interface SymbolRef {
  /** The symbol's name in the post object (for static locals, gcc's `name.N`). */
  name: string;
  binding: SymbolBinding;
  type: SymbolKind;
  /** The translation unit (post object) the reference comes from. */
  unit: string;
  /** Section of the post object that defines the symbol; undefined when the unit only uses it. */
  section?: string;
  access: SymbolAccess;
}

export type Resolution =
  /** Run-time address of a function or variable. */
  | { kind: 'address'; value: bigint }
  /** Address of an existing GOT slot in the running image that holds the symbol's address (or tp offset). */
  | { kind: 'got'; slot: bigint }
  /** Offset of a thread-local variable from the thread pointer (TLS of the executable). */
  | { kind: 'tpoff'; value: bigint }
  /** Address of the running object's GOT pair (module id, offset) passed to __tls_get_addr. */
  | { kind: 'tlsgd'; slot: bigint }
  /** Offset of a thread-local variable inside its module's TLS block. */
  | { kind: 'dtpoff'; value: bigint };

/** Answers a symbol reference, or undefined when the symbol is not known in the running target. */
export type SymbolResolver = (ref: SymbolRef) => Resolution | undefined;
