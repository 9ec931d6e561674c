// LocalStoreAdapter: every op the worker-protocol server dispatches, against
// a real (temp) LocalStore, through the server and our client over a socket.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tempStore } from '../store/util.js';
import { waitFor } from './helpers.js';
import { WorkerServer } from '../../src/daemon/server.js';
import { connectDaemon, DaemonError, narOfFile, type WorkerClient } from '../../src/daemon/client.js';
import { LocalStoreAdapter, ConnectionTempRoots, type DaemonBuildFn } from '../../src/daemon/local-store-adapter.js';
import { DEFAULT_CLIENT_OPTIONS } from '../../src/daemon/connection.js';
import { BuildMode, BuildStatus, GcAction } from '../../src/daemon/protocol.js';
import type { BuildResult, OpContext, PathInfo } from '../../src/daemon/store-api.js';
import { formatHash, hashBytes } from '../../src/format/hash.js';
import { makeFixedOutputPath, makeTextPath } from '../../src/format/store-path.js';
import { addDerivationFile } from '../../src/build/targets.js';
import { addTextToStore } from '../../src/store/add.js';
import { dumpPath, hashPath } from '../../src/store/nar-fs.js';
import type { LocalStore } from '../../src/store/local-store.js';

/** What Nix clients send as GC limit: none. */
const NO_LIMIT = 2n ** 64n - 1n;
const FOO = '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo'; // text "bar", as nix-store --add of a file 'foo'
const GREETING_DRV = '/nix/store/l0izsw2p6x88jnlgpsmiq3zg5zcnfzib-greeting.drv';
const GREETING = '/nix/store/f08yn8m2ay1sg75ql6maqlj3pahy32ps-greeting';
const USE_DRV = '/nix/store/4ppprmw9nd20spnk2q8frh8dbdsgc9jp-use-greeting.drv';
const DRVS_JSON = {
  [GREETING_DRV]: {
    system: 'x86_64-linux',
    builder: '/bin/sh',
    args: ['-c', "echo 'Hello from a dependency' > $out"],
    env: { name: 'greeting', system: 'x86_64-linux', builder: '/bin/sh' },
  },
  [USE_DRV]: {
    system: 'x86_64-linux',
    builder: '/bin/sh',
    inputDrvs: { [GREETING_DRV]: ['out'] },
    args: ['-c', 'read line < $greeting; echo "$line, read by $name" > $out'],
    env: { name: 'use-greeting', system: 'x86_64-linux', builder: '/bin/sh', greeting: GREETING },
  },
};

interface Setup {
  store: LocalStore;
  adapter: LocalStoreAdapter;
  dir: string;
  builds: Array<{ targets: string[]; mode: number; viewIsStore: boolean }>;
  connect(trusted?: boolean): Promise<WorkerClient>;
}

/** A build engine stub: "builds" each output as a one-line file and registers it. */
function stubBuild(calls: Setup['builds']): DaemonBuildFn {
  return async (targets, mode, ctx) => {
    calls.push({ targets: targets.map((t) => (t.kind === 'built' ? `${t.drvPath}^${t.outputs.join(',') || '*'}` : t.path)), mode, viewIsStore: Object.getPrototypeOf(ctx.store) !== Object.getPrototypeOf({}) });
    const results: BuildResult[] = [];
    for (const t of targets) {
      if (t.kind !== 'built') throw new Error('stub: opaque target reached the engine');
      if (t.drvPath.includes('fail')) {
        results.push({ path: t, status: BuildStatus.PermanentFailure, errorMsg: `builder for '${t.drvPath}' failed with exit code 1`, timesBuilt: 0, isNonDeterministic: false, startTime: 0, stopTime: 0, builtOutputs: [] });
        continue;
      }
      const outs = ctx.store.queryPartialDerivationOutputMap(t.drvPath);
      for (const [, p] of outs) {
        if (!p || ctx.store.isValidPath(p)) continue;
        writeFileSync(ctx.store.toRealPath(p), `built ${p}\n`);
        const { hash, narSize } = await hashPath(ctx.store.toRealPath(p));
        ctx.store.registerValidPaths([{ path: p, narHash: hash, narSize, references: [], deriver: t.drvPath }]);
      }
      ctx.log(`stub built '${t.drvPath}'`);
      results.push({ path: t, status: BuildStatus.Built, errorMsg: '', timesBuilt: 1, isNonDeterministic: false, startTime: 1, stopTime: 2, builtOutputs: [] });
    }
    return results;
  };
}

