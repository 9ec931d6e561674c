// The JSON forms of a derivation.
//
// 1. What `nix show-derivation` (Nix 2.8) prints, keyed by .drv path:
//      { "<drvPath>": {
//          "outputs":   { "<name>": { "path"?, "hashAlgo"?, "hash"?, "impure"? } },
//          "inputSrcs": [ "<path>", ... ],
//          "inputDrvs": { "<drvPath>": [ "<output>", ... ] },
//          "system": "...", "builder": "...", "args": [ ... ],
//          "env":       { "<name>": "<value>" } } }
//    Output objects by kind: inputAddressed {path}; caFixed {path, hashAlgo,
//    hash (base16)}; caFloating {hashAlgo}; deferred {}; impure {hashAlgo,
//    impure: true}. Keys and lists come in byte order; Nix indents by two
//    spaces, writes `"key": value`, `{}`/`[]` when empty, and a final newline.
//    Strings escape `"` `\` \n \r \t and other bytes below 0x20 as \u00XX.
//
// 2. The input drvbox accepts (`derivation add FILE.json`, `build FILE.json`):
//    the keyed form above or its bare inner object, where
//      - the name is a top-level "name", else the key's .drv name, else env.name;
//      - outputs may omit "path"; "outputs" may be a list of names, or be
//        absent (then env.outputs, split on spaces, else ["out"]);
//      - "hash" may be base16, nix32, base64 or SRI;
//      - when no output states hashAlgo, the kind comes from the attributes
//        as nix-instantiate reads them: outputHash/outputHashAlgo/
//        outputHashMode (fixed), __contentAddressed = "1" (floating),
//        __impure = "1" (impure), from env or from env.__json. Like
//        nix-instantiate, env.__contentAddressed and env.__impure are
//        consumed (removed): Nix never writes them into a derivation.
//    The result is a DerivationDraft for completeDerivation (hash-modulo.ts).
import { defineError } from '../errors.js';
import { base16Encode, HASH_SIZE, parseHash, parseHashAlgo, type Hash, type HashAlgo } from './hash.js';
import {
  derivationNameFromPath,
  fixedOutputPath,
  parseMethodAlgo,
  printMethodAlgo,
  sortedUtf8,
  type ContentMethod,
  type Derivation,
  type DerivationDraft,
  type DerivationOutput,
  type DraftOutput,
} from './derivation.js';
import { DEFAULT_STORE_DIR, DRV_EXTENSION, parseStorePath } from './store-path.js';

export class BadDerivationJson extends defineError('BadDerivationJson', 'E_DRV_BAD_JSON') {}

/** One output as `nix show-derivation` prints it. */
export interface DerivationOutputJson {
  path?: string;
  hashAlgo?: string;
  hash?: string;
  impure?: true;
}

/** The inner object `nix show-derivation` prints for one derivation. */
export interface DerivationJson {
  outputs: Record<string, DerivationOutputJson>;
  inputSrcs: string[];
  inputDrvs: Record<string, string[]>;
  system: string;
  builder: string;
  args: string[];
  env: Record<string, string>;
}

/** Sets an own enumerable property, even for keys like "__proto__". */
function put<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function outputJson(storeDir: string, drvName: string, name: string, out: DerivationOutput): DerivationOutputJson {
  switch (out.kind) {
    case 'inputAddressed':
      return { path: out.path };
    case 'caFixed':
      return {
        path: fixedOutputPath(storeDir, drvName, name, out),
        hashAlgo: printMethodAlgo(out.method, out.hash.algo),
        hash: base16Encode(out.hash.digest),
      };
    case 'caFloating':
      return { hashAlgo: printMethodAlgo(out.method, out.hashAlgo) };
    case 'deferred':
      return {};
    case 'impure':
      return { hashAlgo: printMethodAlgo(out.method, out.hashAlgo), impure: true };
  }
}

/** The inner JSON object of one derivation (deep-equal to JSON.parse of Nix's output). */
export function derivationToJson(drv: Derivation, storeDir: string = DEFAULT_STORE_DIR): DerivationJson {
  const outputs: Record<string, DerivationOutputJson> = {};
  for (const o of sortedUtf8(drv.outputs.keys())) put(outputs, o, outputJson(storeDir, drv.name, o, drv.outputs.get(o)!));
  const inputDrvs: Record<string, string[]> = {};
  for (const p of sortedUtf8(drv.inputDrvs.keys())) put(inputDrvs, p, sortedUtf8(drv.inputDrvs.get(p)!));
  const env: Record<string, string> = {};
  for (const k of sortedUtf8(drv.env.keys())) put(env, k, drv.env.get(k)!);
  return {
    outputs,
    inputSrcs: sortedUtf8(drv.inputSrcs),
    inputDrvs,
    system: drv.platform,
    builder: drv.builder,
    args: [...drv.args],
    env,
  };
}

