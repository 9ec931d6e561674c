// The worker protocol's wire encoding, without I/O.
//
//   u64        8 bytes little-endian (booleans are u64 0/1)
//   bytes(s)   u64 |s|, s, zero padding to a multiple of 8
//   list(T)    u64 n, n × T          (string lists and sets alike)
//   map(K,V)   u64 n, n × (K, V)
//   framed     { u64 n (n > 0), n raw bytes (NO padding) }*, u64 0
//   error      bytes "Error", u64 level, bytes "Error", bytes msg,
//              u64 0 (no position), u64 nTraces, nTraces × (u64 0, bytes hint)
//              (protocol >= 1.26; older: bytes msg, u64 exitStatus)
//
// Stderr frames (a u64 tag, then):
//   NEXT bytes | READ u64 len | WRITE bytes | LAST | ERROR error
//   START_ACTIVITY u64 id, u64 level, u64 type, bytes text, fields, u64 parent
//   STOP_ACTIVITY u64 id | RESULT u64 id, u64 type, fields
//   fields = u64 n, n × (u64 0, u64 int | u64 1, bytes string)
//
// Decoding is written once against WireSource (async, so a socket reader and
// an in-memory buffer share it); encoding appends to a WireWriter.
import { defineError } from '../errors.js';
import { base16Encode, parseHash } from '../format/hash.js';
import { FieldType, Since, Stderr } from './protocol.js';
import type {
  BasicDerivation,
  BuildResult,
  DerivedPath,
  PathInfo,
  Realisation,
} from './store-api.js';

export class WireTruncated extends defineError('WireTruncated', 'E_WIRE_TRUNCATED') {}
export class WireLimitExceeded extends defineError('WireLimitExceeded', 'E_WIRE_LIMIT') {}
export class WireBadPadding extends defineError('WireBadPadding', 'E_WIRE_PADDING') {}
export class WireBadValue extends defineError('WireBadValue', 'E_WIRE_VALUE') {}
export class WireUnknownFrame extends defineError('WireUnknownFrame', 'E_WIRE_UNKNOWN_FRAME') {}

export interface WireLimits {
  /** Longest single string/bytes field held in memory. */
  maxStringBytes: number;
  /** Most elements in one list, set or map. */
  maxListLength: number;
  /** Most bytes of non-streamed fields in one request (reset per op). */
  maxRequestBytes: number;
}

export const DEFAULT_LIMITS: Readonly<WireLimits> = {
  maxStringBytes: 32 * 1024 * 1024,
  maxListLength: 1 << 20,
  maxRequestBytes: 64 * 1024 * 1024,
};

const U32_MAX = 0xffffffff;

export function paddingOf(len: number): number {
  return (8 - (len % 8)) % 8;
}

// ---------------------------------------------------------------- encoding

/** Appends wire values to a growable buffer. */
export class WireWriter {
  private buf: Buffer;
  private len = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  get length(): number {
    return this.len;
  }

  u64(n: number | bigint): this {
    let v: bigint;
    if (typeof n === 'bigint') v = n;
    else {
      if (!Number.isSafeInteger(n) || n < 0) throw new WireBadValue(`cannot encode ${n} as an unsigned 64-bit integer`, { value: n });
      v = BigInt(n);
    }
    if (v < 0n || v > 0xffffffffffffffffn) throw new WireBadValue(`cannot encode ${v} as an unsigned 64-bit integer`, { value: String(v) });
    this.reserve(8);
    this.buf.writeBigUInt64LE(v, this.len);
    this.len += 8;
    return this;
  }

  bool(b: boolean): this {
    return this.u64(b ? 1 : 0);
  }

  /** A length-prefixed, padded string (UTF-8 for JS strings). */
  bytes(s: string | Uint8Array): this {
    const data = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    this.u64(data.length);
    this.raw(data);
    const pad = paddingOf(data.length);
    this.reserve(pad);
    this.buf.fill(0, this.len, this.len + pad);
    this.len += pad;
    return this;
  }

  string(s: string): this {
    return this.bytes(s);
  }

  strings(list: Iterable<string>): this {
    const arr = [...list];
    this.u64(arr.length);
    for (const s of arr) this.bytes(s);
    return this;
  }

