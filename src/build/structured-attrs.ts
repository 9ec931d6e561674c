// Structured attributes (`__structuredAttrs = true`, the `__json` env var):
// parsing, the `.attrs.json` and `.attrs.sh` files, and typed access to
// derivation attributes in both the structured and the legacy form.
//
// Nix parses `__json` with nlohmann::json and writes `.attrs.json` with its
// dump(); the bytes must be the same, so this module follows nlohmann, not
// JSON.parse/JSON.stringify:
//   - integers keep full 64-bit precision (held as bigint here); a number
//     with a fraction or an exponent, or an integer outside the int64/uint64
//     range, is a double (held as a JS number);
//   - objects print with keys in byte order, duplicate keys keep the last
//     value, no whitespace;
//   - strings escape only `"`, `\`, the control characters below 0x20
//     (\b \f \n \r \t, others \u00xx in lower-case hex); DEL and non-ASCII
//     pass through;
//   - doubles print in the shortest form that reads back, as a fixed-point
//     number with ".0" when it is integral and its decimal point lies within
//     15 digits, as "0.000ddd" down to 1e-4, otherwise as d.ddde+XX with at
//     least two exponent digits ("1e+20", "3e-07").
//
// `.attrs.sh` follows Nix's writeStructuredAttrsShell: one `declare` per
// top-level key that is a shell identifier and whose value is a string,
// integral number, null, Boolean, or an array/object of only those. Numbers
// are converted as Nix's C++ does on x86-64: to float to test for an integral
// value (so 1.5 is left out, 1.00000001 is not), then to a 32-bit int (so
// 2^32+1 prints 1 and an out-of-range double prints -2147483648).
import { defineError } from '../errors.js';
import { compareUtf8, type Derivation } from '../format/derivation.js';
import { hashPlaceholder } from '../format/store-path.js';
import { BadDerivationAttr, BadStructuredAttrs } from './errors-register.js';

export type JsonValue = null | boolean | bigint | number | string | JsonValue[] | JsonObject;
/** A JSON object; created without a prototype, so any key (even `__proto__`) is plain data. */
export interface JsonObject {
  [key: string]: JsonValue;
}

export class JsonSyntaxError extends defineError('JsonSyntaxError', 'E_JSON_SYNTAX') {}

const INT64_MIN = -(1n << 63n);
const UINT64_MAX = (1n << 64n) - 1n;

export function jsonObject(entries: Iterable<[string, JsonValue]> = []): JsonObject {
  const o = Object.create(null) as JsonObject;
  for (const [k, v] of entries) o[k] = v;
  return o;
}

export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The type name nlohmann uses in its messages. */
export function jsonTypeName(v: JsonValue): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'bigint' || typeof v === 'number') return 'number';
  if (typeof v === 'string') return 'string';
  return Array.isArray(v) ? 'array' : 'object';
}

// ---- parsing -------------------------------------------------------------------

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