/** `{ "<drvPath>": {...}, ... }` as an object (keys in the order given). */
export function derivationsToJson(
  drvs: Iterable<readonly [string, Derivation]>,
  storeDir: string = DEFAULT_STORE_DIR,
): Record<string, DerivationJson> {
  const res: Record<string, DerivationJson> = {};
  for (const [p, d] of drvs) put(res, p, derivationToJson(d, storeDir));
  return res;
}

// ---------------------------------------------------------------------------
// Printing byte for byte like Nix 2.8's JSONWriter (indent on).

const HEX = '0123456789abcdef';

/** A JSON string as Nix's toJSON writes it (not JSON.stringify: \b \f and U+2028 differ). */
export function nixJsonString(s: string): string {
  if (!/["\\\u0000-\u001f]/.test(s)) return '"' + s + '"';
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c < 0x20) out += '\\u00' + HEX[c >> 4] + HEX[c & 15];
    else out += s[i];
  }
  return out + '"';
}

class NixJsonWriter {
  parts: string[] = [];
  depth = 0;
  private first: boolean[] = [];

  private nl(): void {
    this.parts.push('\n' + '  '.repeat(this.depth));
  }
  private comma(): void {
    const top = this.first.length - 1;
    if (this.first[top]) this.first[top] = false;
    else this.parts.push(',');
    this.nl();
  }
  open(c: '{' | '['): void {
    this.depth++;
    this.parts.push(c);
    this.first.push(true);
  }
  close(c: '}' | ']'): void {
    this.depth--;
    if (!this.first.pop()) this.nl();
    this.parts.push(c);
  }
  key(k: string): void {
    this.comma();
    this.parts.push(nixJsonString(k), ': ');
  }
  elem(): void {
    this.comma();
  }
  str(s: string): void {
    this.parts.push(nixJsonString(s));
  }
  attr(k: string, v: string | true): void {
    this.key(k);
    this.parts.push(v === true ? 'true' : nixJsonString(v));
  }
  list(k: string, items: Iterable<string>): void {
    this.key(k);
    this.open('[');
    for (const i of items) {
      this.elem();
      this.str(i);
    }
    this.close(']');
  }
}

/**
 * The exact text `nix show-derivation` prints for these derivations (in the
 * order given; Nix gives them in path order), including the final newline.
 */
export function printDerivationsJson(
  drvs: Iterable<readonly [string, Derivation]>,
  storeDir: string = DEFAULT_STORE_DIR,
): string {
  const w = new NixJsonWriter();
  w.open('{');
  for (const [drvPath, drv] of drvs) {
    w.key(drvPath);
    w.open('{');
    w.key('outputs');
    w.open('{');
    for (const o of sortedUtf8(drv.outputs.keys())) {
      w.key(o);
      w.open('{');
      const j = outputJson(storeDir, drv.name, o, drv.outputs.get(o)!);
      if (j.path !== undefined) w.attr('path', j.path);
      if (j.hashAlgo !== undefined) w.attr('hashAlgo', j.hashAlgo);
      if (j.hash !== undefined) w.attr('hash', j.hash);
      if (j.impure) w.attr('impure', true);
      w.close('}');
    }
    w.close('}');
    w.list('inputSrcs', sortedUtf8(drv.inputSrcs));
    w.key('inputDrvs');
    w.open('{');
    for (const p of sortedUtf8(drv.inputDrvs.keys())) w.list(p, sortedUtf8(drv.inputDrvs.get(p)!));
    w.close('}');
    w.attr('system', drv.platform);
    w.attr('builder', drv.builder);
    w.list('args', drv.args);
    w.key('env');
    w.open('{');
    for (const k of sortedUtf8(drv.env.keys())) w.attr(k, drv.env.get(k)!);
    w.close('}');
    w.close('}');
  }
  w.close('}');
  return w.parts.join('') + '\n';
}

// ---------------------------------------------------------------------------
// Reading.



