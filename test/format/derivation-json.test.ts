// The `nix show-derivation` JSON (Nix 2.8), both ways, against the .drv.json
// fixtures Nix wrote, and the input form drvbox accepts for new derivations.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { REPO_ROOT } from '../helpers/host.js';
import { parseDerivation, printDerivation } from '../../src/format/aterm.js';
import { type Derivation, type DerivationOutput } from '../../src/format/derivation.js';
import {
  BadDerivationJson,
  derivationFromJson,
  derivationToJson,
  derivationsToJson,
  nixJsonString,
  parseDerivationInput,
  parseDerivationInputs,
  parseDerivationsJson,
  printDerivationsJson,
} from '../../src/format/derivation-json.js';
import { completeDerivation } from '../../src/format/hash-modulo.js';
import { DEFAULT_STORE_DIR, hashPlaceholder } from '../../src/format/store-path.js';
import { NIX32_ALPHABET } from '../../src/format/nix32.js';
import type { HashAlgo } from '../../src/format/hash.js';

const SD = DEFAULT_STORE_DIR;
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'derivations');

interface Fixture {
  file: string;
  path: string;
  name: string;
  aterm: string;
  jsonText: string;
}
function fixtures(): Fixture[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.drv'))
    .sort()
    .map((f) => ({
      file: f,
      path: `${SD}/${f}`,
      name: f.slice(33, -4),
      aterm: readFileSync(join(FIXTURES, f), 'utf8'),
      jsonText: readFileSync(join(FIXTURES, f + '.json'), 'utf8'),
    }));
}
const resolve = (p: string): Derivation => parseDerivation(readFileSync(join(FIXTURES, p.slice(SD.length + 1))), p.slice(SD.length + 34, -4));
const byName = (n: string): Fixture => fixtures().find((f) => f.name === n)!;

describe('show-derivation JSON: Nix 2.8 fixtures', () => {
  test('our text is byte-identical to what nix show-derivation printed', () => {
    for (const f of fixtures()) {
      assert.equal(printDerivationsJson([[f.path, parseDerivation(f.aterm, f.name)]]), f.jsonText, f.file);
    }
  });

  test('our object deep-equals JSON.parse of Nix output', () => {
    for (const f of fixtures()) {
      assert.deepEqual(derivationsToJson([[f.path, parseDerivation(f.aterm, f.name)]]), JSON.parse(f.jsonText), f.file);
    }
  });

  test('Nix JSON reads back to the byte-identical ATerm', () => {
    for (const f of fixtures()) {
      const m = parseDerivationsJson(f.jsonText);
      assert.deepEqual([...m.keys()], [f.path]);
      assert.equal(printDerivation(m.get(f.path)!), f.aterm, f.file);
    }
  });

  test('several derivations in one object, and an empty one', () => {
    const fs = fixtures().slice(0, 3);
    const text = printDerivationsJson(fs.map((f) => [f.path, parseDerivation(f.aterm, f.name)]));
    assert.deepEqual(JSON.parse(text), Object.assign({}, ...fs.map((f) => JSON.parse(f.jsonText))));
    assert.equal(printDerivationsJson([]), '{}\n');
  });

  test('output objects by kind', () => {
    const outs = (n: string) => (JSON.parse(byName(n).jsonText) as Record<string, { outputs: unknown }>)[byName(n).path]!.outputs;
    assert.deepEqual(outs('ca'), { out: { hashAlgo: 'r:sha256' } });
    assert.deepEqual(outs('ca-user'), { out: {} });
    assert.deepEqual(outs('impure'), { dev: { hashAlgo: 'r:sha256', impure: true }, out: { hashAlgo: 'r:sha256', impure: true } });
    const fod = outs('fod-rec-sha1') as { out: { path: string; hashAlgo: string; hash: string } };
    assert.equal(fod.out.hashAlgo, 'r:sha1');
    assert.equal(fod.out.hash, '800d59cfcd3c05e900cb4e214be48f6b886a08df');
  });
});

