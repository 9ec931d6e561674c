// The ATerm form of a derivation: the bytes of a .drv file.
//
//   drv       = "Derive(" outputs "," inputDrvs "," paths "," str "," qstr "," qstrs "," env ")"
//   outputs   = "[" [ output  { "," output  } ] "]"
//   output    = "(" str "," str "," str "," str ")"       name, path, hashAlgo, hash
//   inputDrvs = "[" [ inputDrv { "," inputDrv } ] "]"
//   inputDrv  = "(" str "," strs ")"                      .drv path, output names
//   paths     = strs                                      input sources
//   env       = "[" [ pair { "," pair } ] "]"
//   pair      = "(" qstr "," qstr ")"
//   strs      = "[" [ str  { "," str  } ] "]"
//   qstrs     = "[" [ qstr { "," qstr } ] "]"
//   str       = '"' raw bytes except '"' '"'              Nix writes these unescaped
//   qstr      = '"' { byte | "\" ( '"' | "\" | "n" | "r" | "t" ) } '"'
// The platform is a `str`; builder, args and env are `qstr`s. Every list of
// outputs, input derivations, output names, sources and env pairs is in
// strictly ascending byte order.
//
// Parsing modes:
//   strict (default)  accepts exactly what the printer writes, so a parse
//                     that succeeds re-prints byte for byte: sorted unique
//                     keys, only the five escapes, no raw \n \r \t inside a
//                     qstr, no backslash in a str, a fixed output's path equal
//                     to the one its hash gives, nothing after the final ")".
//   lenient           accepts what Nix 2.8's parser accepts: any "\c" means
//                     c, keys in any order (for duplicates the first output,
//                     the last input derivation and the last env value win),
//                     the stored path of a fixed output is ignored (it must
//                     still be computable), trailing bytes are ignored. Still
//                     rejected, unlike Nix: invalid UTF-8, an input derivation
//                     path without .drv, Nix's list quirks (`["a""b"]`,
//                     `[,"a"]`), and a truncated string (Nix loops on EOF).
// Invalid UTF-8 is an error in both modes (AtermInvalidUtf8 with the offset
// of the first bad byte): the model holds JavaScript strings and must not
// replace bytes silently. Every failure is one of the typed errors below and
// names the byte offset and what was expected there.
import { isUtf8 } from 'node:buffer';
import { defineError } from '../errors.js';
import { HASH_SIZE, parseHash, type Hash } from './hash.js';
import {
  checkStrings,
  compareUtf8,
  derivationNameFromPath,
  fixedOutputPath,
  parseMethodAlgo,
  printMethodAlgo,
  sortedUtf8,
  type Derivation,
  type DerivationOutput,
} from './derivation.js';
import { DEFAULT_STORE_DIR, DRV_EXTENSION, parseStorePath } from './store-path.js';
import { base16Encode } from './hash.js';

export const ATERM_PREFIX = 'Derive(';
export const ATERM_SUFFIX = ')';
export const IMPURE_HASH = 'impure';

const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \
const COMMA = 0x2c; // ,
const LPAREN = 0x28; // (
const RPAREN = 0x29; // )
const LBRACKET = 0x5b; // [
const RBRACKET = 0x5d; // ]
const PREFIX_BYTES = Buffer.from(ATERM_PREFIX, 'latin1');

interface AtermErrorFields {
  [key: string]: unknown;
  offset: number;
  expected: string;
  got: string;
  derivation: string;
}

type AtermErrorClass = new (message: string, fields: AtermErrorFields) => Error;

export class AtermTruncated extends defineError('AtermTruncated', 'E_ATERM_TRUNCATED') {}
export class AtermUnexpected extends defineError('AtermUnexpected', 'E_ATERM_UNEXPECTED') {}
export class AtermBadEscape extends defineError('AtermBadEscape', 'E_ATERM_BAD_ESCAPE') {}
export class AtermNonCanonicalString extends defineError('AtermNonCanonicalString', 'E_ATERM_NONCANONICAL_STRING') {}
export class AtermInvalidUtf8 extends defineError('AtermInvalidUtf8', 'E_ATERM_INVALID_UTF8') {}
export class AtermTrailingData extends defineError('AtermTrailingData', 'E_ATERM_TRAILING_DATA') {}
export class AtermBadPath extends defineError('AtermBadPath', 'E_ATERM_BAD_PATH') {}
export class AtermUnsorted extends defineError('AtermUnsorted', 'E_ATERM_UNSORTED') {}
export class AtermDuplicate extends defineError('AtermDuplicate', 'E_ATERM_DUPLICATE') {}
export class AtermBadOutput extends defineError('AtermBadOutput', 'E_ATERM_BAD_OUTPUT') {}
export class AtermFixedPathMismatch extends defineError('AtermFixedPathMismatch', 'E_ATERM_FIXED_PATH_MISMATCH') {}