  /** Unpadded bytes (NAR payloads, framed chunks). */
  raw(data: Uint8Array): this {
    this.reserve(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
    return this;
  }

  /** The bytes written so far (a copy; the writer can be reused after `clear`). */
  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }

  /** Returns the bytes written and empties the writer. */
  take(): Buffer {
    const out = this.toBuffer();
    this.len = 0;
    return out;
  }
}

/** One framed chunk (n > 0) of the "new framing". */
export function encodeFrame(chunk: Uint8Array): Buffer {
  const head = Buffer.allocUnsafe(8);
  head.writeBigUInt64LE(BigInt(chunk.length));
  return Buffer.concat([head, chunk]);
}
export const FRAME_END: Buffer = Buffer.alloc(8);

// ---------------------------------------------------------------- decoding

/**
 * A source of wire values. Subclasses supply `fill`: make at least `n` bytes
 * available (or fewer at end of input).
 */
export abstract class WireSource {
  readonly limits: WireLimits;
  private budget: number;
  /** The first error a read raised: after it the stream position is unknown. */
  poisoned: Error | null = null;

  constructor(limits: Partial<WireLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.budget = this.limits.maxRequestBytes;
  }

  /** Starts a new request: the per-request byte budget is full again. */
  resetBudget(): void {
    this.budget = this.limits.maxRequestBytes;
  }

  /** Records `e` as the reason this source is out of sync, and throws it. */
  protected fail(e: unknown): never {
    if (e instanceof Error) this.poisoned ??= e;
    throw e;
  }

  private charge(n: number): void {
    this.budget -= n;
    if (this.budget < 0) {
      this.fail(new WireLimitExceeded(`request is larger than the limit of ${this.limits.maxRequestBytes} bytes`, {
        limit: this.limits.maxRequestBytes,
      }));
    }
  }

  /** Exactly n bytes, or WireTruncated. */
  protected abstract readExactRaw(n: number): Promise<Buffer>;
  /**
   * Puts bytes just read back in front of the stream (a parser that read past
   * the end of what it delimits returns the excess).
   */
  abstract unread(b: Buffer): void;
  /** 1..max bytes (whatever is available, at least one), or WireTruncated. */
  protected abstract readSomeRaw(max: number): Promise<Buffer>;

  async readExact(n: number, what = 'data'): Promise<Buffer> {
    this.charge(n);
    return this.readExactRaw(n).catch((e) => this.fail(retag(e, what)));
  }

  /** Streamed payload bytes: not charged to the request budget. */
  async readSome(max: number, what = 'data'): Promise<Buffer> {
    return this.readSomeRaw(max).catch((e) => this.fail(retag(e, what)));
  }

  async u64(what = 'integer'): Promise<bigint> {
    const b = await this.readExact(8, what);
    return b.readBigUInt64LE(0);
  }

  /** A u64 that must be <= max (default: the largest safe JS integer). */
  async num(what = 'integer', max = Number.MAX_SAFE_INTEGER): Promise<number> {
    const v = await this.u64(what);
    if (v > BigInt(max)) this.fail(new WireBadValue(`${what}: ${v} is larger than ${max}`, { what, value: String(v) }));
    return Number(v);
  }

  /** A u64 that fits 32 bits (Nix's readInt). */
  async int(what = 'integer'): Promise<number> {
    return this.num(what, U32_MAX);
  }

  async bool(what = 'boolean'): Promise<boolean> {
    const v = await this.u64(what);
    if (v > 1n) this.fail(new WireBadValue(`${what}: ${v} is not a boolean`, { what, value: String(v) }));
    return v === 1n;
  }

  async bytes(what = 'string', max = this.limits.maxStringBytes): Promise<Buffer> {
    const len = await this.u64(`length of ${what}`);
    const cap = Math.min(max, this.limits.maxStringBytes);
    if (len > BigInt(cap)) {
      this.fail(new WireLimitExceeded(`${what}: length ${len} exceeds the limit of ${cap} bytes`, { what, length: String(len) }));
    }
    const n = Number(len);
    const data = n === 0 ? Buffer.alloc(0) : await this.readExact(n, what);
    await this.padding(n, what);
    return data;
  }