describe('show-derivation JSON: details', () => {
  test('strings escape like Nix toJSON, not JSON.stringify', () => {
    assert.equal(nixJsonString('a"b\\c\nd\re\tf'), '"a\\"b\\\\c\\nd\\re\\tf"');
    assert.equal(nixJsonString('\u0000\u0001\u0008\u000c\u001f'), '"\\u0000\\u0001\\u0008\\u000c\\u001f"');
    assert.equal(nixJsonString('\u007f\u2028é😀'), '"\u007f\u2028é😀"');
  });

  test('an env variable named __proto__ is an ordinary key', () => {
    const f = byName('simple');
    const d = parseDerivation(f.aterm, f.name);
    d.env.set('__proto__', 'x');
    const j = derivationToJson(d);
    assert.equal(Object.getOwnPropertyDescriptor(j.env, '__proto__')?.value, 'x');
    assert.equal(Object.getPrototypeOf(j.env), Object.prototype);
    const back = parseDerivationsJson(printDerivationsJson([[f.path, d]]));
    assert.equal(back.get(f.path)!.env.get('__proto__'), 'x');
  });

  test('rejects malformed JSON with BadDerivationJson naming the derivation and field', () => {
    const f = byName('fod-flat-sha256');
    const good = JSON.parse(f.jsonText)[f.path];
    const bad = (mutate: (j: any) => void, re: RegExp) => {
      const j = JSON.parse(JSON.stringify(good));
      mutate(j);
      assert.throws(() => derivationFromJson(j, f.path), (e: unknown) => e instanceof BadDerivationJson && re.test(e.message), re.source);
    };
    bad((j) => (j.outputs.out.path = `${SD}/${'0'.repeat(32)}-fod-flat-sha256`), /^derivation 'fod-flat-sha256': outputs\.out\.path does not match its hash/);
    bad((j) => (j.outputs.out.hash = 'XYZ'), /outputs\.out\.hash is not a lowercase base-16 sha256 hash: "XYZ"/);
    bad((j) => (j.outputs.out.hashAlgo = 'sha3'), /outputs\.out\.hashAlgo is not a hash algorithm/);
    bad((j) => (j.outputs.out.extra = 1), /outputs\.out\.extra is not a known output field/);
    bad((j) => (j.inputSrcs = ['/tmp/x']), /inputSrcs\[0\] is not a store path/);
    bad((j) => (j.env.x = 1), /env\.x must be a string: 1/);
    bad((j) => delete j.builder, /builder is missing/);
    bad((j) => (j.args = 'x'), /args must be a list of strings/);
    assert.throws(() => parseDerivationsJson('{'), BadDerivationJson);
    assert.throws(() => parseDerivationsJson('[]'), BadDerivationJson);
  });
});

