// hashDerivationModulo, .drv paths and the completion of new derivations,
// against the Nix 2.8 fixtures: each fixture's file name is its expected
// .drv path, and its output paths are what nix-instantiate computed.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/host.js';
import { parseDerivation, printDerivation } from '../../src/format/aterm.js';
import {
  BadFixedOutput,
  InvalidDerivation,
  MixedOutputKinds,
  NoOutputs,
  outputPaths,
  type Derivation,
  type DerivationDraft,
} from '../../src/format/derivation.js';
import { draftFromDerivation } from '../../src/format/derivation-json.js';
import {
  DerivationCycle,
  IMPURE_OUTPUT_HASH,
  MissingInputDerivation,
  MissingInputOutput,
  OutputEnvMismatch,
  OutputPathMismatch,
  completeDerivation,
  derivationPath,
  derivationReferences,
  hashDerivationModulo,
  pathDerivationModulo,
  staticOutputHashes,
  type DrvHash,
} from '../../src/format/hash-modulo.js';
import { base16Encode, formatHash, hashBytes } from '../../src/format/hash.js';
import { DEFAULT_STORE_DIR, hashPlaceholder, makeOutputPath } from '../../src/format/store-path.js';

const SD = DEFAULT_STORE_DIR;
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'derivations');

const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.drv')).sort();
const parsed = new Map<string, Derivation>();
function resolve(p: string): Derivation | undefined {
  if (!files.includes(p.slice(SD.length + 1))) return undefined;
  let d = parsed.get(p);
  if (!d) {
    const base = p.slice(SD.length + 1);
    parsed.set(p, (d = parseDerivation(readFileSync(join(FIXTURES, base)), base.slice(33, -4))));
  }
  return d;
}
const pathOf = (name: string): string => `${SD}/${files.find((f) => f.slice(33, -4) === name)!}`;
const drvOf = (name: string): Derivation => resolve(pathOf(name))!;

describe('.drv paths and output paths of the Nix 2.8 fixtures', () => {
  test('every fixture hashes to its file name (makeTextPath of the ATerm, inputs as references)', () => {
    for (const f of files) assert.equal(derivationPath(resolve(`${SD}/${f}`)!), `${SD}/${f}`);
  });

  test('references are inputSrcs ∪ inputDrvs without duplicates (a .drv in both)', () => {
    const d = drvOf('drv-path-ref');
    const simple = pathOf('simple');
    assert.ok(d.inputSrcs.has(simple) && d.inputDrvs.has(simple));
    assert.deepEqual(derivationReferences(d), [simple]);
  });

  test('every fixture completes from its output-less form to the identical .drv', () => {
    for (const f of files) {
      const d = resolve(`${SD}/${f}`)!;
      const c = completeDerivation(draftFromDerivation(d, { dropPaths: true }), { resolve });
      assert.equal(c.drvPath, `${SD}/${f}`);
      assert.equal(printDerivation(c.drv), printDerivation(d), f);
      assert.deepEqual(outputPaths(SD, c.drv), outputPaths(SD, d));
    }
  });

  test('input-addressed outputs: makeOutputPath of the masked modulo hash', () => {
    const d = drvOf('multi');
    const h = staticOutputHashes(d, { resolve });
    for (const o of ['out', 'dev', 'lib', 'doc']) {
      const out = d.outputs.get(o)!;
      assert.equal(out.kind, 'inputAddressed');
      assert.equal(makeOutputPath(SD, o, h.get(o)!, 'multi'), out.kind === 'inputAddressed' ? out.path : '');
    }
  });
});