export type AtermError =
  | AtermTruncated
  | AtermUnexpected
  | AtermBadEscape
  | AtermNonCanonicalString
  | AtermInvalidUtf8
  | AtermTrailingData
  | AtermBadPath
  | AtermUnsorted
  | AtermDuplicate
  | AtermBadOutput
  | AtermFixedPathMismatch;

const ATERM_ERRORS = [
  AtermTruncated,
  AtermUnexpected,
  AtermBadEscape,
  AtermNonCanonicalString,
  AtermInvalidUtf8,
  AtermTrailingData,
  AtermBadPath,
  AtermUnsorted,
  AtermDuplicate,
  AtermBadOutput,
  AtermFixedPathMismatch,
];

export function isAtermError(e: unknown): e is AtermError {
  return ATERM_ERRORS.some((c) => e instanceof c);
}

export interface AtermParseOptions {
  storeDir?: string;
  /** Accept what Nix 2.8 accepts instead of only canonical bytes (see the top of this file). */
  lenient?: boolean;
}

/** Offset of the first byte that does not start a valid UTF-8 sequence. */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let len: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) (len = 2), (min = 0x80);
    else if (c >= 0xe0 && c <= 0xef) (len = 3), (min = 0x800);
    else if (c >= 0xf0 && c <= 0xf4) (len = 4), (min = 0x10000);
    else return i;
    if (i + len > n) return i;
    let cp = c & (0xff >> (len + 1));
    for (let k = 1; k < len; k++) {
      const cc = b[i + k]!;
      if ((cc & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return -1;
}

function describeByte(b: number | undefined): string {
  if (b === undefined) return 'end of input';
  if (b >= 0x20 && b < 0x7f) return `'${String.fromCharCode(b)}'`;
  return `byte 0x${b.toString(16).padStart(2, '0')}`;
}

function toBuffer(input: Uint8Array | string): Buffer {
  if (typeof input === 'string') return Buffer.from(input, 'utf8');
  return Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
}

class Parser {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    readonly drvName: string,
    readonly strict: boolean,
  ) {}

  fields(offset: number, expected: string, got: string): AtermErrorFields {
    return { offset, expected, got, derivation: this.drvName };
  }

  fail(cls: AtermErrorClass, offset: number, expected: string, got: string, detail?: string): never {
    const where = `derivation '${this.drvName}': `;
    const msg = detail ?? `expected ${expected} at byte ${offset}, got ${got}`;
    throw new cls(where + msg, this.fields(offset, expected, got));
  }

  unexpected(expected: string): never {
    const b = this.buf[this.pos];
    if (b === undefined) this.fail(AtermTruncated, this.pos, expected, 'end of input', `truncated at byte ${this.pos}: expected ${expected}`);
    this.fail(AtermUnexpected, this.pos, expected, describeByte(b));
  }

  byte(b: number, expected: string): void {
    if (this.buf[this.pos] !== b) this.unexpected(expected);
    this.pos++;
  }

  /** Consumes "," (more to come, returns false) or "]" (end, returns true). */
  endOfList(what: string): boolean {
    const b = this.buf[this.pos];
    if (b === COMMA) {
      this.pos++;
      return false;
    }
    if (b === RBRACKET) {
      this.pos++;
      return true;
    }
    this.unexpected(`',' or ']' in ${what}`);
  }

  /** "[" then true when the list is empty ("]" consumed too). */
  openList(what: string): boolean {
    this.byte(LBRACKET, `'[' starting ${what}`);
    if (this.buf[this.pos] === RBRACKET) {
      this.pos++;
      return true;
    }
    return false;
  }

  /**
   * Reads a quoted string. `escaped`: a qstr as the printer writes it; else a
   * str written raw. In lenient mode both read as Nix does ("\c" is c).
   */
  /** Reused output buffer for strings with escapes (grows to at most the input size). */
  private scratch: Buffer = Buffer.alloc(0);

  string(what: string, escaped: boolean): string {
    const buf = this.buf;
    if (buf[this.pos] !== QUOTE) this.unexpected(`'"' starting ${what}`);
    const start = this.pos;
    let i = this.pos + 1;
    const n = buf.length;
    const strict = this.strict;
    // Until the first escape the string is a slice of the input; after it,
    // bytes are copied into the scratch buffer and decoded once at the end.
    let o = -1;
    let out = this.scratch;
    for (;;) {
      if (i >= n) this.fail(AtermTruncated, n, `'"' ending ${what} (started at byte ${start})`, 'end of input', `truncated at byte ${n}: ${what} starting at byte ${start} is not closed`);
      const c = buf[i]!;
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        if (strict && !escaped) {
          this.fail(AtermNonCanonicalString, i, `no backslash in ${what}`, "'\\'", `${what} at byte ${start} has a backslash at byte ${i}, which Nix never writes there`);
        }
        if (i + 1 >= n) this.fail(AtermTruncated, n, `an escaped character in ${what}`, 'end of input', `truncated at byte ${n}: escape at byte ${i} in ${what} has no character`);
        const e = buf[i + 1]!;
        let b: number;
        if (e === 0x6e) b = 0x0a;
        else if (e === 0x72) b = 0x0d;
        else if (e === 0x74) b = 0x09;
        else if (e === QUOTE || e === BACKSLASH || !strict) b = e; // Nix: "\c" is c
        else {
          this.fail(AtermBadEscape, i, `one of \\" \\\\ \\n \\r \\t`, `'\\' then ${describeByte(e)}`, `bad escape at byte ${i} in ${what}: '\\' then ${describeByte(e)} (expected one of \\" \\\\ \\n \\r \\t)`);
        }
        if (o < 0) {
          if (out.length < n - start) this.scratch = out = Buffer.allocUnsafe(Math.max(n - start, 256));
          o = buf.copy(out, 0, start + 1, i);
        }
        out[o++] = b;
        i += 2;
        continue;
      }
      if (strict && escaped && (c === 0x0a || c === 0x0d || c === 0x09)) {
        this.fail(AtermNonCanonicalString, i, `an escape instead of raw ${describeByte(c)} in ${what}`, describeByte(c), `${what} at byte ${start} has a raw ${describeByte(c)} at byte ${i} (the printer writes an escape)`);
      }
      if (o >= 0) out[o++] = c;
      i++;
    }
    this.pos = i + 1;
    return o < 0 ? buf.toString('utf8', start + 1, i) : out.toString('utf8', 0, o);
  }

  storePath(storeDir: string, what: string, drvOnly: boolean): string {
    const at = this.pos;
    const s = this.string(what, false);
    try {
      parseStorePath(storeDir, s);
    } catch (e) {
      this.fail(AtermBadPath, at, `a store path in '${storeDir}' as ${what}`, JSON.stringify(s), `${what} at byte ${at} is not a valid store path: ${JSON.stringify(s)} (${(e as Error).message})`);
    }
    if (drvOnly && !s.endsWith(DRV_EXTENSION)) {
      this.fail(AtermBadPath, at, `a ${DRV_EXTENSION} path as ${what}`, JSON.stringify(s), `${what} at byte ${at} is not a derivation path: ${JSON.stringify(s)}`);
    }
    return s;
  }

  /** Strict mode: keys must come in strictly ascending byte order. */
  order(prev: string | undefined, key: string, at: number, what: string): void {
    if (!this.strict || prev === undefined) return;
    const c = compareUtf8(prev, key);
    if (c === 0) this.fail(AtermDuplicate, at, `a ${what} after ${JSON.stringify(prev)}`, JSON.stringify(key), `duplicate ${what} ${JSON.stringify(key)} at byte ${at}`);
    if (c > 0) this.fail(AtermUnsorted, at, `a ${what} greater than ${JSON.stringify(prev)}`, JSON.stringify(key), `${what} ${JSON.stringify(key)} at byte ${at} is out of order (after ${JSON.stringify(prev)})`);
  }

  stringSet(storeDir: string | null, what: string): Set<string> {
    const res = new Set<string>();
    if (this.openList(`the ${what} list`)) return res;
    let prev: string | undefined;
    do {
      const at = this.pos;
      const s = storeDir === null ? this.string(what, false) : this.storePath(storeDir, what, false);
      this.order(prev, s, at, what);
      prev = s;
      res.add(s);
    } while (!this.endOfList(`the ${what} list`));
    return res;
  }
}