async function setup(t: TestContext, opts: { build?: boolean } = {}): Promise<Setup> {
  const { store, dir } = await tempStore(t);
  const builds: Setup['builds'] = [];
  const adapter = new LocalStoreAdapter(store, opts.build === false ? { runtimeRoots: false } : { build: stubBuild(builds), runtimeRoots: false });
  const servers = new Map<boolean, { server: WorkerServer; path: string }>();
  const clients: WorkerClient[] = [];
  t.after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const s of servers.values()) await s.server.close();
    adapter.close();
  });
  return {
    store,
    adapter,
    dir,
    builds,
    async connect(trusted = true) {
      let s = servers.get(trusted);
      if (!s) {
        const server = new WorkerServer({ store: adapter, trusted });
        const path = join(dir, trusted ? 'trusted.sock' : 'untrusted.sock');
        await server.listen(path);
        s = { server, path };
        servers.set(trusted, s);
      }
      const c = await connectDaemon({ socketPath: s.path });
      clients.push(c);
      return c;
    },
  };
}

function ctxOf(signal: AbortSignal, trusted = true): OpContext {
  return { trusted, options: DEFAULT_CLIENT_OPTIONS, signal, log() {}, startActivity: () => 0n, stopActivity() {}, result() {} };
}

function tempRootFiles(store: LocalStore): string[] {
  return readdirSync(store.layout.tempRootsDir).filter((n) => n.startsWith(`${process.pid}-c`));
}

