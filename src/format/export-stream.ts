// The `nix-store --export` stream, which `nix-store --import` reads. No I/O.
//
//   stream   := entry* u64(0)
//   entry    := u64(1) nar u64(EXPORT_MAGIC) str(path) refs str(deriver) sig
//   refs     := u64(n) str(reference)*n          store paths, sorted, no duplicates
//   deriver  := "" | a store path
//   sig      := u64(0) | u64(1) str(signature)   legacy signature, ignored by Nix
//   u64      := 8 bytes little-endian;  str and nar as in nar.ts
//
// Nix writes `sig` as u64(0) and accepts (and ignores) a legacy signature.
import { defineError } from '../errors.js';
import { badNar, BadNar, padLength, type NarEvent } from './nar.js';
import { NarParser, u64 } from './nar-reader.js';
import { encodeNarString, encodeU64 } from './nar-writer.js';
import { DEFAULT_STORE_DIR, parseStorePath } from './store-path.js';

export const EXPORT_MAGIC = 0x4558494e; // "NIXE" little-endian
export const EXPORT_NEXT_PATH = 1;
export const EXPORT_END = 0;
/** Most references a path may list. */
export const MAX_EXPORT_REFERENCES = 1 << 20;
/** Longest legacy signature accepted. */
export const MAX_SIGNATURE_BYTES = 4096;
/** Store paths are at most storeDir + '/' + 32 + '-' + 211 characters. */
const STORE_PATH_OVERHEAD = 1 + 32 + 1 + 211;

export type ExportRule =
  | 'bad-marker'
  | 'bad-magic'
  | 'bad-signature-marker'
  | 'invalid-store-path'
  | 'oversized-length'
  | 'nonzero-padding'
  | 'truncated'
  | 'trailing-data';

/** A malformed export stream (outside the NARs, which raise BadNar with stream offsets). */
export class BadExport extends defineError('BadExport', 'E_BAD_EXPORT') {
  declare readonly fields: { offset: number; rule: ExportRule; [k: string]: unknown };
  get offset(): number {
    return this.fields.offset;
  }
  get rule(): ExportRule {
    return this.fields.rule;
  }
}

function badExport(offset: number, rule: ExportRule, what: string, extra: Record<string, unknown> = {}): BadExport {
  return new BadExport(`bad export stream at byte ${offset}: ${what} (${rule})`, { offset, rule, ...extra });
}

export interface ExportPathInfo {
  path: string;
  references: string[];
  deriver: string | null;
}

export type ExportEvent =
  | { type: 'pathStart' }
  | { type: 'nar'; event: NarEvent }
  | { type: 'pathEnd'; path: string; references: string[]; deriver: string | null; signature?: string }
  | { type: 'end' };

const enum S {
  Marker,
  Nar,
  Magic,
  Path,
  RefCount,
  Ref,
  Deriver,
  SigFlag,
  Sig,
  End,
  Failed,
}

const EMPTY = new Uint8Array(0);
const NO_EVENTS: ExportEvent[] = [];
const latin1 = new TextDecoder('latin1');
const utf8 = new TextDecoder('utf-8');

export interface ExportParserOptions {
  /** Called for each event instead of collecting them (push() then returns []). */
  onEvent?: (e: ExportEvent) => void;
}

export class ExportParser {
  private state: S = S.Marker;
  private buf: Uint8Array = EMPTY;
  private pos = 0;
  /** Absolute offset of buf[pos]. */
  private consumed = 0;
  private readonly acc: Uint8Array;
  private accLen = 0;
  private strLen = -1;
  private strStart = 0;
  private nar: NarParser | null = null;
  private path = '';
  private refCount = 0;
  private refs: string[] = [];
  private refSet = new Set<string>();
  private deriver: string | null = null;
  private out: ExportEvent[] = [];
  private readonly onEvent: ((e: ExportEvent) => void) | undefined;
  private readonly maxPath: number;
  private error: Error | null = null;
  private readonly narSink: (e: NarEvent) => void;

  constructor(readonly storeDir: string = DEFAULT_STORE_DIR, opts: ExportParserOptions = {}) {
    this.onEvent = opts.onEvent;
    this.maxPath = storeDir.length + STORE_PATH_OVERHEAD;
    this.acc = new Uint8Array(8 + Math.max(this.maxPath, MAX_SIGNATURE_BYTES) + 8);
    this.narSink = (event) => this.emit({ type: 'nar', event });
  }

  /** True once the end marker has been read. */
  get done(): boolean {
    return this.state === S.End;
  }

  push(chunk: Uint8Array): ExportEvent[] {
    if (this.error) throw this.error;
    const events = this.onEvent ? NO_EVENTS : (this.out = []);
    this.buf = chunk;
    this.pos = 0;
    try {
      this.run();
    } catch (e) {
      if (e instanceof BadExport || e instanceof BadNar) {
        this.state = S.Failed;
        this.error = e;
      }
      throw e;
    } finally {
      this.buf = EMPTY;
      this.pos = 0;
    }
    return events;
  }