/** Parses JSON text as nlohmann::json::parse does (see the top of the file). */
export function parseJson(text: string): JsonValue {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; // nlohmann skips a byte-order mark
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`syntax error at offset ${i}: ${what}`, { offset: i });
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else return;
    }
  };
  const hex4 = (): number => {
    const s = text.slice(i, i + 4);
    if (!/^[0-9A-Fa-f]{4}$/.test(s)) fail("'\\u' must be followed by 4 hex digits");
    i += 4;
    return parseInt(s, 16);
  };
  const str = (): string => {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail(`control character U+${c.toString(16).padStart(4, '0')} must be escaped`);
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      i++;
      const e = text[i++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const u = hex4();
          if (u >= 0xdc00 && u <= 0xdfff) fail('surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF');
          if (u >= 0xd800 && u <= 0xdbff) {
            if (text[i] !== '\\' || text[i + 1] !== 'u') fail('surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF');
            i += 2;
            const lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) fail('surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF');
            out += String.fromCharCode(u, lo);
          } else {
            out += String.fromCharCode(u);
          }
          break;
        }
        default:
          i--;
          fail('invalid string: forbidden character after backslash');
      }
      start = i;
    }
  };
  const num = (): JsonValue => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail('invalid number');
    const s = m[0];
    i += s.length;
    if (m[1] === undefined && m[2] === undefined) {
      const n = BigInt(s);
      // Out of the int64/uint64 range the C++ parser falls back to a double.
      if (n >= INT64_MIN && n <= UINT64_MAX) return n;
    }
    return Number(s);
  };
  const literal = (word: string, v: JsonValue): JsonValue => {
    if (!text.startsWith(word, i)) fail('invalid literal');
    i += word.length;
    return v;
  };

  // Iterative: nesting depth is the input's choice, not the JS stack's.
  type Frame = { arr: JsonValue[]; obj: null; key: null } | { arr: null; obj: JsonObject; key: string | null };
  const stack: Frame[] = [];
  let result: JsonValue | undefined;
  const put = (v: JsonValue): void => {
    const top = stack[stack.length - 1];
    if (!top) result = v;
    else if (top.arr) top.arr.push(v);
    else top.obj[top.key!] = v;
  };
  for (;;) {
    ws();
    // A value.
    const c = text[i];
    let value: JsonValue | undefined;
    if (c === '{') {
      i++;
      ws();
      const obj = jsonObject();
      if (text[i] === '}') {
        i++;
        value = obj;
      } else {
        if (text[i] !== '"') fail('expected a string as object key');
        const key = str();
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        stack.push({ arr: null, obj, key });
        continue;
      }
    } else if (c === '[') {
      i++;
      ws();
      const arr: JsonValue[] = [];
      if (text[i] === ']') {
        i++;
        value = arr;
      } else {
        stack.push({ arr, obj: null, key: null });
        continue;
      }
    } else if (c === '"') value = str();
    else if (c === 't') value = literal('true', true);
    else if (c === 'f') value = literal('false', false);
    else if (c === 'n') value = literal('null', null);
    else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) value = num();
    else fail(i >= text.length ? 'unexpected end of input' : `unexpected '${c}'`);
    put(value!);
    // Close containers, or go on to the next element.
    for (;;) {
      const top = stack[stack.length - 1];
      if (!top) {
        ws();
        if (i < text.length) fail('unexpected content after the value');
        return result!;
      }
      ws();
      const d = text[i];
      if (d === ',') {
        i++;
        if (top.obj) {
          ws();
          if (text[i] !== '"') fail('expected a string as object key');
          top.key = str();
          ws();
          if (text[i] !== ':') fail("expected ':'");
          i++;
        }
        break;
      }
      if ((top.arr && d === ']') || (top.obj && d === '}')) {
        i++;
        stack.pop();
        put(top.arr ?? top.obj!);
        continue;
      }
      fail(top.arr ? "expected ',' or ']'" : "expected ',' or '}'");
    }
  }
}

// ---- printing ------------------------------------------------------------------

const ESCAPES: Record<number, string> = { 0x08: '\\b', 0x09: '\\t', 0x0a: '\\n', 0x0c: '\\f', 0x0d: '\\r', 0x22: '\\"', 0x5c: '\\\\' };

// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /["\\\u0000-\u001f]/;

export function dumpJsonString(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return '"' + s + '"';
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    const e = ESCAPES[c];
    if (e) out += e;
    else if (c < 0x20) out += '\\u' + c.toString(16).padStart(4, '0');
    else out += s[k];
  }
  return out + '"';
}

/** A double as nlohmann's serializer prints it (Grisu shortest digits, its layout rules). */
export function dumpJsonFloat(x: number): string {
  if (!Number.isFinite(x)) return 'null';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mant, exp] = Math.abs(x).toExponential().split('e') as [string, string];
  const digits = mant.replace('.', '');
  const k = digits.length;
  const n = Number(exp) + 1; // position of the decimal point
  const MIN_EXP = -4;
  const MAX_EXP = 15; // digits10 of double
  let body: string;
  if (k <= n && n <= MAX_EXP) body = digits + '0'.repeat(n - k) + '.0';
  else if (0 < n && n <= MAX_EXP) body = digits.slice(0, n) + '.' + digits.slice(n);
  else if (MIN_EXP < n && n <= 0) body = '0.' + '0'.repeat(-n) + digits;
  else {
    const e = n - 1;
    const ae = Math.abs(e);
    body = (k === 1 ? digits : digits[0] + '.' + digits.slice(1)) + 'e' + (e < 0 ? '-' : '+') + (ae < 10 ? '0' : '') + ae;
  }
  return sign + body;
}

