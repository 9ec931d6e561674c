// The NAR ("Nix ARchive") wire format, shared by the writer and the reader.
// No I/O here.
//
//   nar       := str("nix-archive-1") node
//   node      := str("(") str("type") body str(")")
//   body      := str("regular") [ str("executable") str("") ] str("contents") contents
//              | str("symlink") str("target") str(target)
//              | str("directory") entry*
//   entry     := str("entry") str("(") str("name") str(name) str("node") node str(")")
//   str(s)    := u64le(len(s)) s pad(len(s))
//   contents  := u64le(size) <size bytes> pad(size)
//   pad(n)    := (8 - n % 8) % 8 zero bytes
//
// Only the canonical form is accepted (it is what `nix-store --dump` writes
// and what a NAR hash is computed over): `executable` comes before
// `contents`, every regular file has `contents`, directory entries are in
// strictly ascending byte order, names are not empty, `.` or `..` and hold
// no `/` or NUL. Names and symlink targets are bytes on the wire; events
// carry them as strings (UTF-8) plus the exact bytes.
import { defineError } from '../errors.js';

export const NAR_MAGIC = 'nix-archive-1';
export const TOKEN_OPEN = '(';
export const TOKEN_CLOSE = ')';
export const TOKEN_TYPE = 'type';
export const TOKEN_REGULAR = 'regular';
export const TOKEN_SYMLINK = 'symlink';
export const TOKEN_DIRECTORY = 'directory';
export const TOKEN_EXECUTABLE = 'executable';
export const TOKEN_CONTENTS = 'contents';
export const TOKEN_TARGET = 'target';
export const TOKEN_ENTRY = 'entry';
export const TOKEN_NAME = 'name';
export const TOKEN_NODE = 'node';

/** Longest entry name accepted (NAME_MAX on Linux and APFS). */
export const MAX_NAME_BYTES = 255;
/** Longest symlink target accepted (PATH_MAX - 1 on Linux). */
export const MAX_TARGET_BYTES = 4095;
/** Longest fixed token (`nix-archive-1`), rounded up to a word. */
export const MAX_TOKEN_BYTES = 16;
/** Contents sizes must stay exact in a JS number. */
export const MAX_CONTENTS_SIZE = Number.MAX_SAFE_INTEGER;

/** Why a NAR (or a sequence of NAR events) was rejected; fixture names follow these. */
export type NarRule =
  | 'bad-magic'
  | 'unknown-token'
  | 'oversized-length'
  | 'nonzero-padding'
  | 'truncated'
  | 'truncated-padding'
  | 'executable-value'
  | 'empty-name'
  | 'dot'
  | 'dotdot'
  | 'slash'
  | 'nul-character'
  | 'unsorted'
  | 'duplicate'
  | 'empty-target'
  | 'target-nul-character'
  | 'trailing-data'
  | 'contents-size'
  | 'event-order';

/** A malformed NAR: `offset` is the byte offset where the broken rule was detected. */
export class BadNar extends defineError('BadNar', 'E_BAD_NAR') {
  declare readonly fields: { offset: number; rule: NarRule; [k: string]: unknown };
  get offset(): number {
    return this.fields.offset;
  }
  get rule(): NarRule {
    return this.fields.rule;
  }
}

/** Raised by NarWriter / NarRestorer when given events that would make a malformed NAR. */
export class BadNarEvent extends defineError('BadNarEvent', 'E_BAD_NAR_EVENT') {
  declare readonly fields: { offset: number; rule: NarRule; [k: string]: unknown };
  get offset(): number {
    return this.fields.offset;
  }
  get rule(): NarRule {
    return this.fields.rule;
  }
}

export function badNar(offset: number, rule: NarRule, what: string, extra: Record<string, unknown> = {}): BadNar {
  return new BadNar(`bad NAR at byte ${offset}: ${what} (${rule})`, { offset, rule, ...extra });
}

/**
 * The stream of a NAR as events, in wire order. `contents` may come in any
 * number of pieces (never empty); their lengths add up to `size`. A reader's
 * `data` is a view into the chunk it was given: copy it to keep it.
 * `nameBytes` / `targetBytes` are the exact wire bytes; writers use them when
 * present (names that are not valid UTF-8 survive a round trip that way).
 */
export type NarEvent =
  | { type: 'directory' }
  | { type: 'entry'; name: string; nameBytes?: Uint8Array }
  | { type: 'entryEnd' }
  | { type: 'directoryEnd' }
  | { type: 'regular'; executable: boolean; size: number }
  | { type: 'contents'; data: Uint8Array }
  | { type: 'regularEnd' }
  | { type: 'symlink'; target: string; targetBytes?: Uint8Array };

const SLASH = 0x2f;
const DOT = 0x2e;

/** Which rule an entry name breaks on its own (ordering is checked separately), or null. */
export function entryNameProblem(name: Uint8Array): NarRule | null {
  const n = name.length;
  if (n === 0) return 'empty-name';
  if (n > MAX_NAME_BYTES) return 'oversized-length';
  if (name[0] === DOT && (n === 1 || (n === 2 && name[1] === DOT))) return n === 1 ? 'dot' : 'dotdot';
  for (let i = 0; i < n; i++) {
    const c = name[i]!;
    if (c === SLASH) return 'slash';
    if (c === 0) return 'nul-character';
  }
  return null;
}

/** Which rule a symlink target breaks, or null. */
export function symlinkTargetProblem(target: Uint8Array): NarRule | null {
  if (target.length === 0) return 'empty-target';
  if (target.length > MAX_TARGET_BYTES) return 'oversized-length';
  if (target.indexOf(0) >= 0) return 'target-nul-character';
  return null;
}

export const NAME_RULE_TEXT: Partial<Record<NarRule, string>> = {
  'empty-name': 'entry name is empty',
  dot: "entry name is '.'",
  dotdot: "entry name is '..'",
  slash: "entry name contains '/'",
  'nul-character': 'entry name contains a NUL byte',
  'oversized-length': `entry name is longer than ${MAX_NAME_BYTES} bytes`,
  'empty-target': 'symlink target is empty',
  'target-nul-character': 'symlink target contains a NUL byte',
};

/** Byte-wise comparison (the order of NAR entries), as memcmp then length. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

export function encodeUtf8(s: string): Uint8Array {
  return utf8.encode(s);
}

/** Decodes wire bytes for display; invalid sequences become U+FFFD (the bytes stay authoritative). */
export function decodeUtf8(b: Uint8Array): string {
  return utf8Decoder.decode(b);
}

/** Shows a name for an error message, JSON-quoted so control bytes are visible. */
export function showBytes(b: Uint8Array, max = 80): string {
  const s = decodeUtf8(b.length > max ? b.subarray(0, max) : b);
  return JSON.stringify(s) + (b.length > max ? '…' : '');
}

export function padLength(n: number): number {
  return (8 - (n % 8)) % 8;
}
