// The recursive-build daemon driven directly (no build around it): one
// materialisation per path however many connections add it, stop() ends
// live connections and removes the socket, ownership for build users, and
// the restricted store's refusal of a network derivation below a target.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import type { TestContext } from 'node:test';
import { createRecursiveHook, socketPathLimit, type RecursiveSession } from '../../src/build/recursive.js';
import type { RecursiveSessionHandle } from '../../src/build/goal.js';
import { connectDaemon } from '../../src/daemon/client.js';
import { RestrictedStore } from '../../src/daemon/restricted-store.js';
import { addTextToStore } from '../../src/store/add.js';
import { realStore, settings } from '../build/engine-fixture.js';
import { FakeStore } from './fake-store.js';
import { startServer, waitFor } from './helpers.js';

async function startSession(t: TestContext, opts: { addPathDelayMs?: number; buildDirSandbox?: string } = {}) {
  const { store, dir } = await realStore(t);
  const input = await addTextToStore(store, 'input', 'input\n', []);
  const buildDirHost = join(dir, 'b');
  mkdirSync(buildDirHost, { mode: 0o700 });
  const materialised: string[] = [];
  let session: RecursiveSession | null = null;
  const hook = createRecursiveHook({ store, settings: settings(join(dir, 'tmp')), onSession: (s) => (session = s) });
  const handle: RecursiveSessionHandle = await hook.start({
    drvPath: `${store.storeDir}/00000000000000000000000000000000-outer.drv`,
    drv: { name: 'outer', outputs: new Map(), inputDrvs: new Map(), inputSrcs: new Set(), platform: 'x86_64-linux', builder: '/bin/sh', args: [], env: new Map() },
    buildDirHost,
    buildDirSandbox: opts.buildDirSandbox ?? buildDirHost,
    inputClosure: new Set([input]),
    addPath: async (p) => {
      materialised.push(p);
      if (opts.addPathDelayMs) await new Promise((r) => setTimeout(r, opts.addPathDelayMs));
    },
  });
  t.after(() => handle.stop());
  const socketPath = join(buildDirHost, '.nix-socket');
  return { store, input, handle, session: session!, materialised, socketPath, connect: () => connectDaemon({ socketPath }, { storeDir: store.storeDir }) };
}

describe('the recursive-build daemon', () => {
  test('NIX_REMOTE names the socket as the builder sees it; the socket is 0600', async (t) => {
    const s = await startSession(t);
    assert.deepEqual(s.handle.env, { NIX_REMOTE: `unix://${s.socketPath}` });
    assert.equal(s.handle.socketHost, s.socketPath);
    const st = statSync(s.socketPath);
    assert.equal(st.isSocket(), true);
    assert.equal(st.mode & 0o777, 0o600);
  });

  test('a path added by many connections at once is materialised once, and only paths outside the input closure', async (t) => {
    const s = await startSession(t, { addPathDelayMs: 50 });
    const clients = await Promise.all(Array.from({ length: 5 }, () => s.connect()));
    const paths = await Promise.all(clients.map((c) => c.addTextToStore('same', 'same text\n')));
    assert.equal(new Set(paths).size, 1);
    assert.deepEqual(s.materialised, [paths[0]]);
    // the input is visible already: adding its content again materialises nothing
    assert.equal(await clients[0]!.addTextToStore('input', 'input\n'), s.input);
    assert.deepEqual(s.materialised, [paths[0]]);
    assert.deepEqual([...s.session.addedPaths], [paths[0]]);
    for (const c of clients) await c.close();
  });

  test('stop() ends live connections, removes the socket and is idempotent', async (t) => {
    const s = await startSession(t);
    const c = await s.connect();
    assert.equal(await c.isValidPath(s.input), true);
    await s.handle.stop();
    await s.handle.stop();
    assert.equal(s.session.stopped, true);
    assert.equal(existsSync(s.socketPath), false);
    await assert.rejects(c.isValidPath(s.input));
    await c.close().catch(() => undefined);
    const refused = await new Promise<string>((resolve) => {
      const sock = createConnection(s.socketPath);
      sock.on('connect', () => resolve('connected'));
      sock.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    assert.equal(refused, 'ENOENT');
    assert.equal(s.session.server.stats.active, 0);
  });

  test('chownToBuilder gives the socket to the build user', async (t) => {
    const s = await startSession(t);
    const root = process.getuid?.() === 0;
    const [uid, gid] = root ? [30001, 30001] : [process.getuid!(), process.getgid!()];
    s.handle.chownToBuilder!(uid, gid);
    const st = statSync(s.socketPath);
    assert.deepEqual([st.uid, st.gid], [uid, gid]);
  });

  test('a socket path too long as the builder sees it is refused before listening', async (t) => {
    const long = '/' + 'b'.repeat(100);
    await assert.rejects(startSession(t, { buildDirSandbox: long }), (e: Error) => {
      assert.equal((e as { code?: string }).code, 'E_RECURSIVE_SOCKET_PATH_TOO_LONG');
      assert.match(e.message, new RegExp(`the daemon socket '${long}/\\.nix-socket' has 113 bytes, more than the ${socketPathLimit()} unix sockets allow on ${process.platform}`));
      return true;
    });
  });
});

describe('restricted store: network derivations below a target', () => {

  test('refused with the derivation that would reach the network and the target that needs it', async (t) => {
    const real = new FakeStore();
    const made: string[] = [];
    const restricted = new RestrictedStore({
      next: real,
      inputPaths: [],
      addDependency: async (p) => void made.push(p),
      fixedOutputToBuild: async (drv) => (drv.endsWith('-user.drv') ? '/nix/store/11111111111111111111111111111111-fetch.drv' : null),
    });
    const s = await startServer(t, { store: restricted as unknown as FakeStore, recursive: true });
    const c = await s.connect();
    const drv = await c.addTextToStore('user.drv', `Derive([("out","/nix/store/7rjj86a15146cq3d4dyj6f3yxgbgq3dd-user","","")],[],[],"x86_64-linux","/bin/sh",[],[])`);
    await assert.rejects(
      c.buildPaths([{ kind: 'built', drvPath: drv, outputs: ['out'] }]),
      new RegExp(
        `^DaemonError: cannot build fixed-output derivation '/nix/store/11111111111111111111111111111111-fetch\\.drv' \\(needed by '${drv.replace(/\./g, '\\.')}'\\) in recursive Nix: ` +
          `it could reach the network from inside the sandbox \\(set 'recursive-nix-allow-fixed-output = true' to allow it\\)$`,
      ),
    );
    await waitFor(() => s.server.stats.active === 1, 'the connection to stay usable');
    assert.equal(await c.isValidPath(drv), true);
  });
});