  /** Declares the end of input: throws unless the end marker was read. */
  finish(): void {
    if (this.error) throw this.error;
    if (this.state === S.End) return;
    if (this.state === S.Nar) this.nar!.finish();
    const inPadding = this.strLen >= 0 && this.accLen >= this.strLen;
    const err = badExport(
      this.consumed,
      'truncated',
      `input ends early${inPadding ? ' (inside padding)' : ''}, in ${this.where()}`,
    );
    this.state = S.Failed;
    this.error = err;
    throw err;
  }

  private where(): string {
    switch (this.state) {
      case S.Marker:
        return 'a path marker (expecting 1 or the end marker 0)';
      case S.Magic:
        return 'the export magic';
      case S.Path:
        return 'the store path';
      case S.RefCount:
      case S.Ref:
        return `the references of '${this.path}'`;
      case S.Deriver:
        return `the deriver of '${this.path}'`;
      default:
        return `the signature marker of '${this.path}'`;
    }
  }

  private emit(e: ExportEvent): void {
    if (this.onEvent) this.onEvent(e);
    else this.out.push(e);
  }

  private take(n: number): Uint8Array | null {
    const avail = this.buf.length - this.pos;
    if (this.accLen === 0 && avail >= n) {
      const v = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.consumed += n;
      return v;
    }
    const k = Math.min(n - this.accLen, avail);
    this.acc.set(this.buf.subarray(this.pos, this.pos + k), this.accLen);
    this.accLen += k;
    this.pos += k;
    this.consumed += k;
    if (this.accLen < n) return null;
    this.accLen = 0;
    return this.acc.subarray(0, n);
  }

  private readNum(): { value: number; at: number } | null {
    const at = this.consumed - this.accLen;
    const v = this.take(8);
    return v ? { value: u64(v), at } : null;
  }

  private readString(cap: number, what: string): Uint8Array | null {
    if (this.strLen < 0) {
      const n = this.readNum();
      if (!n) return null;
      this.strStart = n.at;
      if (n.value > cap) {
        throw badExport(n.at, 'oversized-length', `${what} has length ${n.value === Infinity ? '>= 2^53' : n.value}, more than ${cap}`);
      }
      this.strLen = n.value;
    }
    const len = this.strLen;
    const total = len + padLength(len);
    const v = this.take(total);
    if (!v) return null;
    for (let i = len; i < total; i++) {
      if (v[i] !== 0) throw badExport(this.strStart + 8 + i, 'nonzero-padding', `non-zero padding after ${what}`);
    }
    this.strLen = -1;
    return v.subarray(0, len);
  }

  private storePath(v: Uint8Array, what: string): string {
    const s = latin1.decode(v);
    try {
      parseStorePath(this.storeDir, s);
    } catch (e) {
      throw badExport(this.strStart, 'invalid-store-path', `${what} '${utf8.decode(v)}' is not a valid store path: ${(e as Error).message}`, {
        path: utf8.decode(v),
      });
    }
    return s;
  }