describe('LocalStoreAdapter through the worker protocol', () => {
  test('AddTextToStore and AddToStore (text, NAR, flat) give the paths and infos of the local store', async (t) => {
    const { store, connect } = await setup(t);
    const c = await connect();
    assert.equal(await c.addTextToStore('foo', 'bar'), FOO);

    const nar = narOfFile(Buffer.from('hello\n'));
    const viaNar = await c.addToStore({ name: 'hello.txt', method: { kind: 'fixed', recursive: true, algo: 'sha256' } }, nar);
    const narHash = hashBytes('sha256', nar);
    assert.equal(viaNar.path, makeFixedOutputPath('/nix/store', 'recursive', narHash, 'hello.txt', []));
    assert.equal(formatHash(viaNar.narHash, 'sri'), formatHash(narHash, 'sri'));
    assert.equal(viaNar.narSize, nar.length);
    assert.equal(viaNar.ca, `fixed:r:${formatHash(narHash)}`);
    assert.equal(readFileSync(store.toRealPath(viaNar.path), 'utf8'), 'hello\n');

    const flat = await c.addToStore({ name: 'f', method: { kind: 'fixed', recursive: false, algo: 'sha1' } }, [Buffer.from('fl'), Buffer.from('at')]);
    assert.equal(flat.path, makeFixedOutputPath('/nix/store', 'flat', hashBytes('sha1', 'flat'), 'f', []));
    assert.equal(flat.ca, `fixed:${formatHash(hashBytes('sha1', 'flat'))}`);

    const ref = await c.addToStore({ name: 'r', method: { kind: 'text' }, references: [FOO] }, Buffer.from(`see ${FOO}`));
    assert.equal(ref.path, makeTextPath('/nix/store', hashBytes('sha256', `see ${FOO}`), 'r', [FOO]));
    assert.deepEqual(ref.references, [FOO]);

    // what the daemon says is what the database says
    const local = store.queryPathInfo(ref.path)!;
    const remote = (await c.queryPathInfo(ref.path))!;
    assert.equal(formatHash(remote.narHash), formatHash(local.narHash));
    assert.equal(remote.registrationTime, local.registrationTime);
    assert.deepEqual(remote.references, local.references);
    assert.equal(remote.ca, local.ca);

    // an unknown reference is refused, the connection survives
    const ghost = '/nix/store/00000000000000000000000000000000-ghost';
    await assert.rejects(c.addTextToStore('x', 'y', [ghost]), (e: unknown) => e instanceof DaemonError && e.message.includes(ghost));
    assert.equal(await c.isValidPath(FOO), true);
  });

  test('queries: valid paths, path info, referrers, all valid paths, hash part, derivers', async (t) => {
    const { connect } = await setup(t);
    const c = await connect();
    const foo = await c.addTextToStore('foo', 'bar');
    const user = await c.addTextToStore('user', `uses ${foo}`, [foo]);
    const none = '/nix/store/00000000000000000000000000000000-none';
    assert.equal(await c.isValidPath(foo), true);
    assert.equal(await c.isValidPath(none), false);
    assert.deepEqual(await c.queryValidPaths([user, none, foo]), [foo, user].sort());
    assert.equal(await c.queryPathInfo(none), null);
    assert.deepEqual(await c.queryReferrers(foo), [user]);
    assert.deepEqual(await c.queryReferrers(none), []);
    assert.deepEqual(await c.queryAllValidPaths(), [foo, user].sort());
    assert.equal(await c.queryPathFromHashPart(foo.slice(11, 43)), foo);
    assert.equal(await c.queryPathFromHashPart('0'.repeat(32)), null);
    assert.deepEqual(await c.queryValidDerivers(foo), []);
    assert.deepEqual(await c.querySubstitutablePaths([none]), []);
  });

  test('NarFromPath streams the NAR of the path (several chunks) and the connection stays in sync', async (t) => {
    const { store, dir, connect } = await setup(t);
    const { addPathToStore } = await import('../../src/store/add.js');
    const src = join(dir, 'big');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(src);
    writeFileSync(join(src, 'a'), Buffer.alloc(3 * 1024 * 1024 + 7, 'a'));
    writeFileSync(join(src, 'b'), 'b');
    const p = await addPathToStore(store, src);
    const c = await connect();
    const h = createHash('sha256');
    let n = 0;
    let size = 0;
    await c.narFromPath(p, (b) => {
      h.update(b);
      n++;
      size += b.length;
    });
    const expected = createHash('sha256');
    let expectedSize = 0;
    for await (const chunk of dumpPath(store.toRealPath(p))) {
      expected.update(chunk);
      expectedSize += chunk.length;
    }
    const got = h.digest('hex');
    assert.equal(got, expected.digest('hex'));
    assert.equal(got, formatHash(store.queryPathInfo(p)!.narHash, 'base16', false), 'the registered NAR hash');
    assert.equal(size, expectedSize);
    assert.ok(n > 1, `streamed in ${n} chunks`);
    await assert.rejects(c.narFromPath('/nix/store/00000000000000000000000000000000-x', () => undefined), (e: unknown) => e instanceof DaemonError && e.message === "path '/nix/store/00000000000000000000000000000000-x' is not valid");
    assert.equal(await c.isValidPath(p), true);
  });

  test('AddToStoreNar / AddMultipleToStore: content-addressed paths from anyone, others only without signature checks', async (t) => {
    const { store, connect } = await setup(t);
    const nar = narOfFile(Buffer.from('imported\n'));
    const narHash = hashBytes('sha256', nar);
    const info = (path: string, ca: string | null): PathInfo => ({ path, deriver: null, narHash, references: [], registrationTime: 0, narSize: nar.length, ultimate: false, sigs: [], ca });
    const caPath = makeFixedOutputPath('/nix/store', 'recursive', narHash, 'imp', []);
    const untrusted = await connect(false);
    await untrusted.addToStoreNar(info(caPath, `fixed:r:${formatHash(narHash)}`), nar, { checkSigs: false });
    assert.equal(store.isValidPath(caPath), true);

    const ia = '/nix/store/11111111111111111111111111111111-imp';
    await assert.rejects(untrusted.addToStoreNar(info(ia, null), nar, { checkSigs: false }), (e: unknown) =>
      e instanceof DaemonError && e.message.startsWith(`cannot add path '${ia}' because it lacks a signature by a trusted key`));
    // a content address that does not match the path is no proof either
    await assert.rejects(untrusted.addToStoreNar(info(ia, `fixed:r:${formatHash(narHash)}`), nar, { checkSigs: false }), /lacks a signature/);
    assert.equal(store.isValidPath(ia), false);
    assert.equal(await untrusted.isValidPath(caPath), true, 'in sync after refusals');

    const trusted = await connect(true);
    await trusted.addToStoreNar(info(ia, null), nar, { checkSigs: false });
    assert.equal(formatHash(store.queryPathInfo(ia)!.narHash), formatHash(narHash));
    await assert.rejects(trusted.addToStoreNar(info('/nix/store/22222222222222222222222222222222-imp', null), nar, { checkSigs: true }), /lacks a signature/);
    // a wrong NAR hash is refused and leaves nothing behind
    const bad = '/nix/store/33333333333333333333333333333333-imp';
    await assert.rejects(trusted.addToStoreNar({ ...info(bad, null), narHash: hashBytes('sha256', 'x') }, nar, { checkSigs: false }), /hash mismatch importing path/);
    assert.equal(store.isValidPath(bad), false);

    const items = [4, 5].map((i) => ({ info: info(`/nix/store/${String(i).repeat(32)}-imp`, null), nar }));
    await trusted.addMultipleToStore(items, items.length, { checkSigs: false });
    for (const it of items) assert.equal(store.isValidPath(it.info.path), true);
    assert.equal(await trusted.isValidPath(caPath), true);
  });

  test('derivation output map, QueryMissing and building through the injected engine', async (t) => {
    const { store, dir, builds, connect } = await setup(t);
    const file = join(dir, 'drvs.json');
    writeFileSync(file, JSON.stringify(DRVS_JSON));
    assert.deepEqual(await addDerivationFile(store, file), [GREETING_DRV, USE_DRV]);
    const c = await connect();
    const useOut = (await c.queryDerivationOutputMap(USE_DRV)).get('out')!;
    assert.deepEqual([...(await c.queryDerivationOutputMap(GREETING_DRV))], [['out', GREETING]]);
    await assert.rejects(c.queryDerivationOutputMap('/nix/store/00000000000000000000000000000000-x.drv'), /is not valid/);

    const unknown = '/nix/store/00000000000000000000000000000000-unknown';
    const m = await c.queryMissing([{ kind: 'built', drvPath: USE_DRV, outputs: [] }, { kind: 'opaque', path: unknown }, { kind: 'opaque', path: USE_DRV }]);
    assert.deepEqual(m, { willBuild: [GREETING_DRV, USE_DRV].sort(), willSubstitute: [], unknown: [unknown], downloadSize: 0, narSize: 0 });

    const results = await c.buildPathsWithResults([
      { kind: 'opaque', path: USE_DRV },
      { kind: 'built', drvPath: GREETING_DRV, outputs: ['out'] },
      { kind: 'opaque', path: unknown },
    ]);
    assert.deepEqual(results.map((r) => r.status), [BuildStatus.AlreadyValid, BuildStatus.Built, BuildStatus.NoSubstituters]);
    assert.equal(results[2]!.errorMsg, `path '${unknown}' is required, but there is no substituter that can build it`);
    assert.deepEqual(builds, [{ targets: [`${GREETING_DRV}^out`], mode: BuildMode.Normal, viewIsStore: true }]);
    assert.equal(store.isValidPath(GREETING), true);

    const m2 = await c.queryMissing([{ kind: 'built', drvPath: USE_DRV, outputs: ['out'] }]);
    assert.deepEqual(m2.willBuild, [USE_DRV]);
    await c.buildPaths([{ kind: 'built', drvPath: USE_DRV, outputs: [] }], BuildMode.Check);
    assert.deepEqual(builds[1], { targets: [`${USE_DRV}^*`], mode: BuildMode.Check, viewIsStore: true });
    assert.equal(store.isValidPath(useOut), true);
    assert.deepEqual((await c.queryMissing([{ kind: 'built', drvPath: USE_DRV, outputs: [] }])).willBuild, []);

    await c.ensurePath(GREETING);
    await assert.rejects(c.ensurePath(unknown), (e: unknown) => e instanceof DaemonError && e.message === `path '${unknown}' does not exist and cannot be created`);
    await assert.rejects(c.buildPaths([{ kind: 'opaque', path: unknown }]), (e: unknown) => e instanceof DaemonError && e.message.includes('no substituter'));
    assert.equal(await c.isValidPath(GREETING), true);
  });

  test('without a build engine, building a derivation is a clean error; valid paths still "build"', async (t) => {
    const { store, dir, connect } = await setup(t, { build: false });
    const file = join(dir, 'drvs.json');
    writeFileSync(file, JSON.stringify(DRVS_JSON));
    await addDerivationFile(store, file);
    const c = await connect();
    await c.buildPaths([{ kind: 'opaque', path: GREETING_DRV }]);
    await assert.rejects(c.buildPaths([{ kind: 'built', drvPath: GREETING_DRV, outputs: [] }]), (e: unknown) =>
      e instanceof DaemonError && e.message === `cannot build '${GREETING_DRV}': this drvbox daemon has no build engine`);
  });

  test('temp roots belong to the connection: in its own roots file while it lives, gone after', async (t) => {
    const { store, connect } = await setup(t);
    const c = await connect();
    const p = await c.addTextToStore('rooted', 'rooted');
    await c.addTempRoot(p);
    const files = tempRootFiles(store);
    assert.equal(files.length, 1, `one roots file: ${files.join(' ')}`);
    const text = readFileSync(join(store.layout.tempRootsDir, files[0]!), 'latin1');
    assert.ok(text.split('\0').includes(p), `the file lists ${p}`);
    const roots = await c.findRoots();
    assert.ok(roots.some((r) => r.target === p && r.link === `{temp:${files[0]}}`), JSON.stringify(roots));
    // nothing went into the process-wide roots file of the store
    assert.equal(existsSync(join(store.layout.tempRootsDir, String(process.pid))), false);

    // while the connection lives, GC keeps the path
    const other = await connect();
    const dead = await other.collectGarbage({ action: GcAction.ReturnDead, pathsToDelete: [], ignoreLiveness: false, maxFreed: NO_LIMIT });
    assert.equal(dead.paths.includes(p), false);
    await c.close();
    await waitFor(() => tempRootFiles(store).length === 0, 'the connection to drop its roots file');
    const dead2 = await other.collectGarbage({ action: GcAction.ReturnDead, pathsToDelete: [], ignoreLiveness: false, maxFreed: NO_LIMIT });
    assert.ok(dead2.paths.includes(p), 'dead once its connection ended');
  });

  test('AddIndirectRoot, FindRoots and CollectGarbage (dry run, specific, delete)', async (t) => {
    const { store, dir, connect } = await setup(t);
    const c = await connect();
    const kept = await c.addTextToStore('kept', 'kept');
    const garbage = await c.addTextToStore('garbage', 'garbage');
    // a fresh connection, without the temp roots of the adds
    await c.close();
    const g = await connect();
    const link = join(dir, 'result');
    symlinkSync(store.toRealPath(kept), link);
    await g.addIndirectRoot(link);
    const roots = await g.findRoots();
    assert.deepEqual(roots.filter((r) => r.target === kept).map((r) => r.link), [link]);

    const dry = await g.collectGarbage({ action: GcAction.ReturnDead, pathsToDelete: [], ignoreLiveness: false, maxFreed: NO_LIMIT });
    assert.deepEqual(dry.paths.filter((p) => p.startsWith('/nix/store/') && !p.includes('drvbox-')), [garbage]);
    assert.ok(dry.bytesFreed > 0n);
    assert.equal(store.isValidPath(garbage), true, 'a dry run deletes nothing');
    assert.equal(existsSync(store.toRealPath(garbage)), true);

    const live = await g.collectGarbage({ action: GcAction.ReturnLive, pathsToDelete: [], ignoreLiveness: false, maxFreed: NO_LIMIT });
    assert.deepEqual(live.paths, [kept]);

    await assert.rejects(g.collectGarbage({ action: GcAction.DeleteSpecific, pathsToDelete: [kept], ignoreLiveness: false, maxFreed: NO_LIMIT }), (e: unknown) =>
      e instanceof DaemonError && e.message.startsWith(`cannot delete path '${kept}' since it is still alive`));
    await assert.rejects(g.collectGarbage({ action: GcAction.DeleteDead, pathsToDelete: [], ignoreLiveness: true, maxFreed: NO_LIMIT }), /not allowed to ignore liveness/);

    const del = await g.collectGarbage({ action: GcAction.DeleteSpecific, pathsToDelete: [garbage], ignoreLiveness: false, maxFreed: NO_LIMIT });
    assert.deepEqual(del.paths, [garbage]);
    assert.equal(store.isValidPath(garbage), false);
    assert.equal(existsSync(store.toRealPath(garbage)), false);
    const again = await g.collectGarbage({ action: GcAction.DeleteDead, pathsToDelete: [], ignoreLiveness: false, maxFreed: NO_LIMIT });
    assert.equal(again.paths.includes(kept), false);
    assert.equal(store.isValidPath(kept), true);
  });

  test('realisations: only trusted clients register them; signatures only from trusted clients', async (t) => {
    const { store, connect } = await setup(t);
    const trusted = await connect(true);
    const untrusted = await connect(false);
    const out = await trusted.addTextToStore('out', 'out');
    const id = `sha256:${'ab'.repeat(32)}!out`;
    await assert.rejects(untrusted.registerDrvOutput({ id, outPath: out, signatures: [], dependentRealisations: {} }), (e: unknown) =>
      e instanceof DaemonError && e.message === `cannot register realisation '${id}': you are not a trusted user of this daemon`);
    assert.equal(await trusted.queryRealisation(id), null);
    await trusted.registerDrvOutput({ id, outPath: out, signatures: [], dependentRealisations: {} });
    assert.deepEqual(await untrusted.queryRealisation(id), { id, outPath: out, signatures: [], dependentRealisations: {} });

    await assert.rejects(untrusted.addSignatures(out, ['k:sig']), /not privileged to add signatures/);
    await trusted.addSignatures(out, ['k:sig']);
    assert.deepEqual(store.queryPathInfo(out)!.sigs, ['k:sig']);
  });

  test('OptimiseStore and VerifyStore', async (t) => {
    const { store, connect } = await setup(t);
    const c = await connect();
    const p = await c.addTextToStore('v', 'v');
    await c.optimiseStore();
    assert.equal(await c.verifyStore(true, false), false);
    const { chmodSync } = await import('node:fs');
    const real = store.toRealPath(p);
    chmodSync(real, 0o644);
    writeFileSync(real, 'tampered');
    assert.equal(await c.verifyStore(true, false), true, 'a modified path is an error');
  });
});