  async padding(len: number, what = 'string'): Promise<void> {
    const pad = paddingOf(len);
    if (pad === 0) return;
    const p = await this.readExact(pad, `padding of ${what}`);
    for (const byte of p) if (byte !== 0) this.fail(new WireBadPadding(`${what}: non-zero padding`, { what }));
  }

  async string(what = 'string', max?: number): Promise<string> {
    return (await this.bytes(what, max)).toString('utf8');
  }

  async listLength(what = 'list'): Promise<number> {
    const n = await this.u64(`length of ${what}`);
    if (n > BigInt(this.limits.maxListLength)) {
      this.fail(new WireLimitExceeded(`${what}: ${n} elements exceed the limit of ${this.limits.maxListLength}`, { what, length: String(n) }));
    }
    return Number(n);
  }

  async strings(what = 'string list'): Promise<string[]> {
    const n = await this.listLength(what);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(await this.string(what));
    return out;
  }
}

function retag(e: unknown, what: string): unknown {
  if (e instanceof WireTruncated && !e.fields.what) {
    return new WireTruncated(`unexpected end of input while reading ${what}`, { what });
  }
  return e;
}

/** A WireSource over bytes already in memory. */
export class BufferSource extends WireSource {
  private pos = 0;

  constructor(
    private readonly data: Uint8Array,
    limits: Partial<WireLimits> = {},
  ) {
    super(limits);
  }

  get remaining(): number {
    return this.data.length - this.pos;
  }

  protected async readExactRaw(n: number): Promise<Buffer> {
    if (this.pos + n > this.data.length) {
      this.pos = this.data.length;
      throw new WireTruncated('unexpected end of input');
    }
    const out = Buffer.from(this.data.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }

  protected async readSomeRaw(max: number): Promise<Buffer> {
    if (this.pos >= this.data.length) throw new WireTruncated('unexpected end of input');
    return this.readExactRaw(Math.min(max, this.data.length - this.pos));
  }

  unread(b: Buffer): void {
    if (b.length > this.pos) throw new Error('BufferSource.unread: more bytes than were read');
    this.pos -= b.length;
  }
}

// ---------------------------------------------------------------- framed data

/**
 * The chunks of one framed stream, streamed in pieces of at most `piece`
 * bytes (a frame's declared length is never allocated at once). Stops after
 * the terminating empty frame. If the consumer stops early, call `drainFramed`
 * to keep the connection in sync.
 */
export async function* readFramed(src: WireSource, piece = 64 * 1024): AsyncGenerator<Buffer> {
  for (;;) {
    const len = await src.u64('frame length');
    if (len === 0n) return;
    let left = len;
    while (left > 0n) {
      const want = left > BigInt(piece) ? piece : Number(left);
      const chunk = await src.readSome(want, 'framed data');
      left -= BigInt(chunk.length);
      yield chunk;
    }
  }
}

/** Reads and discards a framed stream up to its end marker. */
export async function drainFramed(src: WireSource): Promise<void> {
  for await (const _ of readFramed(src)) {
    // discard
  }
}

/**
 * The logical stream inside a framed stream, as a WireSource (AddMultipleToStore
 * sends path infos and NARs inside frames). `finish` skips whatever the
 * consumer left unread, up to the end marker, keeping the connection in sync.
 */
export class FramedSource extends WireSource {
  private left = 0n; // bytes left in the current frame
  private done = false;

  constructor(private readonly inner: WireSource) {
    super(inner.limits);
  }

  get finished(): boolean {
    return this.done;
  }

  private async nextFrame(): Promise<boolean> {
    while (this.left === 0n) {
      if (this.done) return false;
      const len = await this.inner.u64('frame length');
      if (len === 0n) {
        this.done = true;
        return false;
      }
      this.left = len;
    }
    return true;
  }

  protected async readSomeRaw(max: number): Promise<Buffer> {
    if (!(await this.nextFrame())) throw new WireTruncated('unexpected end of framed data');
    const want = this.left > BigInt(max) ? max : Number(this.left);
    const b = await this.inner.readSome(want, 'framed data');
    this.left -= BigInt(b.length);
    return b;
  }