  private run(): void {
    for (;;) {
      switch (this.state) {
        case S.Marker: {
          const n = this.readNum();
          if (!n) return;
          if (n.value === EXPORT_NEXT_PATH) {
            this.emit({ type: 'pathStart' });
            this.nar = new NarParser({ onEvent: this.narSink, baseOffset: this.consumed });
            this.state = S.Nar;
          } else if (n.value === EXPORT_END) {
            this.emit({ type: 'end' });
            this.state = S.End;
          } else {
            throw badExport(n.at, 'bad-marker', `expected 1 (a path follows) or 0 (end), got ${n.value}`);
          }
          break;
        }
        case S.Nar: {
          const rest = this.buf.subarray(this.pos);
          if (rest.length === 0) return;
          const nar = this.nar!;
          nar.push(rest);
          if (!nar.done) {
            this.consumed += rest.length;
            this.pos = this.buf.length;
            return;
          }
          const tail = nar.takeRemainder();
          const used = rest.length - tail.length;
          this.consumed += used;
          this.pos += used;
          this.nar = null;
          this.state = S.Magic;
          break;
        }
        case S.Magic: {
          const n = this.readNum();
          if (!n) return;
          if (n.value !== EXPORT_MAGIC) {
            throw badExport(n.at, 'bad-magic', `expected the export magic 0x${EXPORT_MAGIC.toString(16)} after the NAR, got ${n.value}`);
          }
          this.state = S.Path;
          break;
        }
        case S.Path: {
          const v = this.readString(this.maxPath, 'the store path');
          if (!v) return;
          this.path = this.storePath(v, 'exported path');
          this.state = S.RefCount;
          break;
        }
        case S.RefCount: {
          const n = this.readNum();
          if (!n) return;
          if (n.value > MAX_EXPORT_REFERENCES) {
            throw badExport(n.at, 'oversized-length', `'${this.path}' claims ${n.value} references (at most ${MAX_EXPORT_REFERENCES})`);
          }
          this.refCount = n.value;
          this.refs = [];
          this.refSet = new Set();
          this.state = this.refCount > 0 ? S.Ref : S.Deriver;
          break;
        }
        case S.Ref: {
          const v = this.readString(this.maxPath, 'a reference');
          if (!v) return;
          const r = this.storePath(v, `reference of '${this.path}'`);
          if (!this.refSet.has(r)) {
            this.refSet.add(r);
            this.refs.push(r);
          }
          if (--this.refCount === 0) this.state = S.Deriver;
          break;
        }
        case S.Deriver: {
          const v = this.readString(this.maxPath, 'the deriver');
          if (!v) return;
          this.deriver = v.length === 0 ? null : this.storePath(v, `deriver of '${this.path}'`);
          this.state = S.SigFlag;
          break;
        }
        case S.SigFlag: {
          const n = this.readNum();
          if (!n) return;
          if (n.value === 0) this.endPath(undefined);
          else if (n.value === 1) this.state = S.Sig;
          else throw badExport(n.at, 'bad-signature-marker', `expected 0 or 1 before the end of '${this.path}', got ${n.value}`);
          break;
        }
        case S.Sig: {
          const v = this.readString(MAX_SIGNATURE_BYTES, 'the legacy signature');
          if (!v) return;
          this.endPath(utf8.decode(v));
          break;
        }
        case S.End: {
          const extra = this.buf.length - this.pos;
          if (extra > 0) throw badExport(this.consumed, 'trailing-data', `${extra} bytes after the end marker`);
          return;
        }
        case S.Failed:
          return;
      }
    }
  }

  private endPath(signature: string | undefined): void {
    const e: ExportEvent = { type: 'pathEnd', path: this.path, references: this.refs, deriver: this.deriver };
    if (signature !== undefined) e.signature = signature;
    this.emit(e);
    this.state = S.Marker;
  }
}

/** `u64(1)`: a path follows. */
export function exportPathStart(): Uint8Array {
  return encodeU64(EXPORT_NEXT_PATH);
}

/** `u64(0)`: the end of the stream. */
export function exportStreamEnd(): Uint8Array {
  return encodeU64(EXPORT_END);
}

/** Sorted, de-duplicated, validated references (the order Nix writes). */
function checkInfo(info: ExportPathInfo, storeDir: string): string[] {
  const check = (p: string, what: string): void => {
    try {
      parseStorePath(storeDir, p);
    } catch (e) {
      throw badExport(0, 'invalid-store-path', `cannot export: ${what} '${p}' is not a valid store path: ${(e as Error).message}`, {
        path: p,
      });
    }
  };
  check(info.path, 'path');
  for (const r of info.references) check(r, `reference of '${info.path}'`);
  if (info.deriver) check(info.deriver, `deriver of '${info.path}'`);
  return [...new Set(info.references)].sort();
}

/** What follows a path's NAR: magic, path, references, deriver, no signature. */
export function exportEntryTrailer(info: ExportPathInfo, storeDir: string = DEFAULT_STORE_DIR): Uint8Array {
  const refs = checkInfo(info, storeDir);
  const parts = [encodeU64(EXPORT_MAGIC), encodeNarString(info.path), encodeU64(refs.length)];
  for (const r of refs) parts.push(encodeNarString(r));
  parts.push(encodeNarString(info.deriver ?? ''), encodeU64(0));
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export interface ExportEntry {
  info: ExportPathInfo;
  nar: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/**
 * A whole export stream. Entries must come in an order where references
 * precede their referrers (as `nix-store --export` of a closure does).
 */
export async function* exportStream(
  entries: AsyncIterable<ExportEntry> | Iterable<ExportEntry>,
  storeDir: string = DEFAULT_STORE_DIR,
): AsyncGenerator<Uint8Array> {
  for await (const { info, nar } of entries) {
    const trailer = exportEntryTrailer(info, storeDir); // validate before writing anything of this entry
    yield exportPathStart();
    let nonEmpty = false;
    for await (const chunk of nar) {
      if (chunk.length > 0) nonEmpty = true;
      yield chunk;
    }
    if (!nonEmpty) throw badNar(0, 'truncated', `the NAR of '${info.path}' is empty`);
    yield trailer;
  }
  yield exportStreamEnd();
}

/** Parses a whole export stream held in memory (tests). */
export function parseExport(data: Uint8Array, storeDir: string = DEFAULT_STORE_DIR): ExportEvent[] {
  const p = new ExportParser(storeDir);
  const events = p.push(data);
  p.finish();
  return events;
}