describe('LocalStoreAdapter called directly', () => {
  test('an upload stops when the client goes away: the op rejects, nothing is registered, the roots file goes', async (t) => {
    const { store } = await tempStore(t);
    const adapter = new LocalStoreAdapter(store, { runtimeRoots: false });
    t.after(() => adapter.close());
    const ac = new AbortController();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const nar = narOfFile(Buffer.from('never finished'));
    async function* slow(): AsyncGenerator<Uint8Array> {
      yield nar.subarray(0, 16);
      await gate;
      yield nar.subarray(16);
    }
    const p = adapter.addToStore({ name: 'slow', method: { kind: 'fixed', recursive: true, algo: 'sha256' }, references: [], repair: false }, slow(), ctxOf(ac.signal));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(adapter.openConnections, 1);
    ac.abort(new Error('the client closed the connection'));
    release();
    await assert.rejects(p, /the client closed the connection/);
    assert.equal(adapter.openConnections, 0);
    assert.deepEqual(tempRootFiles(store), []);
    assert.deepEqual(store.queryAllValidPaths(), []);
    const leftovers = readdirSync(store.realStoreDir).filter((n) => !n.startsWith('.'));
    assert.deepEqual(leftovers, [], 'no temp store path left behind');
  });

  test('NarFromPath: an invalid path is refused before streaming; a hang-up stops the stream', async (t) => {
    const { store } = await tempStore(t);
    const adapter = new LocalStoreAdapter(store);
    t.after(() => adapter.close());
    const p = await addTextToStore(store, 't', Buffer.alloc(1 << 20, 't'));
    const ac = new AbortController();
    await assert.rejects(adapter.narFromPath('/nix/store/00000000000000000000000000000000-x', ctxOf(ac.signal)), /is not valid/);
    const it = (await adapter.narFromPath(p, ctxOf(ac.signal)))[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.done, false);
    assert.equal(Buffer.from(first.value as Uint8Array).subarray(8, 21).toString(), 'nix-archive-1');
    ac.abort(new Error('gone'));
    await assert.rejects(it.next(), /gone/);
  });

  test('ConnectionTempRoots: Nix-format file, flock held, removed on close', async (t) => {
    const { store } = await tempStore(t);
    const roots = new ConnectionTempRoots(store.layout);
    const a = '/nix/store/00000000000000000000000000000000-a';
    const b = '/nix/store/11111111111111111111111111111111-b';
    await Promise.all([roots.add(a), roots.add(b), roots.add(a)]);
    assert.equal(readFileSync(roots.path, 'latin1'), `${a}\0${b}\0`);
    const { findTempRoots } = await import('../../src/store/gc-roots.js');
    const found = findTempRoots(store.layout);
    assert.deepEqual([...found.keys()].sort(), [a, b]);
    assert.equal(existsSync(roots.path), true, 'a live file is not taken for stale');
    roots.close();
    assert.equal(existsSync(roots.path), false);
    await assert.rejects(roots.add('/nix/store/22222222222222222222222222222222-c'), /connection has ended/);
  });
});