function outputFromColumns(
  p: Parser,
  storeDir: string,
  outName: string,
  path: string,
  algoS: string,
  hashS: string,
  at: { path: number; algo: number; hash: number },
): DerivationOutput {
  function bad(offset: number, expected: string, got: string, detail: string): never {
    return p.fail(AtermBadOutput, offset, expected, got, `output '${outName}': ${detail}`);
  }
  const checkPath = (): void => {
    try {
      parseStorePath(storeDir, path);
    } catch (e) {
      p.fail(AtermBadPath, at.path, 'a store path', JSON.stringify(path), `path of output '${outName}' at byte ${at.path} is not a valid store path: ${JSON.stringify(path)} (${(e as Error).message})`);
    }
  };
  if (algoS === '') {
    if (hashS !== '') bad(at.hash, 'an empty hash (no hashAlgo)', JSON.stringify(hashS), `has a hash ${JSON.stringify(hashS)} but no hashAlgo (byte ${at.hash})`);
    if (path === '') return { kind: 'deferred' };
    checkPath();
    return { kind: 'inputAddressed', path };
  }
  const ma = parseMethodAlgo(algoS);
  if (!ma) bad(at.algo, "a hashAlgo like 'sha256' or 'r:sha256'", JSON.stringify(algoS), `unknown hashAlgo ${JSON.stringify(algoS)} at byte ${at.algo}`);
  if (hashS === IMPURE_HASH) {
    if (path !== '') bad(at.path, 'an empty path (impure output)', JSON.stringify(path), `impure output has a path ${JSON.stringify(path)} (byte ${at.path})`);
    return { kind: 'impure', method: ma.method, hashAlgo: ma.algo };
  }
  if (hashS === '') {
    if (path !== '') bad(at.path, 'an empty path (floating output)', JSON.stringify(path), `floating content-addressed output has a path ${JSON.stringify(path)} (byte ${at.path})`);
    return { kind: 'caFloating', method: ma.method, hashAlgo: ma.algo };
  }
  let hash: Hash;
  if (p.strict) {
    // The printer writes lowercase base16 of exactly the digest size.
    if (hashS.length !== HASH_SIZE[ma.algo] * 2 || !/^[0-9a-f]*$/.test(hashS)) {
      bad(at.hash, `a lowercase base-16 ${ma.algo} hash`, JSON.stringify(hashS), `hash ${JSON.stringify(hashS)} at byte ${at.hash} is not a lowercase base-16 ${ma.algo} digest`);
    }
    hash = { algo: ma.algo, digest: Buffer.from(hashS, 'hex') };
  } else {
    try {
      if (hashS.includes(':') || hashS.includes('-')) throw new Error('prefixed or SRI hash');
      hash = parseHash(hashS, ma.algo);
    } catch (e) {
      bad(at.hash, `a ${ma.algo} hash`, JSON.stringify(hashS), `bad hash ${JSON.stringify(hashS)} at byte ${at.hash}: ${(e as Error).message}`);
    }
  }
  const out: DerivationOutput = { kind: 'caFixed', method: ma.method, hash };
  checkPath();
  // Nix recomputes this path whenever it prints the derivation, so it must be computable in both modes.
  let expected: string;
  try {
    expected = fixedOutputPath(storeDir, p.drvName, outName, out);
  } catch (e) {
    bad(at.path, 'an output name that gives a valid store path', JSON.stringify(outName), `cannot compute the fixed output path: ${(e as Error).message}`);
  }
  if (p.strict) {
    if (expected !== path) {
      p.fail(AtermFixedPathMismatch, at.path, JSON.stringify(expected), JSON.stringify(path), `fixed output '${outName}' has path ${JSON.stringify(path)} at byte ${at.path}, but its hash gives ${JSON.stringify(expected)}`);
    }
  }
  return out;
}

