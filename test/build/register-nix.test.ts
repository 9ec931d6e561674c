// registerOutputs against Nix 2.8: the same outputs, written by hand at the
// same scratch paths as Nix's builders wrote them, must register under the
// same paths with the same NAR hashes, references and content addresses
// (CA floating with self-references and a sibling reference, CA flat, fixed),
// and each failure must give Nix's message and exit status
// (test/fixtures/build/failures.json).
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync } from 'node:fs';
import { parseDerivation } from '../../src/format/aterm.js';
import { formatHash } from '../../src/format/hash.js';
import { parseStorePath } from '../../src/format/store-path.js';
import { tempStore } from '../store/util.js';
import { drvFile, loadFailures, loadMeta, type FailureOutcome, type PrepareMeta } from './nix-fixtures.js';
import { readDrv } from './fixture-store.js';
import { addFixtureDeps, buildAndRegister, DEP, DEP2, planFor, type Tree } from './register-util.js';

let meta: PrepareMeta;
let failures: Record<string, FailureOutcome>;
before(() => {
  meta = loadMeta();
  failures = loadFailures();
});

const spaced = (s: string) => s.replace(/./g, '$& ');

describe('register: content-addressed outputs land where Nix puts them', () => {
  test('the fixture dependencies have Nix NAR hashes (sanity)', async (t) => {
    const { store } = await tempStore(t);
    const { dep, dep2 } = await addFixtureDeps(store);
    const byPath = new Map(meta.pathInfos.map((i) => [i.path, i]));
    assert.equal(dep, byPath.get(DEP)!.narHash);
    assert.equal(dep2, byPath.get(DEP2)!.narHash);
  });

  test('CA floating, two outputs: self-references, a sibling reference, a symlink to itself', async (t) => {
    const { store } = await tempStore(t);
    await addFixtureDeps(store);
    // Nix builds the resolved derivation (inputDrvs replaced by their outputs); it names the scratch paths.
    const drvPath = meta.registered['ca-self']!['out']!.deriver!;
    const drv = readDrv(drvPath);
    assert.equal(drv.inputDrvs.size, 0);
    const res = await buildAndRegister(
      store,
      drvPath,
      drv,
      (s) => ({
        out: {
          bin: { x: `self: ${s.out}\nagain ${s.out}/bin/x and ${s.dev}\n` },
          link: { link: `${s.out}/bin/x` },
          'scratch-spaced': spaced(s.out!),
        },
        dev: { info: `dev refers ${DEP} and ${s.dev}\n`, 'scratch-spaced': spaced(s.dev!) },
      }),
      { inputs: [DEP], needsHashRewrite: false },
    );
    for (const name of ['out', 'dev']) {
      const nix = meta.registered['ca-self']![name]!;
      const got = res.get(name)!;
      assert.equal(got.path, nix.path, `${name} path`);
      assert.equal(formatHash(got.info.narHash, 'sri'), nix.narHash, `${name} narHash`);
      assert.equal(got.info.narSize, nix.narSize);
      assert.deepEqual(got.info.references, nix.references);
      assert.equal(got.info.ca, nix.ca);
      assert.equal(got.info.deriver, drvPath);
      assert.equal(got.built, true);
      assert.ok(store.isValidPath(got.path));
    }
  });

  test('CA floating, flat', async (t) => {
    const { store } = await tempStore(t);
    const drvPath = meta.attrs['ca-flat']!;
    const res = await buildAndRegister(store, drvPath, readDrv(drvPath), () => ({ out: 'flat ca\n' }));
    const nix = meta.registered['ca-flat']!['out']!;
    const got = res.get('out')!;
    assert.deepEqual(
      [got.path, formatHash(got.info.narHash, 'sri'), got.info.narSize, got.info.ca, got.info.references],
      [nix.path, nix.narHash, nix.narSize, nix.ca, nix.references],
    );
  });

  test('fixed output', async (t) => {
    const { store } = await tempStore(t);
    const drvPath = meta.attrs['fixed']!;
    const res = await buildAndRegister(store, drvPath, readDrv(drvPath), () => ({ out: 'fixed\n' }));
    const nix = meta.registered['fixed']!['out']!;
    const got = res.get('out')!;
    assert.deepEqual(
      [got.path, formatHash(got.info.narHash, 'sri'), got.info.narSize, got.info.ca, got.info.references],
      [nix.path, nix.narHash, nix.narSize, nix.ca, nix.references],
    );
  });
});

