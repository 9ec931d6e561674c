// ATerm parse/print: byte-exact round trips of the .drv files Nix 2.8 wrote
// (test/fixtures/derivations, made by interop.nix), one malformed fixture per
// parser error (malformed/expected.json says what each must raise, and
// where), the lenient mode, the printer's refusals, and a property test with
// random derivations.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { REPO_ROOT } from '../helpers/host.js';
import {
  AtermBadEscape,
  AtermDuplicate,
  AtermNonCanonicalString,
  firstInvalidUtf8,
  isAtermError,
  parseDerivation,
  parseDerivationFile,
  printDerivation,
  printDerivationBytes,
  quoteAterm,
} from '../../src/format/aterm.js';
import { UnrepresentableString, compareUtf8, sortedUtf8, type Derivation, type DerivationOutput } from '../../src/format/derivation.js';
import { DEFAULT_STORE_DIR } from '../../src/format/store-path.js';
import { NIX32_ALPHABET } from '../../src/format/nix32.js';
import { isDrvboxError } from '../../src/errors.js';
import type { HashAlgo } from '../../src/format/hash.js';

const SD = DEFAULT_STORE_DIR;
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'derivations');
const MALFORMED = join(FIXTURES, 'malformed');

function fixtures(): Array<{ file: string; path: string; name: string; bytes: Buffer }> {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.drv'))
    .sort()
    .map((f) => ({ file: f, path: `${SD}/${f}`, name: f.slice(33, -4), bytes: readFileSync(join(FIXTURES, f)) }));
}

function drv(partial: Partial<Derivation>): Derivation {
  return {
    name: 'x',
    outputs: new Map([['out', { kind: 'inputAddressed', path: `${SD}/${'0'.repeat(32)}-x` }]]),
    inputDrvs: new Map(),
    inputSrcs: new Set(),
    platform: 'x86_64-linux',
    builder: '/bin/sh',
    args: [],
    env: new Map(),
    ...partial,
  };
}

describe('ATerm: Nix 2.8 fixtures', () => {
  test('there are fixtures of every kind', () => {
    const all = fixtures();
    assert.ok(all.length >= 40, `only ${all.length} fixtures`);
    const kinds = new Set<string>();
    for (const f of all) for (const o of parseDerivation(f.bytes, f.name).outputs.values()) kinds.add(o.kind);
    assert.deepEqual([...kinds].sort(), ['caFixed', 'caFloating', 'deferred', 'impure', 'inputAddressed']);
  });

  test('every fixture parses and prints back byte for byte (strict)', () => {
    for (const f of fixtures()) {
      const d = parseDerivation(f.bytes, f.name);
      assert.ok(printDerivationBytes(d).equals(f.bytes), f.file);
      assert.equal(parseDerivationFile(f.bytes, f.path).name, f.name);
    }
  });

  test('lenient mode reads every fixture to the same derivation', () => {
    for (const f of fixtures()) {
      assert.equal(printDerivation(parseDerivation(f.bytes, f.name, { lenient: true })), f.bytes.toString('utf8'), f.file);
    }
  });

  test('fixed, floating, impure and deferred outputs read as Nix writes them', () => {
    const byName = new Map(fixtures().map((f) => [f.name, parseDerivation(f.bytes, f.name)]));
    const out = (n: string, o = 'out'): DerivationOutput => byName.get(n)!.outputs.get(o)!;
    const fixed = out('fod-rec-sha512');
    assert.ok(fixed.kind === 'caFixed' && fixed.method === 'recursive' && fixed.hash.algo === 'sha512');
    assert.equal(Buffer.from(fixed.hash.digest).toString('hex').slice(0, 8), '204a8fc6');
    assert.deepEqual(out('ca'), { kind: 'caFloating', method: 'recursive', hashAlgo: 'sha256' });
    assert.deepEqual(out('ca-flat-sha512'), { kind: 'caFloating', method: 'flat', hashAlgo: 'sha512' });
    assert.deepEqual(out('impure', 'dev'), { kind: 'impure', method: 'recursive', hashAlgo: 'sha256' });
    assert.deepEqual(out('ca-user'), { kind: 'deferred' });
    const strings = byName.get('strings')!;
    assert.equal(strings.env.get('q'), 'a"b');
    assert.equal(strings.env.get('bs'), 'back\\slash \\n not a newline');
    assert.equal(strings.env.get('cr'), 'a\rb\r\n');
    assert.equal(strings.env.get('uni'), 'héllo wörld ✓ 日本語 🎉');
    assert.equal(strings.env.get('ctrl'), 'a\u0001b\u001fc\u007fd');
    assert.equal(strings.env.get('key with "quote"'), 'v');
    assert.deepEqual(byName.get('args-escapes')!.args, ['"', '\\', '\n\t\r', '\\"', 'a\u0001b\u001fc\u007fd']);
    assert.deepEqual(byName.get('empty-values')!.args, ['']);
    assert.deepEqual(byName.get('no-args')!.args, []);
  });

  test('keys print in UTF-8 byte order, not UTF-16 order (U+FF5E before U+1F600)', () => {
    const f = fixtures().find((x) => x.name === 'unicode-order')!;
    const d = parseDerivation(f.bytes, f.name);
    assert.deepEqual(sortedUtf8(d.env.keys()), ['Z', 'builder', 'name', 'out', 'system', 'z', 'é', '～', '😀']);
    assert.ok(f.bytes.indexOf(Buffer.from('("～"')) < f.bytes.indexOf(Buffer.from('("😀"')));
    assert.ok('😀' < '～', 'UTF-16 order is the other way round');
    assert.ok(compareUtf8('～', '😀') < 0);
  });
});