describe('hashDerivationModulo', () => {
  test('fixed outputs: sha256("fixed:out:<method:algo>:<base16>:<path>")', () => {
    const d = drvOf('fod-rec-sha512');
    const out = d.outputs.get('out')!;
    assert.equal(out.kind, 'caFixed');
    const path = outputPaths(SD, d).get('out')!;
    const clear = `fixed:out:r:sha512:${out.kind === 'caFixed' ? base16Encode(out.hash.digest) : ''}:${path}`;
    const h = hashDerivationModulo(d, false, { resolve });
    assert.equal(h.kind, 'regular');
    assert.equal(formatHash(h.hashes.get('out')!), formatHash(hashBytes('sha256', clear)));
  });

  test('two fixed-output derivations with the same output have the same hash; their dependents merge them', () => {
    const twins = files.filter((f) => f.endsWith('-fod-twin.drv')).map((f) => `${SD}/${f}`);
    assert.equal(twins.length, 2);
    const [a, b] = twins.map((p) => pathDerivationModulo(p, { resolve }).hashes.get('out')!);
    assert.equal(formatHash(a!), formatHash(b!));
    // fod-user uses both twins plus two other fixed outputs: three distinct inputs after replacement.
    const user = drvOf('fod-user');
    assert.equal(user.inputDrvs.size, 4);
    const key = base16Encode(a!.digest);
    const override = new Map<string, Set<string>>();
    for (const p of user.inputDrvs.keys()) override.set(base16Encode(pathDerivationModulo(p, { resolve }).hashes.get('out')!.digest), new Set(['out']));
    assert.equal(override.size, 3);
    assert.ok(override.has(key));
    const expected = hashBytes('sha256', printDerivation(user, { maskOutputs: true, inputDrvsOverride: override }));
    assert.equal(formatHash(hashDerivationModulo(user, true, { resolve }).hashes.get('out')!), formatHash(expected));
  });

  test('kinds: CA floating and its dependents are deferred; a fixed output stops the deferral', () => {
    const kind = (n: string): string => pathDerivationModulo(pathOf(n), { resolve }).kind;
    assert.equal(kind('simple'), 'regular');
    assert.equal(kind('ca'), 'deferred');
    assert.equal(kind('ca-user'), 'deferred');
    assert.equal(kind('ca-user-user'), 'deferred');
    assert.equal(kind('ca-fod-user'), 'regular');
    assert.equal(kind('ca-fod-user-user'), 'regular');
    assert.equal(kind('impure'), 'deferred');
    assert.equal(kind('impure-user'), 'deferred');
    assert.equal(kind('chain-3'), 'regular');
  });

  test('impure outputs all hash to sha256("impure")', () => {
    const h = pathDerivationModulo(pathOf('impure'), { resolve });
    assert.deepEqual([...h.hashes.keys()].sort(), ['dev', 'out']);
    for (const x of h.hashes.values()) assert.equal(formatHash(x), formatHash(IMPURE_OUTPUT_HASH));
    assert.equal(formatHash(IMPURE_OUTPUT_HASH, 'base16'), formatHash(hashBytes('sha256', 'impure'), 'base16'));
  });

  test('a deferred dependent keeps empty paths and empty env values, as nix-instantiate writes it', () => {
    const d = drvOf('ca-user');
    const c = completeDerivation(draftFromDerivation(d, { dropPaths: true }), { resolve });
    assert.equal(c.drvHash?.kind, 'deferred');
    assert.deepEqual(c.drv.outputs.get('out'), { kind: 'deferred' });
    assert.equal(c.drv.env.get('out'), '');
    const ca = completeDerivation(draftFromDerivation(drvOf('ca-multi'), { dropPaths: true }), { resolve });
    assert.equal(ca.drv.env.get('out'), hashPlaceholder('out'));
    assert.equal(ca.drv.env.get('dev'), hashPlaceholder('dev'));
  });

  test('memoised: the resolver is asked once per input; the cache is reusable', () => {
    const calls = new Map<string, number>();
    const counting = (p: string) => {
      calls.set(p, (calls.get(p) ?? 0) + 1);
      return resolve(p);
    };
    const cache = new Map<string, DrvHash>();
    const top = pathOf('chain-3');
    const first = pathDerivationModulo(top, { resolve: counting, cache });
    assert.equal(cache.size, 4);
    assert.ok([...calls.values()].every((n) => n === 1), JSON.stringify([...calls]));
    calls.clear();
    assert.equal(pathDerivationModulo(top, { resolve: counting, cache }), first);
    assert.equal(calls.size, 0);
  });

  test('a 5,000-deep chain does not overflow the stack', () => {
    const sharedCache = new Map<string, DrvHash>();
    const store = new Map<string, Derivation>();
    let prev: string | null = null;
    for (let i = 0; i < 5000; i++) {
      const draft: DerivationDraft = {
        name: `c${i}`,
        outputs: new Map([['out', { kind: 'inputAddressed' }]]),
        inputDrvs: prev ? new Map([[prev, new Set(['out'])]]) : new Map(),
        inputSrcs: new Set(),
        platform: 'x86_64-linux',
        builder: '/bin/sh',
        args: [],
        env: new Map(),
      };
      // Completing each level with a shared cache is cheap; the fresh walk below is the test.
      const c = completeDerivation(draft, { resolve: (p) => store.get(p)!, cache: sharedCache });
      store.set(c.drvPath, c.drv);
      prev = c.drvPath;
    }
    const h = pathDerivationModulo(prev!, { resolve: (p) => store.get(p)! });
    assert.equal(h.kind, 'regular');
    assert.equal(formatHash(h.hashes.get('out')!), formatHash(sharedCache.get(prev!)!.hashes.get('out')!));
  });

  test('a cycle through the resolver is a typed error', () => {
    const a = `${SD}/${'a'.repeat(32)}-a.drv`;
    const b = `${SD}/${'b'.repeat(32)}-b.drv`;
    const mk = (name: string, input: string): Derivation => ({
      name,
      outputs: new Map([['out', { kind: 'inputAddressed', path: `${SD}/${'c'.repeat(32)}-${name}` }]]),
      inputDrvs: new Map([[input, new Set(['out'])]]),
      inputSrcs: new Set(),
      platform: 's',
      builder: 'b',
      args: [],
      env: new Map(),
    });
    const db = new Map([[a, mk('a', b)], [b, mk('b', a)]]);
    assert.throws(() => pathDerivationModulo(a, { resolve: (p) => db.get(p)! }), DerivationCycle);
  });
});