/** Strips what differs between Nix's sandbox and a test store: the physical prefix of paths, continuation indentation. */
function normalise(s: string): string {
  return s.replace(/'[^']*?(\/nix\/store\/[0-9a-z]{32}-[^'/]+)'/g, "'$1'").replace(/\n\s+/g, '\n');
}

/** What each builder of failures.nix writes (scratch = final paths: Nix built in its sandbox). */
const OUTPUTS: Record<string, (s: Record<string, string>) => Record<string, Tree | null>> = {
  'allowed-references': () => ({ out: `${DEP}\n` }),
  'allowed-references-self': (s) => ({ out: `${s.out}\n` }),
  'allowed-references-ok': () => ({ out: `${DEP}\n` }),
  'allowed-requisites': () => ({ out: `${DEP2}\n` }),
  'allowed-requisites-self': (s) => ({ out: `${s.out} ${DEP}\n` }),
  'disallowed-references': () => ({ out: `${DEP} ${DEP2}\n` }),
  'disallowed-requisites': () => ({ out: `${DEP2}\n` }),
  'illegal-specifier': () => ({ out: `${DEP}\n` }),
  'output-name-specifier': (s) => ({ out: `${s.dev}\n`, dev: '\n' }),
  'structured-max-size': () => ({ out: '0123456789012345678901234567890123456789\n' }),
  'structured-max-closure-size': () => ({ out: `${DEP2}\n` }),
  'structured-requisites-self': (s) => ({ out: `${s.out} ${DEP}\n` }),
  cycle: (s) => ({ out: `${s.dev}\n`, dev: `${s.out}\n` }),
  missing: () => ({ out: '\n', dev: null }),
  'fixed-mismatch': () => ({ out: 'not-fixed\n' }),
  'ca-flat-dir': () => ({ out: {} }),
  'world-writable': () => ({ out: {} }),
};

describe('register: failures as Nix 2.8 reports them (message and exit status)', () => {
  for (const c of Object.keys(OUTPUTS)) {
    test(c, async (t) => {
      const f = failures[c]!;
      const { store } = await tempStore(t);
      await addFixtureDeps(store);
      const name = parseStorePath('/nix/store', f.drvPath).name.slice(0, -4);
      const drv = parseDerivation(drvFile(f.drvPath), name);
      const plan = planFor(store, f.drvPath, drv, { needsHashRewrite: false });
      if (c === 'world-writable') {
        mkdirSync(store.toRealPath(plan.outputs.get('out')!.scratchPath));
        chmodSync(store.toRealPath(plan.outputs.get('out')!.scratchPath), 0o777);
      }
      const { DerivationAttrs } = await import('../../src/build/structured-attrs.js');
      const attrs = DerivationAttrs.of(name, drv).structured;
      const run = buildAndRegister(store, f.drvPath, drv, c === 'world-writable' ? () => ({}) : OUTPUTS[c]!, {
        plan,
        inputs: [DEP, DEP2],
        structuredAttrs: attrs,
      });
      if (f.status === 0) {
        const res = await run;
        assert.ok([...res.values()].every((o) => store.isValidPath(o.path)));
        return;
      }
      await assert.rejects(run, (e: Error & { exitCode: number }) => {
        assert.equal(normalise('error: ' + e.message), normalise(f.error));
        assert.equal(e.exitCode, f.status);
        return true;
      });
      if (c === 'fixed-mismatch') {
        // Registered under its actual path first, as Nix does.
        const got = /got:\s+(sha256-\S+)/.exec(f.error)![1]!;
        const valid = store.queryAllValidPaths().filter((p) => p.endsWith('-fixed-mismatch'));
        assert.equal(valid.length, 1);
        assert.equal(store.queryPathInfo(valid[0]!)!.ca, `fixed:${formatHash({ algo: 'sha256', digest: Buffer.from(got.slice(7), 'base64') }, 'nix32')}`);
      } else {
        // Nothing of a rejected build is registered.
        for (const e of plan.outputs.values()) assert.equal(store.isValidPath(e.scratchPath), false);
      }
    });
  }
});