interface MalformedCase {
  file: string;
  name: string;
  code: string;
  offset: number;
  lenient: string;
  why: string;
}

describe('ATerm: malformed fixtures', () => {
  const cases = JSON.parse(readFileSync(join(MALFORMED, 'expected.json'), 'utf8')) as MalformedCase[];

  test('every malformed fixture is listed, and every parser error has one', () => {
    const files = readdirSync(MALFORMED).filter((f) => f.endsWith('.drv')).sort();
    assert.deepEqual(cases.map((c) => c.file).sort(), files);
    const codes = new Set(cases.map((c) => c.code));
    for (const code of [
      'E_ATERM_TRUNCATED',
      'E_ATERM_UNEXPECTED',
      'E_ATERM_BAD_ESCAPE',
      'E_ATERM_NONCANONICAL_STRING',
      'E_ATERM_INVALID_UTF8',
      'E_ATERM_TRAILING_DATA',
      'E_ATERM_BAD_PATH',
      'E_ATERM_UNSORTED',
      'E_ATERM_DUPLICATE',
      'E_ATERM_BAD_OUTPUT',
      'E_ATERM_FIXED_PATH_MISMATCH',
    ]) {
      assert.ok(codes.has(code), `no malformed fixture for ${code}`);
    }
  });

  for (const c of cases) {
    test(`${c.file}: ${c.why}`, () => {
      const bytes = readFileSync(join(MALFORMED, c.file));
      assert.throws(
        () => parseDerivation(bytes, c.name),
        (e: unknown) => {
          assert.ok(isAtermError(e), `not an ATerm error: ${String(e)}`);
          assert.equal(e.code, c.code);
          assert.equal(e.fields.offset, c.offset);
          assert.equal(typeof e.fields.expected, 'string');
          assert.match(e.message, new RegExp(`^derivation '${c.name.replace(/[?+.]/g, '\\$&')}': `));
          assert.match(e.message, new RegExp(`\\b${c.offset}\\b`));
          return true;
        },
      );
      if (c.lenient === 'ok') {
        const d = parseDerivation(bytes, c.name, { lenient: true });
        // What lenient mode accepts prints canonically and then parses strictly.
        const again = printDerivation(d);
        assert.equal(printDerivation(parseDerivation(again, c.name)), again);
      } else {
        assert.throws(() => parseDerivation(bytes, c.name, { lenient: true }), (e: unknown) => isAtermError(e) && e.code === c.lenient);
      }
    });
  }

  test('lenient mode resolves duplicates as Nix 2.8 does', () => {
    const a = `${SD}/${'1'.repeat(32)}-a`;
    const b = `${SD}/${'2'.repeat(32)}-b`;
    const text =
      `Derive([("out","${a}","",""),("out","${b}","","")],` +
      `[("${SD}/${'3'.repeat(32)}-i.drv",["x"]),("${SD}/${'3'.repeat(32)}-i.drv",["y","y"])],` +
      `["${a}","${a}"],"s","b",[],[("k","1"),("k","2"),("\\e","\\q")])`;
    assert.throws(() => parseDerivation(text, 'x'), AtermDuplicate);
    const d = parseDerivation(text, 'x', { lenient: true });
    assert.deepEqual(d.outputs.get('out'), { kind: 'inputAddressed', path: a }); // emplace: first wins
    assert.deepEqual([...d.inputDrvs.values()].map((s) => [...s]), [['y']]); // insert_or_assign: last wins
    assert.deepEqual([...d.inputSrcs], [a]);
    assert.equal(d.env.get('k'), '2'); // env[k] = v: last wins
    assert.equal(d.env.get('e'), 'q'); // "\c" is c
  });

  test('escapes: strict accepts exactly \\" \\\\ \\n \\r \\t', () => {
    const mk = (s: string) => `Derive([],[],[],"s","${s}",[],[])`;
    assert.equal(parseDerivation(mk('\\"\\\\\\n\\r\\t'), 'x').builder, '"\\\n\r\t');
    assert.throws(() => parseDerivation(mk('\\a'), 'x'), AtermBadEscape);
    assert.throws(() => parseDerivation(mk('a\tb'), 'x'), AtermNonCanonicalString);
    assert.equal(parseDerivation(mk('a\tb'), 'x', { lenient: true }).builder, 'a\tb');
    // A raw newline in the (unquoted) system is how Nix writes it, so it is canonical.
    assert.equal(parseDerivation('Derive([],[],[],"a\nb","b",[],[])', 'x').platform, 'a\nb');
  });

  test('an empty input and a lone prefix are truncation errors at the right offset', () => {
    for (const [text, offset] of [['', 0], ['Derive(', 7], ['Derive([', 8], ['Derive([("out"', 14]] as const) {
      assert.throws(() => parseDerivation(text, 'x'), (e: unknown) => isAtermError(e) && e.code === 'E_ATERM_TRUNCATED' && e.fields.offset === offset, text);
    }
  });

  test('firstInvalidUtf8 finds bad sequences (overlong, surrogates, > U+10FFFF, truncated)', () => {
    assert.equal(firstInvalidUtf8(Buffer.from('héllo 😀')), -1);
    assert.equal(firstInvalidUtf8(Buffer.from([0x61, 0xc0, 0x80])), 1);
    assert.equal(firstInvalidUtf8(Buffer.from([0x61, 0x62, 0xed, 0xa0, 0x80])), 2);
    assert.equal(firstInvalidUtf8(Buffer.from([0xf4, 0x90, 0x80, 0x80])), 0);
    assert.equal(firstInvalidUtf8(Buffer.from([0x61, 0xe2, 0x82])), 1);
    assert.equal(firstInvalidUtf8(Buffer.from([0x80])), 0);
  });
});