/**
 * Parses the bytes of a .drv file. `name` is the derivation name (the .drv
 * path's name without `.drv`); it is needed to check fixed-output paths.
 */
export function parseDerivation(input: Uint8Array | string, name: string, opts: AtermParseOptions = {}): Derivation {
  const storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
  const buf = toBuffer(input);
  const p = new Parser(buf, name, !opts.lenient);
  if (!isUtf8(buf)) {
    const at = firstInvalidUtf8(buf);
    p.fail(AtermInvalidUtf8, at, 'valid UTF-8', describeByte(buf[at]), `invalid UTF-8 at byte ${at} (${describeByte(buf[at])})`);
  }

  for (let k = 0; k < PREFIX_BYTES.length; k++) {
    if (buf[k] !== PREFIX_BYTES[k]) {
      p.pos = k;
      p.unexpected(`'${ATERM_PREFIX}'`);
    }
  }
  p.pos = PREFIX_BYTES.length;

  const drv: Derivation = {
    name,
    outputs: new Map(),
    inputDrvs: new Map(),
    inputSrcs: new Set(),
    platform: '',
    builder: '',
    args: [],
    env: new Map(),
  };

  if (!p.openList('the outputs list')) {
    let prev: string | undefined;
    do {
      p.byte(LPAREN, "'(' starting an output");
      const atName = p.pos;
      const outName = p.string('output name', false);
      p.order(prev, outName, atName, 'output name');
      prev = outName;
      p.byte(COMMA, "',' after the output name");
      const atPath = p.pos;
      const path = p.string(`path of output '${outName}'`, false);
      p.byte(COMMA, "',' after the output path");
      const atAlgo = p.pos;
      const algo = p.string(`hashAlgo of output '${outName}'`, false);
      p.byte(COMMA, "',' after the output hashAlgo");
      const atHash = p.pos;
      const hash = p.string(`hash of output '${outName}'`, false);
      p.byte(RPAREN, "')' ending an output");
      const out = outputFromColumns(p, storeDir, outName, path, algo, hash, { path: atPath, algo: atAlgo, hash: atHash });
      if (!drv.outputs.has(outName)) drv.outputs.set(outName, out); // Nix: emplace, first wins
    } while (!p.endOfList('the outputs list'));
  }

  p.byte(COMMA, "',' after the outputs list");
  if (!p.openList('the input derivations list')) {
    let prev: string | undefined;
    do {
      p.byte(LPAREN, "'(' starting an input derivation");
      const at = p.pos;
      const drvPath = p.storePath(storeDir, 'input derivation', true);
      p.order(prev, drvPath, at, 'input derivation');
      prev = drvPath;
      p.byte(COMMA, "',' after the input derivation path");
      const outs = p.stringSet(null, `output name of input '${drvPath}'`);
      p.byte(RPAREN, "')' ending an input derivation");
      drv.inputDrvs.set(drvPath, outs); // Nix: insert_or_assign, last wins
    } while (!p.endOfList('the input derivations list'));
  }

  p.byte(COMMA, "',' after the input derivations list");
  drv.inputSrcs = p.stringSet(storeDir, 'input source');
  p.byte(COMMA, "',' after the input sources");
  drv.platform = p.string('system', false);
  p.byte(COMMA, "',' after the system");
  drv.builder = p.string('builder', true);
  p.byte(COMMA, "',' after the builder");

  if (!p.openList('the arguments list')) {
    do drv.args.push(p.string('an argument', true));
    while (!p.endOfList('the arguments list'));
  }

  p.byte(COMMA, "',' after the arguments");
  if (!p.openList('the environment')) {
    let prev: string | undefined;
    do {
      p.byte(LPAREN, "'(' starting an environment pair");
      const at = p.pos;
      const key = p.string('environment variable name', true);
      p.order(prev, key, at, 'environment variable');
      prev = key;
      p.byte(COMMA, "',' after an environment variable name");
      const value = p.string(`value of environment variable '${key}'`, true);
      p.byte(RPAREN, "')' ending an environment pair");
      drv.env.set(key, value); // Nix: env[name] = value, last wins
    } while (!p.endOfList('the environment'));
  }

  p.byte(RPAREN, `'${ATERM_SUFFIX}' ending the derivation`);
  if (p.strict && p.pos !== buf.length) {
    p.fail(AtermTrailingData, p.pos, 'end of input', describeByte(buf[p.pos]), `${buf.length - p.pos} bytes of trailing data after the derivation at byte ${p.pos}`);
  }
  return drv;
}