function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class Reader {
  constructor(readonly drvName: string) {}

  fail(field: string, message: string, value: unknown): never {
    let shown: string;
    try {
      shown = JSON.stringify(value) ?? String(value);
    } catch {
      shown = String(value);
    }
    if (shown.length > 200) shown = shown.slice(0, 200) + '…';
    throw new BadDerivationJson(`derivation '${this.drvName}': ${field} ${message}: ${shown}`, {
      derivation: this.drvName,
      field,
      value: shown,
    });
  }
  string(field: string, v: unknown): string {
    if (typeof v !== 'string') this.fail(field, 'must be a string', v);
    return v;
  }
  strings(field: string, v: unknown): string[] {
    if (!Array.isArray(v)) this.fail(field, 'must be a list of strings', v);
    return v.map((x, i) => this.string(`${field}[${i}]`, x));
  }
  object(field: string, v: unknown): Record<string, unknown> {
    if (!isObject(v)) this.fail(field, 'must be an object', v);
    return v;
  }
  storePath(storeDir: string, field: string, v: unknown): string {
    const s = this.string(field, v);
    try {
      parseStorePath(storeDir, s);
    } catch (e) {
      this.fail(field, `is not a store path (${(e as Error).message})`, s);
    }
    return s;
  }
  stringMap(field: string, v: unknown): Map<string, string> {
    const o = this.object(field, v);
    const m = new Map<string, string>();
    for (const k of Object.keys(o)) m.set(k, this.string(`${field}.${k}`, o[k]));
    return m;
  }
  inputDrvs(storeDir: string, v: unknown): Map<string, Set<string>> {
    const o = this.object('inputDrvs', v);
    const m = new Map<string, Set<string>>();
    for (const k of Object.keys(o)) {
      this.storePath(storeDir, 'inputDrvs key', k);
      if (!k.endsWith(DRV_EXTENSION)) this.fail('inputDrvs key', 'is not a .drv path', k);
      let outs = o[k];
      // Later Nix writes { "outputs": [...], "dynamicOutputs": {} }.
      if (isObject(outs) && Array.isArray(outs.outputs)) outs = outs.outputs;
      m.set(k, new Set(this.strings(`inputDrvs.${k}`, outs)));
    }
    return m;
  }
  methodAlgo(field: string, v: unknown): { method: ContentMethod; algo: HashAlgo } {
    const s = this.string(field, v);
    const ma = parseMethodAlgo(s);
    if (!ma) this.fail(field, "is not a hash algorithm like 'sha256' or 'r:sha256'", s);
    return ma;
  }
  hash(field: string, v: unknown, algo: HashAlgo, canonical: boolean): Hash {
    const s = this.string(field, v);
    if (canonical) {
      if (s.length !== HASH_SIZE[algo] * 2 || !/^[0-9a-f]*$/.test(s)) this.fail(field, `is not a lowercase base-16 ${algo} hash`, s);
      return { algo, digest: Buffer.from(s, 'hex') };
    }
    try {
      return parseHash(s, algo);
    } catch (e) {
      this.fail(field, `is not a valid ${algo} hash (${(e as Error).message})`, s);
    }
  }
}

const OUTPUT_KEYS = new Set(['path', 'hashAlgo', 'hash', 'impure']);

export interface DerivationFromJsonOptions {
  storeDir?: string;
}

/**
 * One derivation from the inner object `nix show-derivation` prints. The
 * name comes from the .drv path (or `name`); stated fixed-output paths must
 * match the hash. Strict: every field present, hashes base16.
 */
