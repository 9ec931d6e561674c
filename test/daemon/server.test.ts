import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { connectDaemon, DaemonError, DaemonConnectionFailed, narOfFile, type LogEvent } from '../../src/daemon/client.js';
import { SocketPathTooLong, WorkerServer } from '../../src/daemon/server.js';
import { BuildStatus, GcAction, Op } from '../../src/daemon/protocol.js';
import { encodeFrame, WireWriter } from '../../src/daemon/wire.js';
import { hashBytes } from '../../src/format/hash.js';
import type { PathInfo } from '../../src/daemon/store-api.js';
import { tempDir } from '../helpers/tmp.js';
import { FakeStore } from './fake-store.js';
import { handshakeBytes, rawConnection, startServer, waitFor } from './helpers.js';

const S = '/nix/store';
const OUT = `${S}/7rjj86a15146cq3d4dyj6f3yxgbgq3dd-x`;
const DRV_TEXT = `Derive([("out","${OUT}","","")],[],[],"x86_64-linux","/bin/sh",[],[])`;

function narInfo(path: string, nar: Buffer, refs: string[] = []): PathInfo {
  return {
    path,
    deriver: null,
    narHash: hashBytes('sha256', nar),
    references: refs,
    registrationTime: 0,
    narSize: nar.length,
    ultimate: false,
    sigs: [],
    ca: null,
  };
}