function sortedKeys(o: JsonObject): string[] {
  return Object.keys(o).sort(compareUtf8);
}

/** nlohmann::json::dump() with no indentation. */
export function dumpJson(v: JsonValue): string {
  const parts: string[] = [];
  // Iterative, like the parser.
  type Frame = { items: JsonValue[]; keys: string[] | null; next: number };
  const stack: Frame[] = [];
  let cur: JsonValue | undefined = v;
  for (;;) {
    if (cur !== undefined) {
      const x: JsonValue = cur;
      cur = undefined;
      if (x === null) parts.push('null');
      else if (typeof x === 'boolean') parts.push(x ? 'true' : 'false');
      else if (typeof x === 'bigint') parts.push(x.toString());
      else if (typeof x === 'number') parts.push(dumpJsonFloat(x));
      else if (typeof x === 'string') parts.push(dumpJsonString(x));
      else if (Array.isArray(x)) {
        parts.push('[');
        stack.push({ items: x, keys: null, next: 0 });
      } else {
        parts.push('{');
        const keys = sortedKeys(x);
        stack.push({ items: keys.map((key) => x[key]!), keys, next: 0 });
      }
    }
    const top = stack[stack.length - 1];
    if (!top) return parts.join('');
    if (top.next < top.items.length) {
      if (top.next > 0) parts.push(',');
      if (top.keys) parts.push(dumpJsonString(top.keys[top.next]!), ':');
      cur = top.items[top.next++]!;
    } else {
      parts.push(top.keys ? '}' : ']');
      stack.pop();
    }
  }
}

// ---- .attrs.sh -------------------------------------------------------------------