describe('ATerm: printing', () => {
  test('quoteAterm escapes exactly the five characters', () => {
    assert.equal(quoteAterm('a"b\\c\nd\re\tf\u0001g€'), '"a\\"b\\\\c\\nd\\re\\tf\u0001g€"');
  });

  test('maskOutputs empties output paths and the env values of outputs only', () => {
    const d = drv({ env: new Map([['out', 'p'], ['other', 'v']]) });
    assert.equal(
      printDerivation(d, { maskOutputs: true }),
      'Derive([("out","","","")],[],[],"x86_64-linux","/bin/sh",[],[("other","v"),("out","")])',
    );
  });

  test('refuses strings it cannot write faithfully', () => {
    assert.throws(() => printDerivation(drv({ builder: 'a\uD800b' })), UnrepresentableString);
    assert.throws(() => printDerivation(drv({ env: new Map([['k\uDC00', 'v']]) })), UnrepresentableString);
    assert.throws(() => printDerivation(drv({ platform: 'x"y' })), (e: unknown) => e instanceof UnrepresentableString && /system 'x"y' contains a double quote/.test(e.message));
    assert.throws(() => printDerivation(drv({ outputs: new Map([['o\\', { kind: 'deferred' }]]) })), UnrepresentableString);
    // A well-formed surrogate pair is fine.
    assert.equal(parseDerivation(printDerivation(drv({ builder: '😀' })), 'x').builder, '😀');
  });
});

// ---------------------------------------------------------------------------
// Property: random derivations round-trip through the ATerm.