describe('completing new derivations: errors', () => {
  const base = (): DerivationDraft => ({
    name: 'x',
    outputs: new Map([['out', { kind: 'inputAddressed' }]]),
    inputDrvs: new Map(),
    inputSrcs: new Set(),
    platform: 'x86_64-linux',
    builder: '/bin/sh',
    args: [],
    env: new Map(),
  });
  const fails = (mutate: (d: DerivationDraft) => void, cls: new (...a: any[]) => Error, re: RegExp) => {
    const d = base();
    mutate(d);
    assert.throws(() => completeDerivation(d, { resolve }), (e: unknown) => e instanceof cls && re.test((e as Error).message), re.source);
  };

  test('each bad value is named', () => {
    fails((d) => (d.name = 'bad name'), InvalidDerivation, /^derivation 'bad name': invalid name 'bad name': name contains illegal character ' '/);
    fails((d) => (d.name = 'x.drv'), InvalidDerivation, /names must not end in '\.drv'/);
    fails((d) => (d.builder = ''), InvalidDerivation, /'builder' is empty/);
    fails((d) => (d.platform = ''), InvalidDerivation, /'system' is empty/);
    fails((d) => d.outputs.clear(), NoOutputs, /^derivation 'x' must have at least one output/);
    fails((d) => d.outputs.set('dev', { kind: 'caFloating', method: 'recursive', hashAlgo: 'sha256' }), MixedOutputKinds, /mixes output kinds: caFloating, deferred/);
    fails((d) => d.outputs.set('out', { kind: 'caFixed', method: 'flat', hash: hashBytes('sha256', '') }).set('dev', { kind: 'caFixed', method: 'flat', hash: hashBytes('sha256', '') }), BadFixedOutput, /only one fixed output/);
    fails((d) => (d.outputs = new Map([['dev', { kind: 'caFixed', method: 'flat', hash: hashBytes('sha256', '') }]])), BadFixedOutput, /must be named "out", not 'dev'/);
    fails((d) => d.outputs.set('out', { kind: 'inputAddressed', path: `${SD}/${'0'.repeat(32)}-x` }), OutputPathMismatch, /output 'out' is given path '\/nix\/store\/0{32}-x', but it is '\/nix\/store\/[0-9a-z]{32}-x'/);
    fails((d) => d.env.set('out', '/elsewhere'), OutputEnvMismatch, /env 'out' is '\/elsewhere', but it must be/);
    fails((d) => d.inputDrvs.set(pathOf('simple'), new Set(['nope'])), MissingInputOutput, /uses output 'nope' of '.*-simple\.drv', which has no such output/);
    fails((d) => d.inputDrvs.set(`${SD}/${'0'.repeat(32)}-gone.drv`, new Set(['out'])), MissingInputDerivation, /input derivation '.*-gone\.drv' of 'x' is not available/);
    fails((d) => d.inputSrcs.add('/tmp/x'), InvalidDerivation, /input source '\/tmp\/x' is not a store path/);
    fails((d) => d.outputs.set('a b', { kind: 'inputAddressed' }), InvalidDerivation, /output name 'a b' gives an invalid store path name/);
  });

  test('a deferred derivation must not be given paths', () => {
    const d = draftFromDerivation(drvOf('ca-user'));
    d.outputs.set('out', { kind: 'inputAddressed', path: `${SD}/${'0'.repeat(32)}-ca-user` });
    assert.throws(() => completeDerivation(d, { resolve }), (e: unknown) => e instanceof OutputPathMismatch && /not known until it is built/.test(e.message));
  });
});
