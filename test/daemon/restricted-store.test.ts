import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { narOfFile } from '../../src/daemon/client.js';
import { BuildStatus } from '../../src/daemon/protocol.js';
import { RestrictedStore } from '../../src/daemon/restricted-store.js';
import { hashBytes } from '../../src/format/hash.js';
import type { OpContext } from '../../src/daemon/store-api.js';
import { FakeStore } from './fake-store.js';
import { startServer } from './helpers.js';

const S = '/nix/store';
const OUT = `${S}/7rjj86a15146cq3d4dyj6f3yxgbgq3dd-x`;
const FOD_OUT = `${S}/8rjj86a15146cq3d4dyj6f3yxgbgq3dd-fod`;
const DRV = `Derive([("out","${OUT}","","")],[],[],"x86_64-linux","/bin/sh",[],[])`;
const FOD = `Derive([("out","${FOD_OUT}","sha256","${'0'.repeat(64)}")],[],[],"x86_64-linux","/bin/sh",[],[])`;

const ctx = { trusted: true, signal: new AbortController().signal, log() {}, startActivity: () => 0n, stopActivity() {}, result() {} } as unknown as OpContext;

async function setup(t: TestContext, allowFixedOutputBuilds = false) {
  const real = new FakeStore();
  const input = (await real.addToStore({ name: 'input', method: { kind: 'text' }, references: [], repair: false }, (async function* () {
    yield Buffer.from('input');
  })(), ctx)).path;
  const outside = (await real.addToStore({ name: 'outside', method: { kind: 'text' }, references: [], repair: false }, (async function* () {
    yield Buffer.from('outside');
  })(), ctx)).path;
  const made: string[] = [];
  const restricted = new RestrictedStore({
    next: real,
    inputPaths: [input],
    addDependency: async (p) => void made.push(p),
    isFixedOutput: async (drv) => (real.drvText.get(drv) ?? '').includes('"sha256"'),
    allowFixedOutputBuilds,
  });
  const s = await startServer(t, { store: restricted as unknown as FakeStore, recursive: true });
  const c = await s.connect();
  return { real, restricted, input, outside, made, c };
}

describe('restricted store behind the recursive daemon', () => {
  test('only the input closure and added paths are visible; path info is censored', async (t) => {
    const { input, outside, c, real } = await setup(t);
    assert.equal(await c.isValidPath(input), true);
    assert.equal(await c.isValidPath(outside), false);
    assert.equal(await c.queryPathInfo(outside), null);
    assert.deepEqual(await c.queryValidPaths([input, outside]), [input]);
    assert.deepEqual(await c.queryAllValidPaths(), [input]);
    const info = (await c.queryPathInfo(input))!;
    assert.equal(real.paths.get(input)!.info.ultimate, true);
    assert.deepEqual({ deriver: info.deriver, registrationTime: info.registrationTime, ultimate: info.ultimate, sigs: info.sigs }, { deriver: null, registrationTime: 0, ultimate: false, sigs: [] });
    assert.deepEqual(await c.queryReferrers(input), []);
  });

  test('forbidden operations fail with the seed messages', async (t) => {
    const { outside, c } = await setup(t);
    await assert.rejects(c.narFromPath(outside, () => undefined), new RegExp(`^DaemonError: cannot dump unknown path '${outside}' in recursive Nix$`));
    await assert.rejects(c.ensurePath(outside), new RegExp(`cannot substitute unknown path '${outside}' in recursive Nix`));
    await assert.rejects(c.queryDerivationOutputMap(outside), new RegExp(`cannot query output map for unknown path '${outside}' in recursive Nix`));
    await assert.rejects(c.buildPaths([{ kind: 'opaque', path: outside }]), new RegExp(`cannot build '${outside}' in recursive Nix because path is unknown`));
    await assert.rejects(c.buildPaths([{ kind: 'built', drvPath: `${outside}.drv`, outputs: ['out'] }]), /cannot build '.*-outside\.drv!out' in recursive Nix because path is unknown/);
    const m = await c.queryMissing([{ kind: 'opaque', path: outside }]);
    assert.deepEqual(m.unknown, [outside]);
    await assert.rejects(c.queryPathFromHashPart(outside.slice(11, 43)), /is not allowed in recursive Nix/);
    await assert.rejects(
      c.registerDrvOutput({ id: `sha256:${'a'.repeat(64)}!out`, outPath: outside, signatures: [], dependentRealisations: {} }),
      /registering realisation .* is not allowed in recursive Nix/,
    );
    // GC is a no-op
    await c.addTempRoot(outside);
    assert.deepEqual(await c.findRoots(), []);
  });

  test('added and built paths join the view and are materialised once', async (t) => {
    const { c, made, restricted } = await setup(t);
    const drv = await c.addTextToStore('x.drv', DRV);
    assert.deepEqual(made, [drv]);
    const nar = narOfFile(Buffer.from('nar'));
    const p = `${S}/00000000000000000000000000000003-imp`;
    await c.addToStoreNar({ path: p, deriver: null, narHash: hashBytes('sha256', nar), references: [], registrationTime: 0, narSize: nar.length, ultimate: false, sigs: [], ca: null }, nar);
    const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath: drv, outputs: ['out'] }]);
    assert.equal(r!.status, BuildStatus.Built);
    assert.deepEqual(made, [drv, p, OUT]);
    assert.equal(await c.isValidPath(OUT), true);
    assert.deepEqual([...restricted.addedPaths], [drv, p, OUT]);
    // adding an already visible path again is not an error and not materialised twice
    assert.equal(await c.addTextToStore('x.drv', DRV), drv);
    assert.deepEqual(made, [drv, p, OUT]);
    await assert.rejects(c.buildPaths([{ kind: 'built', drvPath: drv, outputs: ['out'] }], 2), /build mode check is not supported in recursive Nix/);
  });

  test('fixed-output derivations are refused unless the setting allows them', async (t) => {
    const { c } = await setup(t);
    const fod = await c.addTextToStore('fod.drv', FOD);
    await assert.rejects(
      c.buildPaths([{ kind: 'built', drvPath: fod, outputs: ['out'] }]),
      /cannot build fixed-output derivation '.*-fod\.drv' in recursive Nix: it could reach the network from inside the sandbox \(set 'recursive-nix-allow-fixed-output = true' to allow it\)/,
    );
    const allowed = await setup(t, true);
    const fod2 = await allowed.c.addTextToStore('fod.drv', FOD);
    await allowed.c.buildPaths([{ kind: 'built', drvPath: fod2, outputs: ['out'] }]);
    assert.equal(await allowed.c.isValidPath(FOD_OUT), true);
  });
});