export function derivationFromJson(json: unknown, drvPathOrName: string, opts: DerivationFromJsonOptions = {}): Derivation {
  const storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
  const name = drvPathOrName.startsWith('/') ? derivationNameFromPath(storeDir, drvPathOrName) : drvPathOrName;
  const r = new Reader(name);
  const o = r.object('the derivation', json);
  for (const k of ['outputs', 'inputSrcs', 'inputDrvs', 'system', 'builder', 'args', 'env']) {
    if (!(k in o)) r.fail(k, 'is missing', null);
  }
  const outputsJ = r.object('outputs', o.outputs);
  const outputs = new Map<string, DerivationOutput>();
  for (const on of Object.keys(outputsJ)) {
    const f = `outputs.${on}`;
    const oj = r.object(f, outputsJ[on]);
    for (const k of Object.keys(oj)) if (!OUTPUT_KEYS.has(k)) r.fail(`${f}.${k}`, 'is not a known output field', oj[k]);
    if (oj.impure !== undefined && oj.impure !== true) r.fail(`${f}.impure`, 'must be true when present', oj.impure);
    let out: DerivationOutput;
    if (oj.hashAlgo === undefined) {
      if (oj.hash !== undefined || oj.impure !== undefined) r.fail(f, 'has a hash or impure flag but no hashAlgo', oj);
      out = oj.path === undefined ? { kind: 'deferred' } : { kind: 'inputAddressed', path: r.storePath(storeDir, `${f}.path`, oj.path) };
    } else {
      const ma = r.methodAlgo(`${f}.hashAlgo`, oj.hashAlgo);
      if (oj.impure === true) {
        if (oj.path !== undefined || oj.hash !== undefined) r.fail(f, 'is impure but has a path or hash', oj);
        out = { kind: 'impure', method: ma.method, hashAlgo: ma.algo };
      } else if (oj.hash === undefined) {
        if (oj.path !== undefined) r.fail(`${f}.path`, 'must be absent for a floating content-addressed output', oj.path);
        out = { kind: 'caFloating', method: ma.method, hashAlgo: ma.algo };
      } else {
        out = { kind: 'caFixed', method: ma.method, hash: r.hash(`${f}.hash`, oj.hash, ma.algo, true) };
        const want = fixedOutputPath(storeDir, name, on, out);
        const got = r.storePath(storeDir, `${f}.path`, oj.path);
        if (got !== want) r.fail(`${f}.path`, `does not match its hash (expected '${want}')`, got);
      }
    }
    outputs.set(on, out);
  }
  const inputSrcs = new Set(r.strings('inputSrcs', o.inputSrcs).map((p, i) => r.storePath(storeDir, `inputSrcs[${i}]`, p)));
  return {
    name,
    outputs,
    inputDrvs: r.inputDrvs(storeDir, o.inputDrvs),
    inputSrcs,
    platform: r.string('system', o.system),
    builder: r.string('builder', o.builder),
    args: r.strings('args', o.args),
    env: r.stringMap('env', o.env),
  };
}

function parseJsonText(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BadDerivationJson(`${what} is not valid JSON: ${(e as Error).message}`, { field: 'json' });
  }
}

/** Parses the whole output of `nix show-derivation` (text or parsed) into .drv path -> derivation. */
export function parseDerivationsJson(input: string | unknown, opts: DerivationFromJsonOptions = {}): Map<string, Derivation> {
  const json = typeof input === 'string' ? parseJsonText(input, 'the derivation JSON') : input;
  const res = new Map<string, Derivation>();
  if (!isObject(json)) {
    throw new BadDerivationJson('the derivation JSON must be an object keyed by .drv path', { field: 'json' });
  }
  for (const k of Object.keys(json)) res.set(k, derivationFromJson(json[k], k, opts));
  return res;
}

// ---------------------------------------------------------------------------
// The input form.

export interface DerivationInput {
  draft: DerivationDraft;
  /** The .drv path the keyed form named, if any (the caller may check it against the computed one). */
  claimedPath?: string;
}

function looksKeyed(o: Record<string, unknown>): boolean {
  const keys = Object.keys(o);
  return keys.length > 0 && keys.every((k) => k.startsWith('/') && k.endsWith(DRV_EXTENSION));
}

/** Reads a structured-attrs `__json` env value, if any, for the attributes that pick the output kind. */
function attrsFromJsonEnv(r: Reader, env: Map<string, string>): Record<string, unknown> | null {
  const j = env.get('__json');
  if (j === undefined) return null;
  let v: unknown;
  try {
    v = JSON.parse(j);
  } catch (e) {
    r.fail('env.__json', `is not valid JSON (${(e as Error).message})`, j.slice(0, 100));
  }
  return isObject(v) ? v : r.fail('env.__json', 'must be a JSON object', j.slice(0, 100));
}

/** An attribute as nix-instantiate sees it: env strings ("1" is true), or __json values. */
function attr(env: Map<string, string>, sa: Record<string, unknown> | null, key: string): string | boolean | undefined {
  if (sa) {
    const v = sa[key];
    if (typeof v === 'string' || typeof v === 'boolean') return v;
    return undefined;
  }
  return env.get(key);
}

function truthy(v: string | boolean | undefined): boolean {
  return v === true || v === '1';
}