  protected async readExactRaw(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const b = await this.readSomeRaw(n - got);
      parts.push(b);
      got += b.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  unread(b: Buffer): void {
    if (b.length === 0) return;
    // the bytes came from the current frame (readSome never crosses frames)
    this.inner.unread(b);
    this.left += BigInt(b.length);
  }

  /** The rest of the logical stream, in pieces of at most `piece` bytes. */
  async *chunks(piece = 64 * 1024): AsyncGenerator<Buffer> {
    while (await this.nextFrame()) yield await this.readSomeRaw(piece);
  }

  async finish(): Promise<void> {
    while (await this.nextFrame()) {
      const want = this.left > 65536n ? 65536 : Number(this.left);
      const b = await this.inner.readSome(want, 'framed data');
      this.left -= BigInt(b.length);
    }
  }
}

// ---------------------------------------------------------------- structures

export interface RemoteErrorInfo {
  message: string;
  level: number;
  /** Exit status (only sent by protocols < 1.26). */
  status?: number;
  traces: string[];
}

export function writeError(w: WireWriter, err: RemoteErrorInfo, minor: number): void {
  if (minor >= Since.StructuredErrors) {
    w.string('Error').u64(err.level).string('Error').string(err.message).u64(0).u64(err.traces.length);
    for (const t of err.traces) w.u64(0).string(t);
  } else {
    w.string(err.message).u64(err.status ?? 1);
  }
}

export async function readError(src: WireSource, minor: number): Promise<RemoteErrorInfo> {
  if (minor < Since.StructuredErrors) {
    const message = await src.string('error message');
    const status = await src.int('error status');
    return { message, level: 0, status, traces: [] };
  }
  const type = await src.string('error type');
  if (type !== 'Error') throw new WireBadValue(`error frame: expected type 'Error', got '${type}'`, { value: type });
  const level = await src.int('error level');
  await src.string('error name');
  const message = await src.string('error message');
  const havePos = await src.u64('error position');
  if (havePos !== 0n) throw new WireBadValue('error frame: positions are not supported', {});
  const n = await src.listLength('error traces');
  const traces: string[] = [];
  for (let i = 0; i < n; i++) {
    const pos = await src.u64('trace position');
    if (pos !== 0n) throw new WireBadValue('error trace: positions are not supported', {});
    traces.push(await src.string('trace'));
  }
  return { message, level, traces };
}

/** Activity fields: decoded integers are bigint; numbers are accepted when encoding. */
export type LogField = bigint | number | string;

function writeFields(w: WireWriter, fields: readonly LogField[]): void {
  w.u64(fields.length);
  for (const f of fields) {
    if (typeof f === 'string') w.u64(FieldType.String).string(f);
    else w.u64(FieldType.Int).u64(f);
  }
}

async function readFields(src: WireSource): Promise<LogField[]> {
  const n = await src.listLength('activity fields');
  const out: LogField[] = [];
  for (let i = 0; i < n; i++) {
    const t = await src.u64('field type');
    if (t === BigInt(FieldType.Int)) out.push(await src.u64('int field'));
    else if (t === BigInt(FieldType.String)) out.push(await src.string('string field'));
    else throw new WireBadValue(`unknown activity field type ${t}`, { value: String(t) });
  }
  return out;
}

export type StderrFrame =
  | { type: 'next'; text: string }
  | { type: 'read'; length: number }
  | { type: 'write'; data: Buffer }
  | { type: 'last' }
  | { type: 'error'; error: RemoteErrorInfo }
  | { type: 'startActivity'; id: bigint; level: number; activityType: number; text: string; fields: LogField[]; parent: bigint }
  | { type: 'stopActivity'; id: bigint }
  | { type: 'result'; id: bigint; resultType: number; fields: LogField[] };

export function writeStderrFrame(w: WireWriter, frame: StderrFrame, minor: number): void {
  switch (frame.type) {
    case 'next':
      w.u64(Stderr.Next).string(frame.text);
      break;
    case 'read':
      w.u64(Stderr.Read).u64(frame.length);
      break;
    case 'write':
      w.u64(Stderr.Write).bytes(frame.data);
      break;
    case 'last':
      w.u64(Stderr.Last);
      break;
    case 'error':
      w.u64(Stderr.Error);
      writeError(w, frame.error, minor);
      break;
    case 'startActivity':
      w.u64(Stderr.StartActivity).u64(frame.id).u64(frame.level).u64(frame.activityType).string(frame.text);
      writeFields(w, frame.fields);
      w.u64(frame.parent);
      break;
    case 'stopActivity':
      w.u64(Stderr.StopActivity).u64(frame.id);
      break;
    case 'result':
      w.u64(Stderr.Result).u64(frame.id).u64(frame.resultType);
      writeFields(w, frame.fields);
      break;
  }
}

export async function readStderrFrame(src: WireSource, minor: number): Promise<StderrFrame> {
  const tag = await src.u64('stderr frame tag');
  switch (Number(tag)) {
    case Stderr.Next:
      return { type: 'next', text: await src.string('log line') };
    case Stderr.Read:
      return { type: 'read', length: await src.num('read request length') };
    case Stderr.Write:
      return { type: 'write', data: await src.bytes('write data') };
    case Stderr.Last:
      return { type: 'last' };
    case Stderr.Error:
      return { type: 'error', error: await readError(src, minor) };
    case Stderr.StartActivity: {
      const id = await src.u64('activity id');
      const level = await src.int('activity level');
      const activityType = await src.int('activity type');
      const text = await src.string('activity text');
      const fields = await readFields(src);
      const parent = await src.u64('activity parent');
      return { type: 'startActivity', id, level, activityType, text, fields, parent };
    }
    case Stderr.StopActivity:
      return { type: 'stopActivity', id: await src.u64('activity id') };
    case Stderr.Result: {
      const id = await src.u64('activity id');
      const resultType = await src.int('result type');
      return { type: 'result', id, resultType, fields: await readFields(src) };
    }
    default:
      throw new WireUnknownFrame(`unknown stderr frame tag 0x${tag.toString(16)}`, { tag: String(tag) });
  }
}

/** Path info as QueryPathInfo / AddToStore answer it (the path first only when `includePath`). */
export function writePathInfo(w: WireWriter, info: PathInfo, minor: number, includePath: boolean): void {
  if (includePath) w.string(info.path);
  w.string(info.deriver ?? '').string(base16Encode(info.narHash.digest));
  w.strings(info.references);
  w.u64(info.registrationTime).u64(info.narSize);
  if (minor >= Since.ValidPathInfoUltimate) {
    w.bool(info.ultimate).strings(info.sigs).string(info.ca ?? '');
  }
}

export async function readPathInfo(src: WireSource, minor: number, path?: string): Promise<PathInfo> {
  const p = path ?? (await src.string('path'));
  const deriver = await src.string('deriver');
  const narHashStr = await src.string('nar hash');
  const narHash = parseWireHash(narHashStr, 'nar hash');
  const references = await src.strings('references');
  const registrationTime = await src.num('registration time');
  const narSize = await src.num('nar size');
  let ultimate = false;
  let sigs: string[] = [];
  let ca: string | null = null;
  if (minor >= Since.ValidPathInfoUltimate) {
    ultimate = await src.bool('ultimate');
    sigs = await src.strings('signatures');
    ca = (await src.string('content address')) || null;
  }
  return { path: p, deriver: deriver || null, narHash, references, registrationTime, narSize, ultimate, sigs, ca };
}

/** A sha256 in any Nix encoding (Hash::parseAny with sha256 as the default). */
export function parseWireHash(s: string, what: string) {
  try {
    return parseHash(s, s.includes(':') || s.includes('-') ? undefined : 'sha256');
  } catch (e) {
    throw new WireBadValue(`${what}: ${(e as Error).message}`, { what, value: s });
  }
}

export function formatDerivedPath(p: DerivedPath): string {
  if (p.kind === 'opaque') return p.path;
  return `${p.drvPath}!${p.outputs.length === 0 ? '*' : p.outputs.join(',')}`;
}

/** `path`, `drv!out1,out2` or `drv!*` (paths are validated by the caller). */
export function parseDerivedPath(s: string): DerivedPath {
  const bang = s.indexOf('!');
  if (bang < 0) return { kind: 'opaque', path: s };
  const outs = s.slice(bang + 1);
  const outputs = outs === '*' ? [] : [...new Set(outs.split(',').filter((o) => o !== ''))].sort();
  return { kind: 'built', drvPath: s.slice(0, bang), outputs };
}

/** Realisations travel as JSON with the output path as a base name. */
export function realisationToJson(r: Realisation, storeDir: string): string {
  const base = (p: string) => (p.startsWith(storeDir + '/') ? p.slice(storeDir.length + 1) : p);
  const deps: Record<string, string> = {};
  for (const k of Object.keys(r.dependentRealisations).sort()) deps[k] = base(r.dependentRealisations[k]!);
  // keys in nlohmann's (sorted) order, so the bytes match Nix's
  return JSON.stringify({ dependentRealisations: deps, id: r.id, outPath: base(r.outPath), signatures: [...r.signatures].sort() });
}

export function realisationFromJson(s: string, storeDir: string): Realisation {
  let j: unknown;
  try {
    j = JSON.parse(s);
  } catch {
    throw new WireBadValue(`realisation is not JSON: ${s.slice(0, 200)}`, { value: s.slice(0, 200) });
  }
  const o = j as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || typeof o.id !== 'string' || typeof o.outPath !== 'string') {
    throw new WireBadValue(`realisation lacks 'id' or 'outPath': ${s.slice(0, 200)}`, { value: s.slice(0, 200) });
  }
  const full = (p: string) => (p.startsWith('/') ? p : `${storeDir}/${p}`);
  const deps: Record<string, string> = {};
  const rawDeps = o.dependentRealisations;
  if (rawDeps && typeof rawDeps === 'object') {
    for (const [k, v] of Object.entries(rawDeps as Record<string, unknown>)) if (typeof v === 'string') deps[k] = full(v);
  }
  const sigs = Array.isArray(o.signatures) ? o.signatures.filter((x): x is string => typeof x === 'string') : [];
  return { id: o.id, outPath: full(o.outPath), signatures: sigs, dependentRealisations: deps };
}

export function writeBuildResult(w: WireWriter, r: BuildResult, storeDir: string): void {
  w.string(formatDerivedPath(r.path)).u64(r.status).string(r.errorMsg);
  w.u64(r.timesBuilt).bool(r.isNonDeterministic).u64(r.startTime).u64(r.stopTime);
  const outs = [...r.builtOutputs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  w.u64(outs.length);
  for (const o of outs) w.string(o.id).string(realisationToJson(o, storeDir));
}

export async function readBuildResult(src: WireSource, storeDir: string): Promise<BuildResult> {
  const path = parseDerivedPath(await src.string('derived path'));
  const status = await src.int('build status');
  const errorMsg = await src.string('build error');
  const timesBuilt = await src.int('times built');
  const isNonDeterministic = await src.bool('non-deterministic');
  const startTime = await src.num('start time');
  const stopTime = await src.num('stop time');
  const n = await src.listLength('built outputs');
  const builtOutputs: Realisation[] = [];
  for (let i = 0; i < n; i++) {
    await src.string('drv output id');
    builtOutputs.push(realisationFromJson(await src.string('realisation'), storeDir));
  }
  return { path, status, errorMsg, timesBuilt, isNonDeterministic, startTime, stopTime, builtOutputs };
}

export function writeBasicDerivation(w: WireWriter, d: BasicDerivation): void {
  w.u64(d.outputs.length);
  for (const o of d.outputs) w.string(o.name).string(o.path).string(o.hashAlgo).string(o.hash);
  w.strings(d.inputSrcs).string(d.platform).string(d.builder).strings(d.args);
  w.u64(d.env.length);
  for (const [k, v] of d.env) w.string(k).string(v);
}

export async function readBasicDerivation(src: WireSource): Promise<BasicDerivation> {
  const n = await src.listLength('derivation outputs');
  const outputs: BasicDerivation['outputs'] = [];
  for (let i = 0; i < n; i++) {
    outputs.push({
      name: await src.string('output name'),
      path: await src.string('output path'),
      hashAlgo: await src.string('output hash algo'),
      hash: await src.string('output hash'),
    });
  }
  const inputSrcs = await src.strings('input sources');
  const platform = await src.string('platform');
  const builder = await src.string('builder');
  const args = await src.strings('builder arguments');
  const m = await src.listLength('environment');
  const env: [string, string][] = [];
  for (let i = 0; i < m; i++) env.push([await src.string('env name'), await src.string('env value')]);
  return { outputs, inputSrcs, platform, builder, args, env };
}
