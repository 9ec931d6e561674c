// planOutputs: scratch paths per mode and backend, Nix's fallback paths
// (checked against the scratch paths Nix 2.8 used: a CA floating build writes
// its fallback path, and the final path it registered depends on it — see
// register-nix.test.ts — plus a fixed vector here), input rewrites, and
// rewriteStrings.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { Derivation } from '../../src/format/derivation.js';
import { hashBytes } from '../../src/format/hash.js';
import { hashPlaceholder, makeFixedOutputPath, makeStorePath } from '../../src/format/store-path.js';
import { makeFallbackPath, makeFallbackPathFor, planOutputs, rewriteStrings, scratchPathsToClear } from '../../src/build/output-plan.js';
import { loadMeta } from './nix-fixtures.js';

const SD = '/nix/store';
const DRV = '/nix/store/xhwazw4zrwswn060r8hv5xkcrhzyz5b0-big-ca.drv';
const OUT = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-thing';
const DEV = '/nix/store/cccccccccccccccccccccccccccccccc-thing-dev';
const ZERO = { algo: 'sha256' as const, digest: new Uint8Array(32) };

function drv(outputs: Derivation['outputs'], name = 'thing'): Derivation {
  return { name, outputs, inputDrvs: new Map(), inputSrcs: new Set(), platform: 'x86_64-linux', builder: '/bin/sh', args: [], env: new Map() };
}
const ia = (path: string) => ({ kind: 'inputAddressed' as const, path });

describe('fallback paths', () => {
  test('the scratch paths Nix 2.8 gave a CA floating build (test/fixtures/build: ca-self)', () => {
    const meta = loadMeta();
    const drvPath = meta.registered['ca-self']!['out']!.deriver!;
    assert.deepEqual(meta.caSelfScratch, {
      out: makeFallbackPath(SD, drvPath, 'ca-self', 'out'),
      dev: makeFallbackPath(SD, drvPath, 'ca-self', 'dev'),
    });
  });

  test('the fingerprints of Nix makeFallbackPath (zero sha256 inner hash)', () => {
    assert.equal(makeFallbackPath(SD, DRV, 'big-ca', 'dev'), makeStorePath(SD, 'rewrite:xhwazw4zrwswn060r8hv5xkcrhzyz5b0-big-ca.drv:name:dev', ZERO, 'big-ca-dev'));
    assert.equal(
      makeFallbackPathFor(SD, DRV, OUT),
      makeStorePath(SD, 'rewrite:xhwazw4zrwswn060r8hv5xkcrhzyz5b0-big-ca.drv:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-thing', ZERO, 'thing'),
    );
  });
});

