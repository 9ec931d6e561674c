// NAR push parser (grammar in nar.ts). Feed it chunks of any size; it
// returns (or calls back with) NarEvents, stops exactly at the end of the
// NAR and keeps what follows for the caller (the export stream goes on after
// it). Only small strings are ever buffered (at most MAX_TARGET_BYTES plus
// a word); file contents pass through as views of the input chunks.
import {
  badNar,
  BadNar,
  compareBytes,
  decodeUtf8,
  encodeUtf8,
  entryNameProblem,
  MAX_CONTENTS_SIZE,
  MAX_NAME_BYTES,
  MAX_TARGET_BYTES,
  MAX_TOKEN_BYTES,
  NAME_RULE_TEXT,
  NAR_MAGIC,
  padLength,
  showBytes,
  symlinkTargetProblem,
  TOKEN_CLOSE,
  TOKEN_CONTENTS,
  TOKEN_DIRECTORY,
  TOKEN_ENTRY,
  TOKEN_EXECUTABLE,
  TOKEN_NAME,
  TOKEN_NODE,
  TOKEN_OPEN,
  TOKEN_REGULAR,
  TOKEN_SYMLINK,
  TOKEN_TARGET,
  TOKEN_TYPE,
  type NarEvent,
  type NarRule,
} from './nar.js';

const enum S {
  Magic,
  NodeOpen,
  TypeKw,
  TypeVal,
  RegNext,
  ExecVal,
  ContentsKw,
  ContentsLen,
  ContentsData,
  ContentsPad,
  NodeClose,
  TargetKw,
  TargetVal,
  DirNext,
  EntryOpen,
  NameKw,
  NameVal,
  NodeKw,
  EntryClose,
  Done,
  Failed,
}

const T = {
  magic: encodeUtf8(NAR_MAGIC),
  open: encodeUtf8(TOKEN_OPEN),
  close: encodeUtf8(TOKEN_CLOSE),
  type: encodeUtf8(TOKEN_TYPE),
  regular: encodeUtf8(TOKEN_REGULAR),
  symlink: encodeUtf8(TOKEN_SYMLINK),
  directory: encodeUtf8(TOKEN_DIRECTORY),
  executable: encodeUtf8(TOKEN_EXECUTABLE),
  contents: encodeUtf8(TOKEN_CONTENTS),
  target: encodeUtf8(TOKEN_TARGET),
  entry: encodeUtf8(TOKEN_ENTRY),
  name: encodeUtf8(TOKEN_NAME),
  node: encodeUtf8(TOKEN_NODE),
};

/** What each token state expects, for the message of an unknown token. */
const EXPECTED: Partial<Record<S, string>> = {
  [S.NodeOpen]: "'('",
  [S.TypeKw]: "'type'",
  [S.TypeVal]: "'regular', 'symlink' or 'directory'",
  [S.RegNext]: "'executable' or 'contents'",
  [S.ContentsKw]: "'contents'",
  [S.NodeClose]: "')'",
  [S.TargetKw]: "'target'",
  [S.DirNext]: "'entry' or ')'",
  [S.EntryOpen]: "'('",
  [S.NameKw]: "'name'",
  [S.NodeKw]: "'node'",
  [S.EntryClose]: "')'",
};