const SH_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Single-quotes `s` for a POSIX shell (Nix's shellEscape). */
export function shellEscape(s: string): string {
  return "'" + s.replaceAll("'", "'\\''") + "'";
}

/** C++ `static_cast<int>(double)` as x86-64 does it: truncation, INT_MIN when out of range. */
function doubleToInt32(d: number): number {
  const t = Math.trunc(d);
  if (!(t >= -2147483648 && t <= 2147483647)) return -2147483648;
  return t === 0 ? 0 : t;
}

function shellSimple(v: JsonValue): string | undefined {
  if (typeof v === 'string') return shellEscape(v);
  if (typeof v === 'bigint') return String(BigInt.asIntN(32, v)); // float test always passes for integers
  if (typeof v === 'number') {
    const f = Math.fround(v);
    if (Math.ceil(f) === f) return String(doubleToInt32(v));
    return undefined;
  }
  if (v === null) return "''";
  if (typeof v === 'boolean') return v ? '1' : '';
  return undefined;
}

/** The `.attrs.sh` text for a prepared structured-attrs object (Nix's writeStructuredAttrsShell). */
export function structuredAttrsShell(json: JsonObject): string {
  let sh = '';
  for (const key of sortedKeys(json)) {
    if (!SH_VAR_NAME.test(key)) continue;
    const value = json[key]!;
    const simple = shellSimple(value);
    if (simple !== undefined) {
      sh += `declare ${key}=${simple}\n`;
    } else if (Array.isArray(value)) {
      let s2 = '';
      let good = true;
      for (const e of value) {
        const s3 = shellSimple(e);
        if (s3 === undefined) {
          good = false;
          break;
        }
        s2 += s3 + ' ';
      }
      if (good) sh += `declare -a ${key}=(${s2})\n`;
    } else if (isJsonObject(value)) {
      let s2 = '';
      let good = true;
      for (const k2 of sortedKeys(value)) {
        const s3 = shellSimple(value[k2]!);
        if (s3 === undefined) {
          good = false;
          break;
        }
        s2 += `[${shellEscape(k2)}]=${s3} `;
      }
      if (good) sh += `declare -A ${key}=(${s2})\n`;
    }
  }
  return sh;
}

// ---- the structured attrs of a derivation ----------------------------------------------

/** The parsed `__json` of a derivation, or null without structured attrs. */
export function parseStructuredAttrs(drvBaseName: string, drv: Derivation): JsonObject | null {
  const text = drv.env.get('__json');
  if (text === undefined) return null;
  let v: JsonValue;
  try {
    v = parseJson(text);
  } catch (e) {
    throw new BadStructuredAttrs(`cannot process __json attribute of '${drvBaseName}': ${(e as Error).message}`, {
      derivation: drvBaseName,
    });
  }
  if (!isJsonObject(v)) {
    throw new BadStructuredAttrs(`cannot process __json attribute of '${drvBaseName}': it is a JSON ${jsonTypeName(v)}, not an object`, {
      derivation: drvBaseName,
    });
  }
  return v;
}

/**
 * The elements of a JSON value as nlohmann iterates them: an array's
 * elements, an object's values, nothing for null, the value itself otherwise.
 */
export function jsonElements(v: JsonValue): JsonValue[] {
  if (Array.isArray(v)) return v;
  if (v === null) return [];
  if (isJsonObject(v)) return sortedKeys(v).map((k) => v[k]!);
  return [v];
}

/**
 * Nix's prepareStructuredAttrs: the `__json` object plus `outputs` (output
 * name -> placeholder) and, for each entry of an `exportReferencesGraph`
 * object, a top-level key holding the closure of the paths it names.
 */
export function prepareStructuredAttrs(
  attrs: JsonObject,
  drv: Derivation,
  exportGraph: (key: string, roots: JsonValue[]) => JsonValue,
): JsonObject {
  const json = jsonObject(Object.entries(attrs));
  json['outputs'] = jsonObject([...drv.outputs.keys()].sort(compareUtf8).map((o) => [o, hashPlaceholder(o)]));
  const e = attrs['exportReferencesGraph'];
  if (isJsonObject(e)) {
    for (const key of sortedKeys(e)) json[key] = exportGraph(key, jsonElements(e[key]!));
  }
  return json;
}

/** Splits on Nix's default separators (space, tab, newline, carriage return), dropping empty tokens. */
export function tokenizeString(s: string): string[] {
  return s.split(/[ \t\n\r]+/).filter((t) => t !== '');
}

/**
 * Typed access to derivation attributes, as Nix's ParsedDerivation: from the
 * structured attrs when there are some, else from the environment.
 */
export class DerivationAttrs {
  constructor(
    /** Base name of the .drv (`<hash>-<name>.drv`), for messages. */
    readonly drvBaseName: string,
    readonly drv: Derivation,
    readonly structured: JsonObject | null,
  ) {}

  static of(drvBaseName: string, drv: Derivation): DerivationAttrs {
    return new DerivationAttrs(drvBaseName, drv, parseStructuredAttrs(drvBaseName, drv));
  }

  private bad(name: string, what: string): BadDerivationAttr {
    return new BadDerivationAttr(`attribute '${name}' of derivation '${this.drvBaseName}' must be ${what}`, {
      derivation: this.drvBaseName,
      attribute: name,
    });
  }

  getString(name: string): string | undefined {
    if (this.structured) {
      if (!(name in this.structured)) return undefined;
      const v = this.structured[name]!;
      if (typeof v !== 'string') throw this.bad(name, 'a string');
      return v;
    }
    return this.drv.env.get(name);
  }

  getBool(name: string, def = false): boolean {
    if (this.structured) {
      if (!(name in this.structured)) return def;
      const v = this.structured[name]!;
      if (typeof v !== 'boolean') throw this.bad(name, 'a Boolean');
      return v;
    }
    const v = this.drv.env.get(name);
    return v === undefined ? def : v === '1';
  }

  getStrings(name: string): string[] | undefined {
    if (this.structured) {
      if (!(name in this.structured)) return undefined;
      const v = this.structured[name]!;
      if (!Array.isArray(v)) throw this.bad(name, 'a list of strings');
      return v.map((x) => {
        if (typeof x !== 'string') throw this.bad(name, 'a list of strings');
        return x;
      });
    }
    const v = this.drv.env.get(name);
    return v === undefined ? undefined : tokenizeString(v);
  }

  /** requiredSystemFeatures, plus `ca-derivations` when output paths are not known in advance (Nix's rule). */
  requiredSystemFeatures(): Set<string> {
    const res = new Set(this.getStrings('requiredSystemFeatures') ?? []);
    for (const o of this.drv.outputs.values()) {
      if (o.kind !== 'inputAddressed' && o.kind !== 'caFixed') {
        res.add('ca-derivations');
        break;
      }
    }
    return res;
  }
}
