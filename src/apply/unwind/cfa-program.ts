// Run the CFA instructions of a CIE and FDE up to a pc: the row of the
// call frame information table that says where the frame's CFA is and where
// the caller's registers were saved.
import { CfiError, DwarfCursor } from './dwarf-cursor.js';
import type { EhFrameTable, Fde } from './eh-frame.js';

/** How to recover one register of the caller. */
export type RegisterRule =
  | { kind: 'undefined' }
  | { kind: 'same' }
  /** Saved at CFA + offset. */
  | { kind: 'offset'; offset: bigint }
  /** The value is CFA + offset. */
  | { kind: 'val-offset'; offset: bigint }
  /** In another register of this frame. */
  | { kind: 'register'; register: number }
  /** A DWARF expression: not evaluated, unwinding fails where it matters. */
  | { kind: 'expression' };

export interface CfaRow {
  /** CFA = register + offset; undefined register: a CFA expression. */
  cfaRegister: number | undefined;
  cfaOffset: bigint;
  /** Rules by DWARF register number; a missing rule is "unspecified". */
  rules: Map<number, RegisterRule>;
}

interface State {
  cfaRegister: number | undefined;
  cfaOffset: bigint;
  rules: Map<number, RegisterRule>;
}

const copy = (s: State): State => ({ cfaRegister: s.cfaRegister, cfaOffset: s.cfaOffset, rules: new Map(s.rules) });

/** The row for `pc` (an address inside fde's range). Throws CfiError on instructions it cannot run. */
export function cfaRowAt(table: EhFrameTable, fde: Fde, pc: bigint): CfaRow {
  const state: State = { cfaRegister: undefined, cfaOffset: 0n, rules: new Map() };
  // The CIE's initial instructions; `restore` goes back to their rules.
  run(table, fde, state, fde.cie.instructions, undefined, undefined);
  const initial = new Map(state.rules);
  run(table, fde, state, fde.instructions, pc, initial);
  return state;
}

/**
 * Execute one instruction list. With `untilPc` (FDE instructions), stop
 * before the first advance that moves the location past it.
 */
function run(
  table: EhFrameTable,
  fde: Fde,
  state: State,
  range: { start: number; end: number },
  untilPc: bigint | undefined,
  initial: Map<number, RegisterRule> | undefined,
): void {
  const { codeAlign, dataAlign } = fde.cie;
  const c = new DwarfCursor(table.bytes, table.address, range.start, range.end);
  const saved: State[] = [];
  let location = fde.pcBegin;
  const advance = (delta: bigint): boolean => {
    location += delta * codeAlign;
    return untilPc !== undefined && location > untilPc;
  };
  const restore = (register: number): void => {
    const rule = initial?.get(register);
    if (rule) state.rules.set(register, rule);
    else state.rules.delete(register);
  };
  const setOffset = (register: number, offset: bigint): void => {
    state.rules.set(register, { kind: 'offset', offset });
  };
  while (!c.atEnd) {
    const op = c.u8();
    const high = op & 0xc0;
    const low = op & 0x3f;
    if (high === 0x40) {
      if (advance(BigInt(low))) return;
      continue;
    }
    if (high === 0x80) {
      setOffset(low, c.uleb() * dataAlign);
      continue;
    }
    if (high === 0xc0) {
      restore(low);
      continue;
    }
    switch (op) {
      case 0x00: // nop
        break;
      case 0x01: { // set_loc
        const to = c.pointer(fde.cie.fdeEncoding);
        location = to;
        if (untilPc !== undefined && location > untilPc) return;
        break;
      }
      case 0x02:
        if (advance(BigInt(c.u8()))) return;
        break;
      case 0x03:
        if (advance(BigInt(c.u16()))) return;
        break;
      case 0x04:
        if (advance(BigInt(c.u32()))) return;
        break;
      case 0x05: // offset_extended
        setOffset(c.ulebNumber(), c.uleb() * dataAlign);
        break;
      case 0x06: // restore_extended
        restore(c.ulebNumber());
        break;
      case 0x07: // undefined
        state.rules.set(c.ulebNumber(), { kind: 'undefined' });
        break;
      case 0x08: // same_value
        state.rules.set(c.ulebNumber(), { kind: 'same' });
        break;
      case 0x09: { // register
        const register = c.ulebNumber();
        state.rules.set(register, { kind: 'register', register: c.ulebNumber() });
        break;
      }
      case 0x0a: // remember_state
        saved.push(copy(state));
        break;
      case 0x0b: { // restore_state
        const back = saved.pop();
        if (!back) throw new CfiError('DW_CFA_restore_state without remember_state');
        // The CFA rule is part of the state, as in libgcc and GDB.
        state.cfaRegister = back.cfaRegister;
        state.cfaOffset = back.cfaOffset;
        state.rules = back.rules;
        break;
      }
      case 0x0c: // def_cfa
        state.cfaRegister = c.ulebNumber();
        state.cfaOffset = c.uleb();
        break;
      case 0x0d: // def_cfa_register
        state.cfaRegister = c.ulebNumber();
        break;
      case 0x0e: // def_cfa_offset
        state.cfaOffset = c.uleb();
        break;
      case 0x0f: // def_cfa_expression
        c.skipBlock();
        state.cfaRegister = undefined;
        break;
      case 0x10: // expression
        state.rules.set(c.ulebNumber(), { kind: 'expression' });
        c.skipBlock();
        break;
      case 0x11: // offset_extended_sf
        setOffset(c.ulebNumber(), c.sleb() * dataAlign);
        break;
      case 0x12: // def_cfa_sf
        state.cfaRegister = c.ulebNumber();
        state.cfaOffset = c.sleb() * dataAlign;
        break;
      case 0x13: // def_cfa_offset_sf
        state.cfaOffset = c.sleb() * dataAlign;
        break;
      case 0x14: { // val_offset
        const register = c.ulebNumber();
        state.rules.set(register, { kind: 'val-offset', offset: c.uleb() * dataAlign });
        break;
      }
      case 0x15: { // val_offset_sf
        const register = c.ulebNumber();
        state.rules.set(register, { kind: 'val-offset', offset: c.sleb() * dataAlign });
        break;
      }
      case 0x16: // val_expression
        state.rules.set(c.ulebNumber(), { kind: 'expression' });
        c.skipBlock();
        break;
      case 0x2e: // GNU_args_size: only matters for landing pads
        c.uleb();
        break;
      case 0x2f: // GNU_negative_offset_extended
        setOffset(c.ulebNumber(), -c.uleb() * dataAlign);
        break;
      default:
        throw new CfiError(`unknown CFA instruction 0x${op.toString(16)}`);
    }
  }
}