function eq(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const EMPTY = new Uint8Array(0);
const NO_EVENTS: NarEvent[] = [];

export interface NarParserOptions {
  /** Called for each event instead of collecting them (faster; push() then returns []). */
  onEvent?: (e: NarEvent) => void;
  /** Added to every offset reported in errors (position of the NAR in an enclosing stream). */
  baseOffset?: number;
}

export class NarParser {
  private state: S = S.Magic;
  private buf: Uint8Array = EMPTY;
  private pos = 0;
  /** Absolute offset of buf[0]. */
  private base: number;
  private readonly acc = new Uint8Array(8 + MAX_TARGET_BYTES + 8);
  private accLen = 0;
  /** Length of the string being read, or -1 while its length field is pending. */
  private strLen = -1;
  private strStart = 0;
  private executable = false;
  private remaining = 0;
  private padLeft = 0;
  private isRegular = false;
  /** Previous entry name of each open directory (null before the first entry). */
  private readonly dirs: Array<Uint8Array | null> = [];
  private out: NarEvent[] = [];
  private readonly onEvent: ((e: NarEvent) => void) | undefined;
  private remainder: Uint8Array = EMPTY;
  private error: BadNar | null = null;

  constructor(opts: NarParserOptions = {}) {
    this.onEvent = opts.onEvent;
    this.base = opts.baseOffset ?? 0;
  }

  /** True once the root node has been read completely. */
  get done(): boolean {
    return this.state === S.Done;
  }

  /** Offset (absolute, including baseOffset) of the next byte the parser will read. */
  get offset(): number {
    return this.base + this.pos;
  }

  /** Parses a chunk. Views in the returned events are only valid until the chunk is reused. */
  push(chunk: Uint8Array): NarEvent[] {
    if (this.error) throw this.error;
    if (this.state === S.Done) {
      this.appendRemainder(chunk);
      return NO_EVENTS;
    }
    this.buf = chunk;
    this.pos = 0;
    const events = this.onEvent ? NO_EVENTS : (this.out = []);
    try {
      this.run();
    } catch (e) {
      if (e instanceof BadNar) {
        this.state = S.Failed;
        this.error = e;
      }
      throw e;
    }
    if ((this.state as S) === S.Done && this.pos < chunk.length) this.remainder = chunk.subarray(this.pos);
    this.base += this.pos;
    this.buf = EMPTY;
    this.pos = 0;
    return events;
  }

  /** The bytes pushed after the end of the NAR (a view; consumed by this call). */
  takeRemainder(): Uint8Array {
    const r = this.remainder;
    this.remainder = EMPTY;
    return r;
  }

  /** Declares the end of input: throws BadNar unless the NAR is complete. */
  finish(): void {
    if (this.error) throw this.error;
    if ((this.state as S) === S.Done) return;
    const at = this.base + this.pos;
    const inPadding =
      this.state === S.ContentsPad ||
      (this.strLen >= 0 && this.accLen >= this.strLen && this.accLen < this.strLen + padLength(this.strLen));
    const err = inPadding
      ? badNar(at, 'truncated-padding', 'input ends inside padding')
      : badNar(at, 'truncated', `input ends early (expecting ${this.expecting()})`);
    this.state = S.Failed;
    this.error = err;
    throw err;
  }

  private expecting(): string {
    switch (this.state) {
      case S.Magic:
        return 'the NAR magic';
      case S.ContentsLen:
        return 'a file size';
      case S.ContentsData:
        return `${this.remaining} more bytes of file contents`;
      case S.TargetVal:
        return 'a symlink target';
      case S.NameVal:
        return 'an entry name';
      case S.ExecVal:
        return "the empty string after 'executable'";
      default:
        return EXPECTED[this.state] ?? 'more data';
    }
  }

  private appendRemainder(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.remainder.length === 0) {
      this.remainder = chunk;
      return;
    }
    const r = new Uint8Array(this.remainder.length + chunk.length);
    r.set(this.remainder);
    r.set(chunk, this.remainder.length);
    this.remainder = r;
  }

  private emit(e: NarEvent): void {
    if (this.onEvent) this.onEvent(e);
    else this.out.push(e);
  }

  private fail(offset: number, rule: NarRule, what: string, extra: Record<string, unknown> = {}): never {
    throw badNar(offset, rule, what, extra);
  }

  /** n bytes from the input, gathered across chunks; null until all are there. The view lives until the next take. */
  private take(n: number): Uint8Array | null {
    const avail = this.buf.length - this.pos;
    if (this.accLen === 0 && avail >= n) {
      const v = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      return v;
    }
    const k = Math.min(n - this.accLen, avail);
    this.acc.set(this.buf.subarray(this.pos, this.pos + k), this.accLen);
    this.accLen += k;
    this.pos += k;
    if (this.accLen < n) return null;
    this.accLen = 0;
    return this.acc.subarray(0, n);
  }

  /** u64 little-endian; Infinity when above MAX_CONTENTS_SIZE; null when incomplete. */
  private readU64(): number | null {
    const v = this.take(8);
    if (!v) return null;
    return u64(v);
  }

  /** A length-prefixed, zero-padded string of at most `cap` bytes; null when incomplete. */
  private readString(cap: number, what: string): Uint8Array | null {
    if (this.strLen < 0) {
      const start = this.base + this.pos - this.accLen;
      const len = this.readU64();
      if (len === null) return null;
      this.strStart = start;
      if (len > cap) {
        this.fail(start, 'oversized-length', `${what} has length ${len === Infinity ? '>= 2^53' : len}, more than ${cap}`, {
          length: len,
        });
      }
      this.strLen = len;
    }
    const len = this.strLen;
    const total = len + padLength(len);
    const v = this.take(total);
    if (!v) return null;
    for (let i = len; i < total; i++) {
      if (v[i] !== 0) this.fail(this.strStart + 8 + i, 'nonzero-padding', `non-zero padding after ${what}`);
    }
    this.strLen = -1;
    return v.subarray(0, len);
  }

  private token(): Uint8Array | null {
    return this.readString(MAX_TOKEN_BYTES, 'a token');
  }

  private unknown(tok: Uint8Array): never {
    if (this.state === S.Magic) this.fail(this.strStart, 'bad-magic', `not a NAR (starts with ${showBytes(tok)})`);
    this.fail(this.strStart, 'unknown-token', `expected ${EXPECTED[this.state]}, got ${showBytes(tok)}`, {
      token: decodeUtf8(tok),
    });
  }

  private expect(tok: Uint8Array, next: S): boolean {
    const v = this.token();
    if (!v) return false;
    if (!eq(v, tok)) this.unknown(v);
    this.state = next;
    return true;
  }

  private nodeDone(): void {
    this.state = this.dirs.length === 0 ? S.Done : S.EntryClose;
  }

  private run(): void {
    for (;;) {
      switch (this.state) {
        case S.Magic: {
          if (this.strLen < 0) {
            // Any other length means "not a NAR", whatever the chunking.
            const start = this.base + this.pos - this.accLen;
            const len = this.readU64();
            if (len === null) return;
            if (len !== T.magic.length) {
              this.fail(start, 'bad-magic', `not a NAR (first string has length ${len === Infinity ? '>= 2^53' : len})`);
            }
            this.strStart = start;
            this.strLen = len;
          }
          const v = this.readString(MAX_TOKEN_BYTES, 'the magic');
          if (!v) return;
          if (!eq(v, T.magic)) this.unknown(v);
          this.state = S.NodeOpen;
          break;
        }
        case S.NodeOpen:
          if (!this.expect(T.open, S.TypeKw)) return;
          break;
        case S.TypeKw:
          if (!this.expect(T.type, S.TypeVal)) return;
          break;
        case S.TypeVal: {
          const v = this.token();
          if (!v) return;
          if (eq(v, T.regular)) {
            this.executable = false;
            this.isRegular = true;
            this.state = S.RegNext;
          } else if (eq(v, T.symlink)) {
            this.isRegular = false;
            this.state = S.TargetKw;
          } else if (eq(v, T.directory)) {
            this.dirs.push(null);
            this.emit({ type: 'directory' });
            this.state = S.DirNext;
          } else this.unknown(v);
          break;
        }
        case S.RegNext: {
          const v = this.token();
          if (!v) return;
          if (eq(v, T.executable)) this.state = S.ExecVal;
          else if (eq(v, T.contents)) this.state = S.ContentsLen;
          else this.unknown(v);
          break;
        }
        case S.ExecVal: {
          if (this.strLen < 0) {
            const start = this.base + this.pos - this.accLen;
            const len = this.readU64();
            if (len === null) return;
            if (len !== 0) {
              this.fail(start, 'executable-value', `'executable' must be followed by an empty string, not one of length ${len}`);
            }
          }
          this.executable = true;
          this.state = S.ContentsKw;
          break;
        }
        case S.ContentsKw:
          if (!this.expect(T.contents, S.ContentsLen)) return;
          break;
        case S.ContentsLen: {
          const start = this.base + this.pos - this.accLen;
          const size = this.readU64();
          if (size === null) return;
          if (size > MAX_CONTENTS_SIZE) this.fail(start, 'oversized-length', 'file size is 2^53 bytes or more');
          this.emit({ type: 'regular', executable: this.executable, size });
          this.remaining = size;
          this.padLeft = padLength(size);
          this.strStart = start + 8 + size;
          this.state = size > 0 ? S.ContentsData : S.NodeClose;
          break;
        }
        case S.ContentsData: {
          const avail = this.buf.length - this.pos;
          if (avail === 0) return;
          const k = Math.min(avail, this.remaining);
          this.emit({ type: 'contents', data: this.buf.subarray(this.pos, this.pos + k) });
          this.pos += k;
          this.remaining -= k;
          if (this.remaining === 0) this.state = this.padLeft > 0 ? S.ContentsPad : S.NodeClose;
          break;
        }
        case S.ContentsPad: {
          const v = this.take(this.padLeft);
          if (!v) return;
          for (let i = 0; i < v.length; i++) {
            if (v[i] !== 0) this.fail(this.strStart + i, 'nonzero-padding', 'non-zero padding after file contents');
          }
          this.state = S.NodeClose;
          break;
        }
        case S.NodeClose: {
          if (!this.expect(T.close, S.NodeClose)) return;
          if (this.isRegular) this.emit({ type: 'regularEnd' });
          this.nodeDone();
          if ((this.state as S) === S.Done) return;
          break;
        }
        case S.TargetKw:
          if (!this.expect(T.target, S.TargetVal)) return;
          break;
        case S.TargetVal: {
          const v = this.readString(MAX_TARGET_BYTES, 'a symlink target');
          if (!v) return;
          const problem = symlinkTargetProblem(v);
          if (problem) this.fail(this.strStart, problem, `${NAME_RULE_TEXT[problem]}: ${showBytes(v)}`);
          const targetBytes = new Uint8Array(v); // a copy (Buffer#slice would be a view)
          this.emit({ type: 'symlink', target: decodeUtf8(targetBytes), targetBytes });
          this.state = S.NodeClose;
          break;
        }
        case S.DirNext: {
          const v = this.token();
          if (!v) return;
          if (eq(v, T.entry)) this.state = S.EntryOpen;
          else if (eq(v, T.close)) {
            this.dirs.pop();
            this.emit({ type: 'directoryEnd' });
            this.nodeDone();
            if ((this.state as S) === S.Done) return;
          } else this.unknown(v);
          break;
        }
        case S.EntryOpen:
          if (!this.expect(T.open, S.NameKw)) return;
          break;
        case S.NameKw:
          if (!this.expect(T.name, S.NameVal)) return;
          break;
        case S.NameVal: {
          const v = this.readString(MAX_NAME_BYTES, 'an entry name');
          if (!v) return;
          const problem = entryNameProblem(v);
          if (problem) this.fail(this.strStart, problem, `${NAME_RULE_TEXT[problem]}: ${showBytes(v)}`);
          const d = this.dirs.length - 1;
          const prev = this.dirs[d]!;
          if (prev) {
            const c = compareBytes(prev, v);
            if (c === 0) this.fail(this.strStart, 'duplicate', `duplicate entry ${showBytes(v)}`);
            if (c > 0) this.fail(this.strStart, 'unsorted', `entry ${showBytes(v)} comes after ${showBytes(prev)}`);
          }
          const nameBytes = new Uint8Array(v);
          this.dirs[d] = nameBytes;
          this.emit({ type: 'entry', name: decodeUtf8(nameBytes), nameBytes });
          this.state = S.NodeKw;
          break;
        }
        case S.NodeKw:
          if (!this.expect(T.node, S.NodeOpen)) return;
          break;
        case S.EntryClose:
          if (!this.expect(T.close, S.DirNext)) return;
          this.emit({ type: 'entryEnd' });
          break;
        case S.Done:
        case S.Failed:
          return;
      }
    }
  }
}

/** u64 little-endian as a number; Infinity above MAX_CONTENTS_SIZE. */
export function u64(v: Uint8Array): number {
  const lo = (v[0]! | (v[1]! << 8) | (v[2]! << 16) | (v[3]! << 24)) >>> 0;
  const hi = (v[4]! | (v[5]! << 8) | (v[6]! << 16) | (v[7]! << 24)) >>> 0;
  if (hi >= 0x200000) return Infinity;
  return hi * 0x100000000 + lo;
}

/** Parses a whole NAR held in memory (tests, small NARs); throws on trailing bytes. */
export function parseNar(nar: Uint8Array): NarEvent[] {
  const p = new NarParser();
  const events = p.push(nar);
  p.finish();
  const rest = p.takeRemainder();
  if (rest.length > 0) throw badNar(nar.length - rest.length, 'trailing-data', `${rest.length} bytes after the end of the NAR`);
  return events;
}