describe('server + client over a unix socket (fake store)', () => {
  test('handshake reports protocol 1.34 and our version; the socket is 0600', async (t) => {
    const s = await startServer(t);
    const c = await s.connect();
    assert.equal(c.daemonVersion, 0x122);
    assert.equal(c.version, 0x122);
    assert.match(c.daemonNixVersion ?? '', /^drvbox \d+\.\d+\.\d+$/);
    assert.equal(statSync(s.socketPath).mode & 0o777, 0o600);
  });

  test('content-addressed adds compute the store paths Nix computes', async (t) => {
    const s = await startServer(t);
    const c = await s.connect();
    // values cross-checked with Nix 2.8 (`nix-store --add`, builtins.toFile, nix-store --add-fixed sha256)
    const text = await c.addTextToStore('t.txt', 'hello\n');
    assert.equal(text, `${S}/nj4j70xcnmcdh9y4yfs0ddw3hhli4880-t.txt`);
    const flat = await c.addToStore({ name: 'old', method: { kind: 'fixed', recursive: false, algo: 'sha1' } }, Buffer.from('abc'));
    assert.equal(flat.path, `${S}/k5pf1jhppjp4wpsyhsy1h7q08pvv2zqz-old`);
    assert.equal(flat.ca, 'fixed:sha1:kpcd173cq987hw957sx6m0868wv3x6d9');
    const nar = narOfFile(Buffer.from('hello\n'));
    const rec = await c.addToStore({ name: 'hello.txt', method: { kind: 'fixed', recursive: true, algo: 'sha256' } }, nar);
    assert.equal(rec.path, `${S}/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt`);
    assert.equal(rec.narSize, 120);
    assert.equal(rec.ca, 'fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw');
    const withRef = await c.addToStore({ name: 't2', method: { kind: 'text' }, references: [text] }, Buffer.from(`xyz ${text}`));
    assert.equal(withRef.path, `${S}/zyad7pg4jdihfj4hdx48zdp9shff2x4v-t2`);
    assert.deepEqual(withRef.references, [text]);
    assert.deepEqual(await c.queryReferrers(text), [withRef.path]);
    assert.equal(await c.isValidPath(text), true);
    assert.equal(await c.isValidPath(`${S}/00000000000000000000000000000000-x`), false);
    assert.deepEqual(await c.queryValidPaths([text, `${S}/00000000000000000000000000000000-x`]), [text]);
    assert.equal(await c.queryPathInfo(`${S}/00000000000000000000000000000000-x`), null);
    assert.equal(await c.queryPathFromHashPart('nj4j70xcnmcdh9y4yfs0ddw3hhli4880'), text);
    assert.deepEqual((await c.queryAllValidPaths()).length, 4);
  });

  test('NarFromPath streams the NAR back; AddToStoreNar and AddMultipleToStore import', async (t) => {
    const s = await startServer(t);
    const c = await s.connect();
    const big = narOfFile(Buffer.alloc(300_000, 'x'));
    const p1 = `${S}/00000000000000000000000000000001-big`;
    await c.addToStoreNar(narInfo(p1, big), big);
    const h = createHash('sha256');
    let n = 0;
    await c.narFromPath(p1, (chunk) => {
      n += chunk.length;
      h.update(chunk);
    });
    assert.equal(n, big.length);
    assert.equal(h.digest('hex'), createHash('sha256').update(big).digest('hex'));

    const items = [1, 2, 3].map((i) => {
      const nar = narOfFile(Buffer.from(`item ${i}`));
      return { info: narInfo(`${S}/0000000000000000000000000000000${i + 1}-item`, nar), nar };
    });
    await c.addMultipleToStore(items, items.length);
    for (const it of items) assert.deepEqual((await c.queryPathInfo(it.info.path))?.narSize, it.nar.length);
  });

  test('a failing import answers an error and the connection goes on', async (t) => {
    const s = await startServer(t);
    const c = await s.connect();
    const nar = narOfFile(Buffer.from('data'));
    const info = { ...narInfo(`${S}/00000000000000000000000000000009-bad`, nar), narHash: hashBytes('sha256', 'other') };
    await assert.rejects(c.addToStoreNar(info, nar), (e: unknown) => e instanceof DaemonError && /hash mismatch importing path/.test((e as Error).message));
    assert.equal(await c.isValidPath(info.path), false);
    await assert.rejects(c.queryPathInfo('/tmp/not-in-store'), /path '\/tmp\/not-in-store' is not in the Nix store/);
    assert.equal(await c.isValidPath(info.path), false);
  });

  test('builds: results, logs, output map, failures as Nix reports them', async (t) => {
    const s = await startServer(t);
    const logs: LogEvent[] = [];
    const c = await s.connect({ onLog: (e) => logs.push(e), options: { verbosity: 3 } });
    const drv = await c.addTextToStore('x.drv', DRV_TEXT);
    assert.deepEqual(await c.queryDerivationOutputMap(drv), new Map([['out', OUT]]));
    assert.deepEqual((await c.queryMissing([{ kind: 'built', drvPath: drv, outputs: ['out'] }])).willBuild, [drv]);
    const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath: drv, outputs: ['out'] }]);
    assert.equal(r!.status, BuildStatus.Built);
    assert.equal(r!.builtOutputs[0]!.outPath, OUT);
    assert.deepEqual(logs.filter((l) => l.type === 'next').map((l) => (l as { text: string }).text), [`building '${drv}'...\n`]);
    await c.buildPaths([{ kind: 'built', drvPath: drv, outputs: [] }]);
    assert.equal((await c.queryPathInfo(OUT))?.deriver, drv);

    const failing = await c.addTextToStore('y.drv', DRV_TEXT.replace('/bin/sh', 'FAIL_THIS_BUILD').replace('-x"', '-y"'));
    await assert.rejects(c.buildPaths([{ kind: 'built', drvPath: failing, outputs: ['out'] }]), new RegExp(`^DaemonError: builder for '${failing}' failed with exit code 1$`));
    const unknown = `${S}/00000000000000000000000000000000-nope`;
    await assert.rejects(c.buildPaths([{ kind: 'opaque', path: unknown }]), /is required, but there is no substituter that can build it/);
    await assert.rejects(c.ensurePath(unknown), /path '.*-nope' is not valid/);
    // repair needs trust
    await assert.rejects(c.buildPaths([{ kind: 'opaque', path: OUT }], 1), /repairing is not allowed because you are not in 'trusted-users'/);
  });

  test('GC ops, realisations, and ops the store or the client may not do', async (t) => {
    const s = await startServer(t);
    const c = await s.connect();
    const p = await c.addTextToStore('t', 'x');
    await c.addTempRoot(p);
    await c.addIndirectRoot('/home/u/result');
    assert.deepEqual(await c.findRoots(), [{ link: '{temp:1}', target: p }]);
    assert.deepEqual(await c.collectGarbage({ action: GcAction.ReturnDead, pathsToDelete: [], ignoreLiveness: false, maxFreed: 0n }), { paths: [], bytesFreed: 0n });
    await assert.rejects(c.collectGarbage({ action: GcAction.DeleteDead, pathsToDelete: [], ignoreLiveness: true, maxFreed: 0n }), /you are not allowed to ignore liveness/);
    await assert.rejects(c.addIndirectRoot('relative'), /indirect root 'relative' is not an absolute path/);
    const real = { id: `sha256:${'a'.repeat(64)}!out`, outPath: p, signatures: [], dependentRealisations: {} };
    await c.registerDrvOutput(real);
    assert.deepEqual(await c.queryRealisation(real.id), real);
    assert.equal(await c.queryRealisation(`sha256:${'b'.repeat(64)}!out`), null);
    await assert.rejects(c.addSignatures(p, ['k:s']), /^DaemonError: you are not privileged to add signatures$/);
    await assert.rejects(c.optimiseStore(), /operation 'optimiseStore' is not supported by this store/);
    assert.equal(await c.isValidPath(p), true, 'connection still usable after refused ops');
  });

  test('serveStream serves a connection over a pair of streams (the --stdio daemon)', async (t) => {
    const server = new WorkerServer({ store: new FakeStore(), trusted: true });
    t.after(() => server.close());
    const toServer = new PassThrough();
    const toClient = new PassThrough();
    const done = server.serveStream(toServer, toClient);
    const c = await connectDaemon({ input: toClient, output: toServer });
    const p = await c.addTextToStore('stdio', 'via stdio');
    assert.equal(await c.isValidPath(p), true);
    await c.close();
    assert.deepEqual(await done, { error: null, ops: 3 });
  });

  test('BuildDerivation: input-addressed needs trust; the fake store does not implement it', async (t) => {
    const drv = { outputs: [{ name: 'out', path: OUT, hashAlgo: '', hash: '' }], inputSrcs: [], platform: 'x86_64-linux', builder: '/bin/sh', args: [], env: [] as [string, string][] };
    const untrusted = await (await startServer(t)).connect();
    await assert.rejects(untrusted.buildDerivation(`${OUT}.drv`, drv), /^DaemonError: you are not privileged to build input-addressed derivations$/);
    const trusted = await (await startServer(t, { trusted: true })).connect();
    await assert.rejects(trusted.buildDerivation(`${OUT}.drv`, drv), /operation 'buildDerivation' is not supported by this store/);
  });

  test('trusted clients may use privileged ops the store supports', async (t) => {
    const s = await startServer(t, { trusted: true });
    const c = await s.connect();
    await assert.rejects(c.addSignatures(`${S}/00000000000000000000000000000000-x`, ['k:s']), /operation 'addSignatures' is not supported by this store/);
  });

  test('older clients: old-framing AddToStore (1.24) and tunnelled AddToStoreNar (1.22)', async (t) => {
    const s = await startServer(t);
    const c24 = await s.connect({ clientVersion: 0x118 });
    assert.equal(c24.version, 0x118);
    const flat = await c24.addToStore({ name: 'old', method: { kind: 'fixed', recursive: false, algo: 'sha1' } }, Buffer.from('abc'));
    assert.equal(flat.path, `${S}/k5pf1jhppjp4wpsyhsy1h7q08pvv2zqz-old`);
    const rec = await c24.addToStore({ name: 'hello.txt', method: { kind: 'fixed', recursive: true, algo: 'sha256' } }, narOfFile(Buffer.from('hello\n')));
    assert.equal(rec.path, `${S}/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt`);
    assert.equal(await c24.isValidPath(rec.path), true);

    const c22 = await s.connect({ clientVersion: 0x116 });
    const nar = narOfFile(Buffer.alloc(20_000, 'q'));
    const p = `${S}/00000000000000000000000000000005-tunnel`;
    await c22.addToStoreNar(narInfo(p, nar), nar);
    assert.equal((await c22.queryPathInfo(p))?.narSize, nar.length);
    await assert.rejects(c22.ensurePath(`${S}/00000000000000000000000000000000-x`), /is not valid/);
  });

  test('an unknown op answers a clean error and closes only that connection', async (t) => {
    const s = await startServer(t);
    const other = await s.connect();
    const c = await s.connect();
    await assert.rejects(c.rawRequest(new WireWriter().u64(99).take()), (e: unknown) => e instanceof DaemonError && e.message === 'invalid operation 99');
    await assert.rejects(c.isValidPath(`${S}/00000000000000000000000000000000-x`), DaemonConnectionFailed);
    await assert.rejects(c.rawRequest(new WireWriter().u64(Op.ImportPaths).take()), DaemonConnectionFailed);
    assert.equal(await other.isValidPath(`${S}/00000000000000000000000000000000-x`), false);
    const c2 = await s.connect();
    await assert.rejects(c2.rawRequest(new WireWriter().u64(Op.ImportPaths).take()), /operation 'ImportPaths' \(27\) is not supported/);
    await waitFor(() => s.server.stats.active === 1, 'the two broken connections to end');
  });

  test('20 concurrent connections, each with its own requests, all complete', async (t) => {
    const s = await startServer(t, { maxConnections: 20 });
    const clients = await Promise.all(Array.from({ length: 20 }, () => s.connect()));
    const paths = await Promise.all(
      clients.map(async (c, i) => {
        const ps: string[] = [];
        for (let j = 0; j < 10; j++) ps.push(await c.addTextToStore(`c${i}-${j}`, `${i}/${j}`));
        for (const p of ps) assert.equal(await c.isValidPath(p), true);
        return ps;
      }),
    );
    assert.equal(new Set(paths.flat()).size, 200);
    assert.equal(s.server.stats.active, 20);
  });

  test('more clients than handlers: they wait their turn, never more than the pool at once', async (t) => {
    const store = new FakeStore();
    let inBuild = 0;
    let maxInBuild = 0;
    const orig = store.buildPaths.bind(store);
    store.buildPaths = async (targets, mode, ctx) => {
      inBuild++;
      maxInBuild = Math.max(maxInBuild, inBuild);
      await new Promise((r) => setTimeout(r, 20));
      inBuild--;
      return orig(targets, mode, ctx);
    };
    const s = await startServer(t, { store, maxConnections: 2, maxQueuedConnections: 10 });
    const p = await (await s.connect()).addTextToStore('p', 'p');
    await waitFor(() => s.server.stats.active === 1, 'first client');
    const runs = Array.from({ length: 6 }, async () => {
      const c = await s.connect();
      await c.buildPaths([{ kind: 'opaque', path: p }]);
      await c.close();
    });
    await waitFor(() => s.server.stats.queued > 0, 'clients to queue');
    await Promise.all(runs);
    assert.ok(maxInBuild <= 1, `at most one build at a time besides the idle first client (saw ${maxInBuild})`);
    assert.ok(s.server.stats.active <= 2);
  });

  test('when the queue is full, new connections are refused at once', async (t) => {
    const s = await startServer(t, { maxConnections: 1, maxQueuedConnections: 1 });
    await s.connect();
    const queued = s.connect(); // waits: the only handler is busy
    await waitFor(() => s.server.stats.queued === 1, 'a queued client');
    await assert.rejects(s.connect(), DaemonConnectionFailed);
    assert.equal(s.server.stats.refused, 1);
    void queued.catch(() => undefined);
  });

  test('a client disconnecting mid-request frees its handler (build sees its AbortSignal)', async (t) => {
    const store = new FakeStore();
    let release!: () => void;
    store.buildGate = new Promise<void>((r) => (release = r));
    let aborted = 0;
    store.onBuildAborted = () => aborted++;
    const s = await startServer(t, { store, maxConnections: 1 });
    const { sock } = await rawConnection(s.socketPath);
    const req = new WireWriter().u64(Op.BuildPaths).strings([`${S}/00000000000000000000000000000000-x`]).u64(0).take();
    sock.write(Buffer.concat([handshakeBytes(), req]));
    await waitFor(() => store.calls.includes('buildPaths'), 'the build to start');
    sock.destroy();
    await waitFor(() => aborted === 1 && s.server.stats.active === 0, 'the handler to be freed');
    release();
    const c = await s.connect();
    assert.equal(await c.isValidPath(OUT), false);
  });

  test('a client dying in the middle of an AddToStoreNar upload frees its handler and adds nothing', async (t) => {
    const s = await startServer(t, { maxConnections: 1 });
    const { sock, closed } = await rawConnection(s.socketPath);
    const nar = narOfFile(Buffer.alloc(100_000, 'z'));
    const w = new WireWriter().u64(Op.AddToStoreNar);
    const p = `${S}/00000000000000000000000000000007-half`;
    w.string(p).string('').string(Buffer.from(hashBytes('sha256', nar).digest).toString('hex')).strings([]).u64(0).u64(nar.length).bool(false).strings([]).string('');
    w.bool(false).bool(false);
    sock.write(Buffer.concat([handshakeBytes(), w.take(), encodeFrame(nar.subarray(0, 50_000))]));
    await waitFor(() => s.store.calls.includes('addNarToStore'), 'the upload to start');
    sock.destroy();
    await closed;
    await waitFor(() => s.server.stats.active === 0, 'the handler to be freed');
    const c = await s.connect();
    assert.equal(await c.isValidPath(p), false);
  });

  test('close() ends live connections and removes the socket', async (t) => {
    const dir = tempDir(t);
    const socketPath = join(dir, 'sock');
    const server = new WorkerServer({ store: new FakeStore() });
    await server.listen(socketPath);
    const { sock, closed } = await rawConnection(socketPath);
    sock.write(handshakeBytes());
    await waitFor(() => server.stats.active === 1, 'the connection');
    await server.close();
    await closed;
    assert.equal(existsSync(socketPath), false);
    assert.equal(server.stats.active, 0);
  });

  test('a socket path longer than the unix limit is refused with a clear error', async (t) => {
    const dir = tempDir(t);
    const long = join(dir, 'x'.repeat(120));
    const server = new WorkerServer({ store: new FakeStore() });
    await assert.rejects(server.listen(long), (e: unknown) => e instanceof SocketPathTooLong && /longer than the 107-byte limit of unix sockets on linux/.test((e as Error).message));
  });

  test('1,000 sequential requests on one connection', async (t) => {
    const s = await startServer(t);
    const c = await s.connect();
    const drv = await c.addTextToStore('x.drv', DRV_TEXT);
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) {
      const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath: drv, outputs: ['out'] }]);
      assert.ok(r!.status === BuildStatus.Built || r!.status === BuildStatus.AlreadyValid);
    }
    const ms = performance.now() - t0;
    assert.ok(ms < 10_000, `1000 builds took ${ms} ms`);
    t.diagnostic(`1000 BuildPathsWithResults round trips: ${ms.toFixed(0)} ms`);
  });
});
