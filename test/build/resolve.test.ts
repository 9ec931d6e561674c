// Content-addressed derivations: floating outputs get their path after the
// build; a derivation depending on one is deferred, resolved once its input
// is built (placeholders replaced by real paths) and built as the resolved
// derivation, whose outputs are recorded as realisations of the original.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { DraftOutput } from '../../src/format/derivation.js';
import { derivationType } from '../../src/format/derivation.js';
import { staticOutputHashes } from '../../src/format/hash-modulo.js';
import { downstreamPlaceholder, hashPlaceholder } from '../../src/format/store-path.js';
import { needsResolution, resolveDerivation } from '../../src/build/resolve.js';
import { rewriteStrings } from '../../src/build/output-plan.js';
import { buildTargets } from '../../src/build/scheduler.js';
import { addDrv, Recorder, realStore, settings } from './engine-fixture.js';

const CA = new Map<string, DraftOutput>([['out', { kind: 'caFloating', method: 'recursive', hashAlgo: 'sha256' }]]);

describe('CA derivations and resolution', () => {
  test('a floating output is built at a fallback path and registered at its content address, with a realisation', async (t) => {
    const { store, buildDir } = await realStore(t);
    const ca = await addDrv(store, { name: 'ca', outputs: CA, script: 'echo "self: $out" > $out' });
    assert.equal(ca.drv.env.get('out'), hashPlaceholder('out'));
    const r = await buildTargets([{ arg: ca.drvPath, drvPath: ca.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: new Recorder(),
    });
    assert.equal(r.exitCode, 0);
    const out = r.targets[0]!.outputs.get('out')!;
    assert.match(out, /-ca$/);
    // The builder wrote its scratch path; registration rewrote it to the final one.
    assert.equal(readFileSync(store.toRealPath(out), 'utf8'), `self: ${out}\n`);
    const h = staticOutputHashes(ca.drv, { storeDir: store.storeDir, resolve: (p) => store.readDerivation(p) }).get('out')!;
    assert.equal(store.queryRealisation({ drvHash: h, outputName: 'out' })?.outPath, out);
    assert.equal(store.queryPartialDerivationOutputMap(ca.drvPath).get('out'), out);
  });

  test('a derivation using a floating output is deferred, resolved and built; realisations name the original', async (t) => {
    const { store, buildDir } = await realStore(t);
    const ca = await addDrv(store, { name: 'ca', outputs: CA, script: 'echo content > $out' });
    const placeholder = downstreamPlaceholder(store.storeDir, ca.drvPath, 'out');
    const user = await addDrv(store, {
      name: 'user',
      env: { dep: placeholder },
      script: 'read x < $dep; echo "$x via $dep" > $out',
      inputDrvs: { [ca.drvPath]: ['out'] },
    });
    assert.equal(derivationType(user.drv), 'deferred');
    assert.equal(needsResolution(user.drv), true);
    assert.equal(needsResolution(ca.drv), false);
    const rec = new Recorder();
    const r = await buildTargets([{ arg: user.drvPath, drvPath: user.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: rec,
    });
    assert.equal(r.exitCode, 0, rec.finished_.map((f) => f.error?.message).join('\n'));
    const caOut = store.queryPartialDerivationOutputMap(ca.drvPath).get('out')!;
    const resolved = resolveDerivation(store, user.drvPath, user.drv, rewriteStrings);
    assert.equal(resolved.drv.env.get('dep'), caOut);
    assert.deepEqual([...resolved.drv.inputSrcs], [caOut]);
    assert.equal(resolved.drv.inputDrvs.size, 0);
    const out = resolved.drv.env.get('out')!;
    assert.equal(r.targets[0]!.outputs.get('out'), out);
    assert.equal(readFileSync(store.toRealPath(out), 'utf8'), `content via ${caOut}\n`);
    assert.ok(store.isValidPath(resolved.drvPath));
    assert.ok(rec.messages.includes(`resolved derivation: '${user.drvPath}' -> '${resolved.drvPath}'`));
    assert.deepEqual(store.requirePathInfo(out).references, [caOut]);
    // A second run finds everything through the realisation.
    const again = await buildTargets([{ arg: user.drvPath, drvPath: user.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: new Recorder(),
    });
    assert.equal(again.targets[0]!.status, 'valid');
  });
});