describe('planOutputs', () => {
  const two = drv(new Map([['out', ia(OUT)], ['dev', ia(DEV)]]));
  const plan = (d: Derivation, o: { needsHashRewrite: boolean; mode?: 'normal' | 'check' | 'repair'; exists?: string[]; valid?: string[] }) =>
    planOutputs({
      storeDir: SD,
      drvPath: DRV,
      drv: d,
      needsHashRewrite: o.needsHashRewrite,
      mode: o.mode ?? 'normal',
      pathExists: (p) => (o.exists ?? []).includes(p) || (o.valid ?? []).includes(p),
      isValid: (p) => (o.valid ?? []).includes(p),
    });

  test('nothing exists: final paths, only placeholder rewrites', () => {
    const p = plan(two, { needsHashRewrite: true });
    assert.equal(p.outputs.get('out')!.scratchPath, OUT);
    assert.equal(p.outputs.get('dev')!.scratchPath, DEV);
    assert.deepEqual(
      [...p.inputRewrites],
      [
        [hashPlaceholder('dev'), DEV],
        [hashPlaceholder('out'), OUT],
      ],
    );
    assert.deepEqual(p.outputs.get('out'), { name: 'out', kind: 'inputAddressed', finalPath: OUT, scratchPath: OUT });
  });

  test('a valid sibling with hash rewriting: it goes to its fallback path, its hash part is rewritten', () => {
    const p = plan(two, { needsHashRewrite: true, valid: [OUT] });
    const fb = makeFallbackPathFor(SD, DRV, OUT);
    assert.equal(p.outputs.get('out')!.scratchPath, fb);
    assert.equal(p.outputs.get('dev')!.scratchPath, DEV);
    assert.equal(p.inputRewrites.get(hashPlaceholder('out')), fb);
    assert.equal(p.inputRewrites.get('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'), fb.slice(11, 43));
  });

  test('a sandbox with its own store dir never rewrites, whatever exists', () => {
    for (const mode of ['normal', 'check', 'repair'] as const) {
      const p = plan(two, { needsHashRewrite: false, mode, valid: [OUT, DEV] });
      assert.equal(p.outputs.get('out')!.scratchPath, OUT, mode);
      assert.equal(p.inputRewrites.size, 2);
    }
  });

  test('present but invalid: final path (deleted before the build), except in repair mode', () => {
    assert.equal(plan(two, { needsHashRewrite: true, exists: [OUT] }).outputs.get('out')!.scratchPath, OUT);
    assert.equal(plan(two, { needsHashRewrite: true, mode: 'repair', exists: [OUT] }).outputs.get('out')!.scratchPath, makeFallbackPathFor(SD, DRV, OUT));
  });

  test('check and repair of valid outputs use fallback paths', () => {
    for (const mode of ['check', 'repair'] as const) {
      const p = plan(two, { needsHashRewrite: true, mode, valid: [OUT, DEV] });
      assert.equal(p.outputs.get('out')!.scratchPath, makeFallbackPathFor(SD, DRV, OUT));
      assert.equal(p.outputs.get('dev')!.scratchPath, makeFallbackPathFor(SD, DRV, DEV));
    }
  });

  test('CA floating and impure: always a fresh fallback; fixed: its computed path', () => {
    const hash = hashBytes('sha256', 'x');
    const p = plan(
      drv(new Map([['out', { kind: 'caFloating', method: 'recursive', hashAlgo: 'sha256' }]]), 'ca'),
      { needsHashRewrite: false },
    );
    assert.deepEqual(p.outputs.get('out'), { name: 'out', kind: 'caFloating', finalPath: null, scratchPath: makeFallbackPath(SD, DRV, 'ca', 'out') });
    const i = plan(drv(new Map([['out', { kind: 'impure', method: 'recursive', hashAlgo: 'sha256' }]]), 'imp'), { needsHashRewrite: true });
    assert.equal(i.outputs.get('out')!.scratchPath, makeFallbackPath(SD, DRV, 'imp', 'out'));
    const f = plan(drv(new Map([['out', { kind: 'caFixed', method: 'flat', hash }]]), 'fod'), { needsHashRewrite: true });
    assert.equal(f.outputs.get('out')!.finalPath, makeFixedOutputPath(SD, 'flat', hash, 'fod'));
    assert.equal(f.outputs.get('out')!.scratchPath, makeFixedOutputPath(SD, 'flat', hash, 'fod'));
  });

  test('scratchPathsToClear: fallbacks and invalid finals, never a valid path', () => {
    const p = plan(two, { needsHashRewrite: true, valid: [OUT] });
    assert.deepEqual(scratchPathsToClear(p, (x) => x === OUT).sort(), [DEV, makeFallbackPathFor(SD, DRV, OUT)].sort());
    const s = plan(two, { needsHashRewrite: false, valid: [OUT] });
    assert.deepEqual(scratchPathsToClear(s, (x) => x === OUT), [DEV]);
  });
});

describe('rewriteStrings (Nix semantics)', () => {
  test('keys in byte order, all occurrences, longer replacements', () => {
    const m = new Map([
      ['/ph', '/nix/store/aaa-x'],
      ['aaa', 'bbb'],
    ]);
    // '/ph' sorts before 'aaa': the placeholder is replaced first, then the hash part inside it.
    assert.equal(rewriteStrings('/ph and /ph/bin aaa', m), '/nix/store/bbb-x and /nix/store/bbb-x/bin bbb');
    assert.equal(rewriteStrings('xyz', new Map()), 'xyz');
    assert.equal(rewriteStrings('aa', new Map([['a', 'aa']])), 'aaaa');
  });
});