describe('the engine glue (build-engine.ts)', () => {
  test("client settings: SetOptions fields for everyone, other overrides only for trusted clients (timeout, max-silent-time for all)", async () => {
    const { settingsForClient } = await import('../../src/daemon/build-engine.js');
    const { loadSettings } = await import('../../src/config/load.js');
    const base = loadSettings({}, [['sandbox', 'true'], ['max-jobs', '3']]);
    const o = { ...DEFAULT_CLIENT_OPTIONS, keepFailed: true, maxBuildJobs: 5, maxSilentTime: 7, buildCores: 2, overrides: { sandbox: 'false', timeout: '9', 'sandbox-paths': '/bin/sh=/x', substituters: 'https://cache', 'no-such-setting': '1' } };
    const warnings: string[] = [];
    const untrusted = settingsForClient(base, o, false, (m) => warnings.push(m));
    assert.equal(untrusted.get('keep-failed'), true);
    assert.equal(untrusted.get('max-jobs'), 5);
    assert.equal(untrusted.get('max-silent-time'), 7);
    assert.equal(untrusted.get('cores'), 2);
    assert.equal(untrusted.get('timeout'), 9);
    assert.equal(untrusted.get('sandbox'), 'true', 'an untrusted client cannot turn the sandbox off');
    assert.deepEqual(untrusted.get('sandbox-paths'), []);
    assert.deepEqual(warnings.sort(), [
      "ignoring the client-specified setting 'no-such-setting', because it is a restricted setting and you are not a trusted user",
      "ignoring the client-specified setting 'sandbox', because it is a restricted setting and you are not a trusted user",
      "ignoring the client-specified setting 'sandbox-paths', because it is a restricted setting and you are not a trusted user",
      "ignoring the client-specified setting 'substituters', because it is a restricted setting and you are not a trusted user",
    ]);
    const trusted = settingsForClient(base, o, true, () => assert.fail('no warnings for a trusted client'));
    assert.equal(trusted.get('sandbox'), 'false');
    assert.deepEqual(trusted.get('sandbox-paths'), ['/bin/sh=/x']);
    // the daemon's own settings are untouched
    assert.equal(base.get('sandbox'), 'true');
    assert.equal(base.get('max-jobs'), 3);
    assert.equal(base.get('keep-failed'), false);
  });
});