const nameChars = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?='.split(''));
const storeName = fc.tuple(fc.constantFrom(...'abcxyz0189'.split('')), fc.string({ unit: nameChars, maxLength: 12 })).map(([a, b]) => a + b);
const hashPart = fc.string({ unit: fc.constantFrom(...NIX32_ALPHABET.split('')), minLength: 32, maxLength: 32 });
const storePath = fc.tuple(hashPart, storeName).map(([h, n]) => `${SD}/${h}-${n}`);
const drvPath = fc.tuple(hashPart, storeName).map(([h, n]) => `${SD}/${h}-${n}.drv`);
const tricky = fc.constantFrom('"', '\\', '\n', '\t', '\r', '\\n', '$', 'é', '😀', '～', '\u0000', '\u0001', '\u007f', '\u2028', ' ', ')', ']', ',');
const anyText = fc.array(fc.oneof(tricky, fc.string({ unit: 'binary', maxLength: 6 })), { maxLength: 8 }).map((a) => a.join(''));
const unquotedText = anyText.map((s) => s.replace(/["\\]/g, '_'));
const outputName = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz'.split('')), minLength: 1, maxLength: 6 });
const algo = fc.constantFrom<HashAlgo>('md5', 'sha1', 'sha256', 'sha512');
const sizes: Record<HashAlgo, number> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };
const output: fc.Arbitrary<DerivationOutput> = fc.oneof(
  storePath.map((path): DerivationOutput => ({ kind: 'inputAddressed', path })),
  fc.constant<DerivationOutput>({ kind: 'deferred' }),
  fc
    .tuple(fc.constantFrom('flat', 'recursive', 'text' as const), algo, fc.uint8Array({ minLength: 64, maxLength: 64 }))
    .map(([method, a, bytes]): DerivationOutput => {
      const al = method === 'text' ? 'sha256' : a;
      return { kind: 'caFixed', method, hash: { algo: al, digest: Buffer.from(bytes.subarray(0, sizes[al])) } };
    }),
  fc.tuple(fc.constantFrom('flat', 'recursive' as const), algo).map(([method, hashAlgo]): DerivationOutput => ({ kind: 'caFloating', method, hashAlgo })),
  fc.tuple(fc.constantFrom('flat', 'recursive' as const), algo).map(([method, hashAlgo]): DerivationOutput => ({ kind: 'impure', method, hashAlgo })),
);
const anyDerivation: fc.Arbitrary<Derivation> = fc.record({
  name: storeName,
  outputs: fc.array(fc.tuple(outputName, output), { maxLength: 4 }).map((e) => new Map(e)),
  inputDrvs: fc.array(fc.tuple(drvPath, fc.array(outputName, { maxLength: 3 })), { maxLength: 3 }).map((e) => new Map(e.map(([p, o]) => [p, new Set(o)]))),
  inputSrcs: fc.array(storePath, { maxLength: 3 }).map((a) => new Set(a)),
  platform: unquotedText,
  builder: anyText,
  args: fc.array(anyText, { maxLength: 4 }),
  env: fc.array(fc.tuple(anyText, anyText), { maxLength: 6 }).map((e) => new Map(e)),
});

describe('ATerm: properties', () => {
  test('print -> parse (strict) -> print is the identity, for random derivations', () => {
    fc.assert(
      fc.property(anyDerivation, (d) => {
        const text = printDerivation(d);
        const back = parseDerivation(Buffer.from(text, 'utf8'), d.name);
        assert.equal(printDerivation(back), text);
        assert.deepEqual(back.args, d.args);
        assert.deepEqual(back.env, d.env);
        assert.equal(back.builder, d.builder);
        assert.equal(back.platform, d.platform);
        assert.deepEqual(back.inputDrvs, d.inputDrvs);
        assert.deepEqual(back.inputSrcs, d.inputSrcs);
        assert.deepEqual([...back.outputs.keys()].sort(), [...d.outputs.keys()].sort());
        // The same bytes through lenient mode give the same derivation.
        assert.equal(printDerivation(parseDerivation(text, d.name, { lenient: true })), text);
      }),
      { numRuns: 400 },
    );
  });

  test('every strict parse failure of a mutated print is a typed ATerm error', () => {
    fc.assert(
      fc.property(anyDerivation, fc.nat(), fc.integer({ min: 0, max: 255 }), (d, at, byte) => {
        const bytes = Buffer.from(printDerivation(d), 'utf8');
        const i = at % bytes.length;
        bytes[i] = byte;
        try {
          const back = parseDerivation(bytes, d.name);
          assert.ok(Buffer.from(printDerivation(back), 'utf8').equals(bytes), 'a strict parse must re-print byte for byte');
        } catch (e) {
          assert.ok(isDrvboxError(e) && isAtermError(e), `untyped error: ${String(e)}`);
        }
      }),
      { numRuns: 400 },
    );
  });
});