describe('input JSON for new derivations', () => {
  const SIMPLE_PATH = '/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple';

  test('the keyed form with paths stripped completes to the Nix derivation', () => {
    const f = byName('multi-user');
    const j = JSON.parse(f.jsonText);
    const inner = j[f.path];
    delete inner.outputs.out.path;
    delete inner.env.out;
    const input = parseDerivationInput(j);
    assert.equal(input.claimedPath, f.path);
    const c = completeDerivation(input.draft, { resolve });
    assert.equal(c.drvPath, f.path);
    assert.equal(printDerivation(c.drv), f.aterm);
  });

  test('the bare form: name from "name", else env.name; outputs as a list or absent', () => {
    const base = { system: 'x86_64-linux', builder: '/bin/sh', args: ['-c', 'echo hi > $out'], env: { builder: '/bin/sh', name: 'simple', system: 'x86_64-linux' } };
    for (const v of [base, { ...base, name: 'simple' }, { ...base, outputs: ['out'] }, { ...base, outputs: { out: {} } }, { ...base, outputs: { out: { path: SIMPLE_PATH } } }]) {
      const c = completeDerivation(parseDerivationInput(v).draft, { resolve });
      assert.equal(c.drvPath, byName('simple').path);
      assert.equal(c.drv.env.get('out'), SIMPLE_PATH);
    }
    assert.throws(() => parseDerivationInput({ ...base, env: {} }), (e: unknown) => e instanceof BadDerivationJson && /name is missing/.test(e.message));
  });

  test('fixed outputs from attributes: SRI, nix32, md5 as nix-instantiate reads them', () => {
    for (const n of ['fod-sri', 'fod-rec-sha1', 'fod-md5', 'structured-fod']) {
      const f = byName(n);
      const inner = JSON.parse(f.jsonText)[f.path];
      delete inner.outputs;
      delete inner.env.out;
      const c = completeDerivation(parseDerivationInput({ name: n, ...inner }).draft, { resolve });
      assert.equal(printDerivation(c.drv), f.aterm, n);
    }
  });

  test('CA floating and impure from env.__contentAddressed / env.__impure, which are consumed', () => {
    for (const [n, flag] of [['ca-multi', '__contentAddressed'], ['impure', '__impure']] as const) {
      const f = byName(n);
      const inner = JSON.parse(f.jsonText)[f.path];
      delete inner.outputs;
      for (const o of ['out', 'dev']) delete inner.env[o];
      inner.env[flag] = '1';
      const c = completeDerivation(parseDerivationInput({ name: n, ...inner }).draft, { resolve });
      assert.equal(printDerivation(c.drv), f.aterm, n);
      assert.equal(c.drv.env.get('dev'), hashPlaceholder('dev'));
      assert.equal(c.drv.env.has(flag), false);
    }
  });

  test('several keyed derivations', () => {
    const a = byName('simple');
    const b = byName('tofile');
    const inputs = parseDerivationInputs({ ...JSON.parse(a.jsonText), ...JSON.parse(b.jsonText) });
    assert.deepEqual(inputs.map((i) => i.claimedPath), [a.path, b.path]);
    assert.throws(() => parseDerivationInput({ ...JSON.parse(a.jsonText), ...JSON.parse(b.jsonText) }), /expected one derivation, got 2/);
  });

  test('bad input is a BadDerivationJson naming the derivation and value', () => {
    const base = { name: 'x', system: 's', builder: 'b' };
    const cases: Array<[unknown, RegExp]> = [
      [{ ...base, outputs: { out: { hash: 'abc' } } }, /^derivation 'x': outputs\.out has a hash or impure flag but no hashAlgo/],
      [{ ...base, outputs: { out: { hashAlgo: 'sha256', hash: 'nope' } } }, /^derivation 'x': outputs\.out\.hash is not a valid sha256 hash/],
      [{ ...base, outputs: { out: { hashAlgo: 'r:sha256', path: `${SD}/${'0'.repeat(32)}-x` } } }, /outputs\.out\.path must be absent for a floating/],
      [{ ...base, outputs: { out: { path: '/tmp/x' } } }, /outputs\.out\.path is not a store path/],
      [{ ...base, outputs: [] }, /outputs must name at least one output/],
      [{ ...base, outputs: ['a', 'a'] }, /outputs has a duplicate name/],
      [{ ...base, inputDrvs: { [`${SD}/${'0'.repeat(32)}-x`]: ['out'] } }, /inputDrvs key is not a \.drv path/],
      [{ ...base, extra: 1 }, /^derivation 'x': extra is not a known derivation field/],
      [{ ...base, env: { outputHash: 'sha256:zz', outputHashAlgo: 'sha256' } }, /outputHash is not a valid hash/],
      [{ ...base, env: { outputHashMode: 'nar' } }, /outputHashMode must be 'flat' or 'recursive'/],
      [{ ...base, system: 1 }, /system must be a string: 1/],
      [{ ...base, env: { __json: '{' } }, /env\.__json is not valid JSON/],
      ['not json', /is not valid JSON/],
    ];
    for (const [v, re] of cases) {
      assert.throws(() => parseDerivationInput(v), (e: unknown) => e instanceof BadDerivationJson && re.test(e.message), re.source);
    }
  });
});

