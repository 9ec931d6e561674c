// exportReferencesGraph: the legacy parser's checks, the two file formats,
// and Nix's closure rule (input closure only; derivations bring their
// outputs) against a drvbox store holding Nix's fixture paths. The bytes of
// whole files are compared with Nix's in desugar.test.ts.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { hashBytes } from '../../src/format/hash.js';
import {
  closureInfosFromStore,
  closureJson,
  parseLegacyExportReferencesGraph,
  registrationText,
} from '../../src/build/export-references-graph.js';
import { dumpJson } from '../../src/build/structured-attrs.js';
import { tempStore } from '../store/util.js';
import { fixtureStore } from './fixture-store.js';
import { loadMeta, type PrepareMeta } from './nix-fixtures.js';

const SD = '/nix/store';
const P1 = '/nix/store/11111111111111111111111111111111-one';
const P2 = '/nix/store/22222222222222222222222222222222-two';

let meta: PrepareMeta;
before(() => {
  meta = loadMeta();
});

describe('legacy form', () => {
  test('pairs; a path inside a store path names that store path', () => {
    assert.deepEqual(parseLegacyExportReferencesGraph(SD, ` a ${P1}\n\tb_2.x-y ${P2}/bin/sh `), [
      { fileName: 'a', storePath: P1 },
      { fileName: 'b_2.x-y', storePath: P2 },
    ]);
    assert.deepEqual(parseLegacyExportReferencesGraph(SD, ''), []);
  });

  test('errors, with Nix messages and exit codes', () => {
    assert.throws(() => parseLegacyExportReferencesGraph(SD, `a ${P1} b`), {
      message: `odd number of tokens in 'exportReferencesGraph': 'a ${P1} b'`,
      exitCode: 100,
    });
    for (const bad of ['1a', '.hidden', 'a/b', 'a b'.split(' ')[0] + '$']) {
      assert.throws(() => parseLegacyExportReferencesGraph(SD, `${bad} ${P1}`), { message: `invalid file name '${bad}' in 'exportReferencesGraph'`, exitCode: 1 });
    }
    assert.throws(() => parseLegacyExportReferencesGraph(SD, 'x /etc/passwd'), {
      message: "'exportReferencesGraph' contains a non-store path '/etc/passwd'",
      exitCode: 100,
    });
    assert.throws(() => parseLegacyExportReferencesGraph(SD, 'x /nix/store'), { exitCode: 100 });
    assert.throws(() => parseLegacyExportReferencesGraph(SD, 'x /nix/store/not-a-store-path'), { name: 'BadStorePath' });
  });
});

describe('file formats', () => {
  const infos = [
    { path: P2, narHash: hashBytes('sha256', 'b'), narSize: 200, references: [P1, P2] },
    { path: P1, narHash: hashBytes('sha256', 'a'), narSize: 100, references: [], ca: 'fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s' },
  ];
  test('registration text: sorted, empty deriver, reference count, sorted references', () => {
    assert.equal(registrationText(infos), `${P1}\n\n0\n${P2}\n\n2\n${P1}\n${P2}\n`);
  });
  test('closure JSON: closure sizes, nix32 hashes, ca first', () => {
    assert.equal(
      dumpJson(closureJson(infos)),
      // nix-hash --type sha256 --to-base32 of sha256("a") and sha256("b")
      `[{"ca":"fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s","closureSize":100,"narHash":"sha256:1fs8xspqaxw0p5r4wz0lz3pqd9sdvhirmcriqbxcmg8vr89835ya","narSize":100,"path":"${P1}","references":[]},` +
        `{"closureSize":300,"narHash":"sha256:1780kkasxvkkrd52rm4801xbv2rln7hn8ragi4rlln9r00bfh8ry","narSize":200,"path":"${P2}","references":["${P1}","${P2}"]}]`,
    );
  });
});

describe("closure rule (Nix's exportReferences)", () => {
  test('a derivation in the closure brings the closures of its outputs', async (t) => {
    const store = await fixtureStore(t, meta);
    const big = meta.attrs['big']!;
    const inputs = store.computeClosure([big]);
    const paths = closureInfosFromStore(store, inputs)([big]).map((i) => i.path);
    const expected = new Set([...store.computeClosure([big])]);
    for (const d of [...expected]) {
      if (!d.endsWith('.drv')) continue;
      for (const o of Object.values(meta.drvOutputs[d]!)) for (const p of store.computeClosure([o])) expected.add(p);
    }
    assert.deepEqual(paths, [...expected].sort());
    assert.ok(paths.includes('/nix/store/z4asv3j07d89ywjf8fxkn7sg6mf5s9q5-dep'));
  });

  test('a path outside the input closure is refused', async (t) => {
    const store = await fixtureStore(t, meta);
    const dep = '/nix/store/z4asv3j07d89ywjf8fxkn7sg6mf5s9q5-dep';
    assert.throws(() => closureInfosFromStore(store, new Set())([dep]), {
      message: `cannot export references of path '${dep}' because it is not in the input closure of the derivation`,
      exitCode: 100,
    });
  });

  test('a CA floating derivation in the closure cannot be exported', async (t) => {
    const { store } = await tempStore(t);
    const { writeFileSync } = await import('node:fs');
    const { printDerivation } = await import('../../src/format/aterm.js');
    const { completeDerivation } = await import('../../src/format/hash-modulo.js');
    const { hashPlaceholder } = await import('../../src/format/store-path.js');
    const done = completeDerivation(
      {
        name: 'ca',
        outputs: new Map([['out', { kind: 'caFloating', method: 'recursive', hashAlgo: 'sha256' }]]),
        inputDrvs: new Map(),
        inputSrcs: new Set(),
        platform: 'x86_64-linux',
        builder: '/bin/sh',
        args: [],
        env: new Map([['out', hashPlaceholder('out')]]),
      },
      { storeDir: SD, resolve: () => undefined },
    );
    const text = printDerivation(done.drv);
    writeFileSync(store.toRealPath(done.drvPath), text);
    const { hashPath } = await import('../../src/store/nar-fs.js');
    const { hash, narSize } = await hashPath(store.toRealPath(done.drvPath));
    store.registerValidPaths([{ path: done.drvPath, narHash: hash, narSize, references: [] }], { checkOutputs: false });
    assert.throws(() => closureInfosFromStore(store, new Set([done.drvPath]))([done.drvPath]), {
      message: 'exportReferences on CA derivations is not yet implemented',
    });
  });
});