/** Parses the .drv file stored at `drvPath`; the derivation name comes from the path. */
export function parseDerivationFile(input: Uint8Array | string, drvPath: string, opts: AtermParseOptions = {}): Derivation {
  return parseDerivation(input, derivationNameFromPath(opts.storeDir ?? DEFAULT_STORE_DIR, drvPath), opts);
}

const ESCAPE_TEST = /["\\\n\r\t]/;
const ESCAPE_ALL = /["\\\n\r\t]/g;
const ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** A qstr: the five escapes, everything else as is. */
export function quoteAterm(s: string): string {
  return '"' + (ESCAPE_TEST.test(s) ? s.replace(ESCAPE_ALL, (c) => ESCAPES[c]!) : s) + '"';
}

function raw(s: string): string {
  return '"' + s + '"';
}

function rawList(items: Iterable<string>): string {
  let s = '[';
  let first = true;
  for (const i of items) {
    if (first) first = false;
    else s += ',';
    s += raw(i);
  }
  return s + ']';
}

export interface AtermPrintOptions {
  storeDir?: string;
  /** Empty output paths and the env values of output names (for hashing a derivation whose paths are unknown). */
  maskOutputs?: boolean;
  /**
   * Printed instead of inputDrvs (keys need not be store paths): hash modulo
   * replaces each input derivation by its own modulo hash here.
   */
  inputDrvsOverride?: Map<string, Set<string>>;
}

/**
 * The ATerm text of a derivation, exactly as Nix's Derivation::unparse.
 * Throws UnrepresentableString for a string that has no faithful encoding.
 */
export function printDerivation(drv: Derivation, opts: AtermPrintOptions = {}): string {
  const storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
  const mask = opts.maskOutputs ?? false;
  checkStrings(drv);
  const parts: string[] = [ATERM_PREFIX, '['];
  let first = true;
  for (const name of sortedUtf8(drv.outputs.keys())) {
    const out = drv.outputs.get(name)!;
    if (first) first = false;
    else parts.push(',');
    let path = '';
    let algo = '';
    let hash = '';
    switch (out.kind) {
      case 'inputAddressed':
        path = mask ? '' : out.path;
        break;
      case 'caFixed':
        path = mask ? '' : fixedOutputPath(storeDir, drv.name, name, out);
        algo = printMethodAlgo(out.method, out.hash.algo);
        hash = base16Encode(out.hash.digest);
        break;
      case 'caFloating':
        algo = printMethodAlgo(out.method, out.hashAlgo);
        break;
      case 'deferred':
        break;
      case 'impure':
        algo = printMethodAlgo(out.method, out.hashAlgo);
        hash = IMPURE_HASH;
        break;
    }
    parts.push('(', raw(name), ',', raw(path), ',', raw(algo), ',', raw(hash), ')');
  }
  parts.push('],[');
  const inputs = opts.inputDrvsOverride ?? drv.inputDrvs;
  first = true;
  for (const p of sortedUtf8(inputs.keys())) {
    if (first) first = false;
    else parts.push(',');
    parts.push('(', raw(p), ',', rawList(sortedUtf8(inputs.get(p)!)), ')');
  }
  parts.push('],', rawList(sortedUtf8(drv.inputSrcs)));
  parts.push(',', raw(drv.platform), ',', quoteAterm(drv.builder), ',[');
  first = true;
  for (const a of drv.args) {
    if (first) first = false;
    else parts.push(',');
    parts.push(quoteAterm(a));
  }
  parts.push('],[');
  first = true;
  for (const k of sortedUtf8(drv.env.keys())) {
    if (first) first = false;
    else parts.push(',');
    const v = mask && drv.outputs.has(k) ? '' : drv.env.get(k)!;
    parts.push('(', quoteAterm(k), ',', quoteAterm(v), ')');
  }
  parts.push('])');
  return parts.join('');
}

/** printDerivation as the UTF-8 bytes of a .drv file. */
export function printDerivationBytes(drv: Derivation, opts: AtermPrintOptions = {}): Buffer {
  return Buffer.from(printDerivation(drv, opts), 'utf8');
}