function draftOutputsFromAttrs(
  r: Reader,
  names: string[],
  env: Map<string, string>,
  sa: Record<string, unknown> | null,
): Map<string, DraftOutput> | null {
  const outputHash = attr(env, sa, 'outputHash');
  const algoS = attr(env, sa, 'outputHashAlgo');
  const modeS = attr(env, sa, 'outputHashMode');
  let method: ContentMethod | undefined;
  if (modeS !== undefined) {
    if (modeS === 'recursive') method = 'recursive';
    else if (modeS === 'flat') method = 'flat';
    else r.fail('outputHashMode', "must be 'flat' or 'recursive'", modeS);
  }
  let algo: HashAlgo | undefined;
  if (typeof algoS === 'string' && algoS !== '') {
    try {
      algo = parseHashAlgo(algoS);
    } catch {
      r.fail('outputHashAlgo', 'is not a hash algorithm', algoS);
    }
  }
  if (typeof outputHash === 'string') {
    if (names.length !== 1 || names[0] !== 'out') r.fail('outputs', 'must be just "out" for a fixed-output derivation', names);
    let hash: Hash;
    try {
      hash = parseHash(outputHash, algo);
    } catch (e) {
      r.fail('outputHash', `is not a valid hash (${(e as Error).message})`, outputHash);
    }
    return new Map([['out', { kind: 'caFixed', method: method ?? 'flat', hash }]]);
  }
  const ca = truthy(attr(env, sa, '__contentAddressed'));
  const impure = truthy(attr(env, sa, '__impure'));
  if (ca && impure) r.fail('__contentAddressed', 'and __impure cannot both be set', true);
  if (!ca && !impure) return null;
  const kind = ca ? 'caFloating' : 'impure';
  return new Map(names.map((n) => [n, { kind, method: method ?? 'recursive', hashAlgo: algo ?? 'sha256' }]));
}

export interface ParseInputOptions {
  storeDir?: string;
}

/**
 * Reads the JSON drvbox accepts for a new derivation (see the top of this
 * file) into drafts, one per derivation (the keyed form may hold several).
 */
export function parseDerivationInputs(input: string | unknown, opts: ParseInputOptions = {}): DerivationInput[] {
  const storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
  const json = typeof input === 'string' ? parseJsonText(input, 'the derivation input') : input;
  if (!isObject(json)) throw new BadDerivationJson('the derivation input must be a JSON object', { field: 'json' });
  if (looksKeyed(json)) {
    return Object.keys(json).map((k) => {
      let nameFromKey: string;
      try {
        nameFromKey = derivationNameFromPath(storeDir, k);
      } catch (e) {
        throw new BadDerivationJson(`'${k}' is not a derivation path: ${(e as Error).message}`, { field: 'key', value: k });
      }
      return { draft: draftFromObject(json[k], nameFromKey, storeDir), claimedPath: k };
    });
  }
  return [{ draft: draftFromObject(json, undefined, storeDir) }];
}

/** parseDerivationInputs for exactly one derivation. */
export function parseDerivationInput(input: string | unknown, opts: ParseInputOptions = {}): DerivationInput {
  const all = parseDerivationInputs(input, opts);
  if (all.length !== 1) {
    throw new BadDerivationJson(`expected one derivation, got ${all.length}`, { field: 'json', count: all.length });
  }
  return all[0]!;
}

