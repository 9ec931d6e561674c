// Recursive builds without a sandbox: build dir names that keep the socket
// under the unix limit, the daemon's lifetime around an unsandboxed build
// (the builder is node with drvbox's client, on the host), the socket-length
// refusal, and which inner builds would reach the network.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildTargets } from '../../src/build/scheduler.js';
import { networkDerivationToBuild, recursiveBuildDirName, socketPathLimit, NIX_SOCKET_NAME } from '../../src/build/recursive.js';
import { hashBytes } from '../../src/format/hash.js';
import { REPO_ROOT } from '../helpers/host.js';
import { addDrv, realStore, Recorder, settings } from './engine-fixture.js';

const CLIENT = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'daemon', 'client.js')).href;

describe('recursive builds: the socket fits', () => {
  test('limits: 107 bytes on Linux, 103 on macOS (sun_path minus its NUL)', () => {
    assert.equal(socketPathLimit('linux'), 107);
    assert.equal(socketPathLimit('darwin'), 103);
  });

  test('the derivation name is kept when the socket fits, else cut so that the longest build dir still fits', () => {
    assert.equal(recursiveBuildDirName('/tmp', 'hello', 'linux'), 'hello');
    const parent = '/tmp/' + 'p'.repeat(40);
    // parent + "/nix-build-" + name + ".drv-99999" + "/.nix-socket" = 107 bytes
    const cut = recursiveBuildDirName(parent, 'x'.repeat(50), 'linux');
    assert.equal(cut, 'x'.repeat(29));
    assert.equal(Buffer.byteLength(`${parent}/nix-build-${cut}.drv-99999/${NIX_SOCKET_NAME}`), 107);
    assert.equal(recursiveBuildDirName(parent, 'x'.repeat(50), 'darwin'), 'x'.repeat(25));
    // no dangling separator, no split character
    assert.equal(recursiveBuildDirName(parent, 'x'.repeat(28) + '-yz', 'linux'), 'x'.repeat(28));
    assert.equal(recursiveBuildDirName(parent, 'x'.repeat(28) + 'é', 'linux'), 'x'.repeat(28));
    assert.equal(recursiveBuildDirName('/' + 'd'.repeat(100), 'hello', 'linux'), '');
  });
});