// ---------------------------------------------------------------------------
// Property: random derivations round-trip through the JSON.

const nameChars = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?='.split(''));
const storeName = fc.tuple(fc.constantFrom(...'abcxyz0189'.split('')), fc.string({ unit: nameChars, maxLength: 12 })).map(([a, b]) => a + b);
const hashPart = fc.string({ unit: fc.constantFrom(...NIX32_ALPHABET.split('')), minLength: 32, maxLength: 32 });
const storePath = fc.tuple(hashPart, storeName).map(([h, n]) => `${SD}/${h}-${n}`);
const drvPathArb = fc.tuple(hashPart, storeName).map(([h, n]) => `${SD}/${h}-${n}.drv`);
const tricky = fc.constantFrom('"', '\\', '\n', '\t', '\r', '\b', '\f', '$', 'é', '😀', '～', '\u0000', '\u0001', '\u007f', '\u2028', '__proto__', '1', 'constructor');
const anyText = fc.array(fc.oneof(tricky, fc.string({ unit: 'binary', maxLength: 6 })), { maxLength: 8 }).map((a) => a.join(''));
const outputName = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz'.split('')), minLength: 1, maxLength: 6 });
const algo = fc.constantFrom<HashAlgo>('md5', 'sha1', 'sha256', 'sha512');
const sizes: Record<HashAlgo, number> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };
const output: fc.Arbitrary<DerivationOutput> = fc.oneof(
  storePath.map((path): DerivationOutput => ({ kind: 'inputAddressed', path })),
  fc.constant<DerivationOutput>({ kind: 'deferred' }),
  fc
    .tuple(fc.constantFrom('flat', 'recursive' as const), algo, fc.uint8Array({ minLength: 64, maxLength: 64 }))
    .map(([method, a, bytes]): DerivationOutput => ({ kind: 'caFixed', method, hash: { algo: a, digest: Buffer.from(bytes.subarray(0, sizes[a])) } })),
  fc.tuple(fc.constantFrom('flat', 'recursive' as const), algo).map(([method, hashAlgo]): DerivationOutput => ({ kind: 'caFloating', method, hashAlgo })),
  fc.tuple(fc.constantFrom('flat', 'recursive' as const), algo).map(([method, hashAlgo]): DerivationOutput => ({ kind: 'impure', method, hashAlgo })),
);
const anyDerivation: fc.Arbitrary<Derivation> = fc.record({
  name: storeName,
  outputs: fc.array(fc.tuple(outputName, output), { maxLength: 4 }).map((e) => new Map(e)),
  inputDrvs: fc.array(fc.tuple(drvPathArb, fc.array(outputName, { maxLength: 3 })), { maxLength: 3 }).map((e) => new Map(e.map(([p, o]) => [p, new Set(o)]))),
  inputSrcs: fc.array(storePath, { maxLength: 3 }).map((a) => new Set(a)),
  platform: anyText.map((s) => s.replace(/["\\]/g, '_')),
  builder: anyText,
  args: fc.array(anyText, { maxLength: 4 }),
  env: fc.array(fc.tuple(anyText, anyText), { maxLength: 6 }).map((e) => new Map(e)),
});

describe('show-derivation JSON: properties', () => {
  test('derivation -> JSON text -> derivation gives the same ATerm; text and object agree', () => {
    fc.assert(
      fc.property(anyDerivation, (d) => {
        const p = `${SD}/${'1'.repeat(32)}-${d.name}.drv`;
        const text = printDerivationsJson([[p, d]]);
        assert.deepEqual(JSON.parse(text), derivationsToJson([[p, d]]));
        const back = parseDerivationsJson(text).get(p)!;
        assert.equal(printDerivation(back), printDerivation(d));
        // And through JSON.stringify of our object, as another program would write it.
        assert.equal(printDerivation(parseDerivationsJson(JSON.stringify(derivationsToJson([[p, d]]))).get(p)!), printDerivation(d));
      }),
      { numRuns: 400 },
    );
  });
});