function draftFromObject(v: unknown, nameFromKey: string | undefined, storeDir: string): DerivationDraft {
  const pre = new Reader(nameFromKey ?? '<unnamed>');
  const o = pre.object('the derivation', v);
  const env = o.env === undefined ? new Map<string, string>() : pre.stringMap('env', o.env);
  const name =
    o.name !== undefined
      ? pre.string('name', o.name)
      : (nameFromKey ?? env.get('name') ?? pre.fail('name', 'is missing (give "name", a keyed .drv path, or env.name)', null));
  const r = new Reader(name);
  const known = new Set(['name', 'outputs', 'inputSrcs', 'inputDrvs', 'system', 'builder', 'args', 'env']);
  for (const k of Object.keys(o)) if (!known.has(k)) r.fail(k, 'is not a known derivation field', o[k]);

  const sa = attrsFromJsonEnv(r, env);
  // Output names and explicit specs.
  let names: string[];
  const explicit = new Map<string, Record<string, unknown>>();
  if (o.outputs === undefined) {
    const fromAttr = sa ? sa.outputs : env.get('outputs');
    if (Array.isArray(fromAttr)) names = fromAttr.map((x, i) => r.string(`outputs[${i}]`, x));
    else if (typeof fromAttr === 'string') names = fromAttr.split(/[ \t\n\r]+/).filter(Boolean);
    else names = ['out'];
  } else if (Array.isArray(o.outputs)) {
    names = o.outputs.map((x, i) => r.string(`outputs[${i}]`, x));
  } else {
    const oj = r.object('outputs', o.outputs);
    names = Object.keys(oj);
    for (const n of names) explicit.set(n, r.object(`outputs.${n}`, oj[n]));
  }
  if (names.length === 0) r.fail('outputs', 'must name at least one output', names);
  if (new Set(names).size !== names.length) r.fail('outputs', 'has a duplicate name', names);

  const anyHashAlgo = [...explicit.values()].some((x) => x.hashAlgo !== undefined || x.hash !== undefined || x.impure !== undefined);
  let outputs: Map<string, DraftOutput> | null = null;
  if (!anyHashAlgo) outputs = draftOutputsFromAttrs(r, names, env, sa);
  // nix-instantiate consumes these two; they never reach the environment.
  env.delete('__contentAddressed');
  env.delete('__impure');
  if (!outputs) {
    outputs = new Map();
    for (const n of names) {
      const f = `outputs.${n}`;
      const oj = explicit.get(n) ?? {};
      for (const k of Object.keys(oj)) if (!OUTPUT_KEYS.has(k)) r.fail(`${f}.${k}`, 'is not a known output field', oj[k]);
      const path = oj.path === undefined || oj.path === '' ? undefined : r.storePath(storeDir, `${f}.path`, oj.path);
      if (oj.hashAlgo === undefined) {
        if (oj.hash !== undefined || oj.impure !== undefined) r.fail(f, 'has a hash or impure flag but no hashAlgo', oj);
        outputs.set(n, path === undefined ? { kind: 'inputAddressed' } : { kind: 'inputAddressed', path });
        continue;
      }
      const ma = r.methodAlgo(`${f}.hashAlgo`, oj.hashAlgo);
      if (oj.impure !== undefined) {
        if (oj.impure !== true) r.fail(`${f}.impure`, 'must be true when present', oj.impure);
        if (path !== undefined || oj.hash !== undefined) r.fail(f, 'is impure but has a path or hash', oj);
        outputs.set(n, { kind: 'impure', method: ma.method, hashAlgo: ma.algo });
      } else if (oj.hash === undefined || oj.hash === '') {
        if (path !== undefined) r.fail(`${f}.path`, 'must be absent for a floating content-addressed output', path);
        outputs.set(n, { kind: 'caFloating', method: ma.method, hashAlgo: ma.algo });
      } else {
        const hash = r.hash(`${f}.hash`, oj.hash, ma.algo, false);
        outputs.set(n, path === undefined ? { kind: 'caFixed', method: ma.method, hash } : { kind: 'caFixed', method: ma.method, hash, path });
      }
    }
  }

  const inputSrcs = new Set(
    o.inputSrcs === undefined ? [] : r.strings('inputSrcs', o.inputSrcs).map((p, i) => r.storePath(storeDir, `inputSrcs[${i}]`, p)),
  );
  const platform = r.string('system', o.system);
  const builder = r.string('builder', o.builder);
  return {
    name,
    outputs,
    inputDrvs: o.inputDrvs === undefined ? new Map() : r.inputDrvs(storeDir, o.inputDrvs),
    inputSrcs,
    platform,
    builder,
    args: o.args === undefined ? [] : r.strings('args', o.args),
    env,
  };
}

/** A complete derivation as a draft (e.g. to recompute its paths from scratch). */
export function draftFromDerivation(drv: Derivation, opts: { dropPaths?: boolean } = {}): DerivationDraft {
  const outputs = new Map<string, DraftOutput>();
  for (const [n, o] of drv.outputs) {
    if (opts.dropPaths && o.kind === 'inputAddressed') outputs.set(n, { kind: 'inputAddressed' });
    else outputs.set(n, o);
  }
  const env = new Map(drv.env);
  if (opts.dropPaths) for (const n of drv.outputs.keys()) env.delete(n);
  return { ...drv, outputs, env, inputDrvs: new Map(drv.inputDrvs), inputSrcs: new Set(drv.inputSrcs), args: [...drv.args] };
}