describe('recursive builds without a sandbox', () => {
  test('the builder talks to its daemon on NIX_REMOTE (socket 0600 in the build dir), adds and builds; $out refers to both; the daemon is gone afterwards', async (t) => {
    const { store, buildDir } = await realStore(t);
    const inner = await addDrv(store, { name: 'inner', script: 'echo inner > $out' });
    const innerText = readFileSync(store.toRealPath(inner.drvPath), 'utf8');
    // the .drv exists already: the builder adds it again (as nix-build would); it joins the view
    const script = `
const { connectDaemon } = await import(${JSON.stringify(CLIENT)});
const { statSync, writeFileSync, readFileSync } = await import('node:fs');
const remote = process.env.NIX_REMOTE;
const socketPath = remote.slice('unix://'.length);
const st = statSync(socketPath);
const c = await connectDaemon({ socketPath }, { storeDir: ${JSON.stringify(store.storeDir)} });
const note = await c.addTextToStore('note', 'a note\\n');
const drvPath = await c.addTextToStore('inner.drv', ${JSON.stringify(innerText)}, []);
const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath, outputs: ['out'] }]);
const innerOut = r.builtOutputs[0].outPath;
await c.close();
writeFileSync(process.env.out, [remote, (st.mode & 0o777).toString(8), st.isSocket(), st.uid, note, innerOut, readFileSync(innerOut, 'utf8')].join('\\n'));
`;
    const outer = await addDrv(store, {
      name: 'outer',
      builder: process.execPath,
      args: ['--input-type=module', '-e', script],
      env: { requiredSystemFeatures: 'recursive-nix' },
    });
    const rec = new Recorder();
    const r = await buildTargets([{ arg: outer.drvPath, drvPath: outer.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir, { systemFeatures: ['recursive-nix'] }),
      mode: 'normal',
      keepGoing: false,
      reporter: rec,
    });
    assert.equal(r.exitCode, 0, `${rec.finished_.map((f) => f.error?.message).join('\n')}\n${[...rec.output.values()].join('')}`);
    const out = r.targets[0]!.outputs.get('out')!;
    const [remote, mode, isSocket, uid, note, innerOut, innerText2] = readFileSync(out, 'utf8').split('\n');
    assert.equal(remote, `unix://${join(buildDir, 'nix-build-outer.drv-0', NIX_SOCKET_NAME)}`);
    assert.deepEqual([mode, isSocket, uid], ['600', 'true', String(process.getuid?.() ?? 0)]);
    assert.equal(innerOut, inner.drv.env.get('out'));
    assert.equal(innerText2, 'inner');
    assert.match(note!, /^\/.*-note$/);
    // registration scanned the outputs for the paths added during the build
    assert.deepEqual(store.requirePathInfo(out).references, [innerOut!, note!].sort());
    assert.deepEqual(readdirSync(buildDir), [], 'build dir and socket removed');
    assert.equal(existsSync(remote!.slice('unix://'.length)), false);
  });

  test('a build dir too deep for the socket as the unsandboxed builder sees it: refused, saying so', async (t) => {
    const { store, buildDir } = await realStore(t);
    const deep = join(buildDir, 'd'.repeat(Math.max(1, 110 - buildDir.length)));
    mkdirSync(deep);
    const d = await addDrv(store, { name: 'deep', env: { requiredSystemFeatures: 'recursive-nix' }, script: 'echo > $out' });
    const rec = new Recorder();
    const r = await buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
      store,
      settings: settings(deep, { systemFeatures: ['recursive-nix'] }),
      mode: 'normal',
      keepGoing: false,
      reporter: rec,
    });
    assert.equal(r.exitCode, 1);
    const socket = join(deep, 'nix-build-.drv-0', NIX_SOCKET_NAME);
    assert.equal(
      rec.finished_[0]!.error!.message,
      `cannot build '${d.drvPath}' with recursive-nix: the daemon socket '${socket}' has ${Buffer.byteLength(socket)} bytes, ` +
        `more than the ${socketPathLimit()} unix sockets allow on ${process.platform}; set 'build-dir' (or TMPDIR) to a shorter directory`,
    );
    assert.deepEqual(readdirSync(deep), []);
  });

  test('without recursive-nix in system-features the derivation is refused before any daemon starts', async (t) => {
    const { store, buildDir } = await realStore(t);
    const d = await addDrv(store, { name: 'wants', env: { requiredSystemFeatures: 'recursive-nix' }, script: 'echo > $out' });
    const rec = new Recorder();
    const r = await buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: rec,
    });
    assert.equal(r.exitCode, 1);
    assert.match(rec.finished_[0]!.error!.message, /^a 'x86_64-linux' with features \{recursive-nix\} is required to build '.*-wants\.drv', but I am a 'x86_64-linux' with features \{big-parallel, kvm\}$/);
    assert.deepEqual(readdirSync(buildDir), []);
  });
});

describe('recursive builds: inner builds that would reach the network', () => {
  test('a fixed-output derivation anywhere below the target, until its output is valid', async (t) => {
    const { store, buildDir } = await realStore(t);
    const fod = await addDrv(store, {
      name: 'fod',
      script: 'echo x > $out',
      outputs: new Map([['out', { kind: 'caFixed', method: 'flat', hash: hashBytes('sha256', 'x\n') }]]),
    });
    const fodOut = fod.drv.env.get('out')!;
    const user = await addDrv(store, { name: 'user', script: 'cat $fod > $out', env: { fod: fodOut }, inputDrvs: { [fod.drvPath]: ['out'] } });
    const plain = await addDrv(store, { name: 'plain', script: 'echo > $out' });
    assert.equal(networkDerivationToBuild(store, fod.drvPath), fod.drvPath);
    assert.equal(networkDerivationToBuild(store, user.drvPath), fod.drvPath);
    assert.equal(networkDerivationToBuild(store, plain.drvPath), null);
    const r = await buildTargets([{ arg: fod.drvPath, drvPath: fod.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: new Recorder(),
    });
    assert.equal(r.exitCode, 0);
    // built already: nothing would run with the network
    assert.equal(networkDerivationToBuild(store, user.drvPath), null);
    assert.equal(networkDerivationToBuild(store, fod.drvPath), null);
  });
});
