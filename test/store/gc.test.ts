import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addTextToStore } from '../../src/store/add.js';
import { collectGarbage } from '../../src/store/gc.js';
import { indirectRootPath } from '../../src/store/gc-roots.js';
import { lockPaths } from '../../src/store/path-locks.js';
import type { LocalStore } from '../../src/store/local-store.js';
import { Messages, openAt, storeChild, tempStore, waitExit } from './util.js';
import type { TestContext } from 'node:test';

/** Reopens the store: the paths added so far are no longer temp roots of this process. */
async function reopen(t: TestContext, store: LocalStore): Promise<LocalStore> {
  store.close();
  const s = await openAt(store.layout.root!);
  t.after(() => s.close());
  return s;
}

async function fixture(store: LocalStore, dir: string) {
  const dep = await addTextToStore(store, 'dep', 'dep!');
  const top = await addTextToStore(store, 'top', `top ${dep}`, [dep]);
  const lone = await addTextToStore(store, 'lone', 'lone');
  const lone2 = await addTextToStore(store, 'lone2', 'lone2');
  const user = await addTextToStore(store, 'user', `uses ${lone2}`, [lone2]);
  const linked = await addTextToStore(store, 'linked', 'linked');
  symlinkSync(top, join(store.layout.gcRootsDir, 'myroot'));
  const outLink = join(dir, 'result');
  store.addPermRoot(linked, outLink);
  const sd = store.realStoreDir;
  mkdirSync(join(sd, 'garbage'));
  writeFileSync(join(sd, 'garbage', 'f'), '12345');
  mkdirSync(join(sd, '11111111111111111111111111111111-notvalid'));
  writeFileSync(join(sd, '22222222222222222222222222222222-x.lock'), '');
  return { dep, top, lone, lone2, user, linked, outLink };
}

describe('garbage collection', () => {
  test('dry run lists exactly the dead paths and leftovers, deletes nothing', async (t) => {
    const { store: s0, dir } = await tempStore(t);
    const f = await fixture(s0, dir);
    const store = await reopen(t, s0);
    const before = readdirSync(store.realStoreDir).sort();
    const res = await collectGarbage(store, { action: 'returnDead', runtimeRoots: false });
    assert.deepEqual(res.paths, [
      '/nix/store/11111111111111111111111111111111-notvalid',
      '/nix/store/22222222222222222222222222222222-x.lock',
      f.lone,
      f.lone2,
      f.user,
      '/nix/store/garbage',
    ].sort());
    assert.equal(res.bytesFreed, 'lone'.length + 'lone2'.length + `uses ${f.lone2}`.length + 5);
    assert.deepEqual(readdirSync(store.realStoreDir).sort(), before);
    assert.equal(store.isValidPath(f.lone), true);
  });

  test('deletes the dead, keeps roots, their closure, indirect roots and temp roots of live processes', async (t) => {
    const { store: s0, dir, root } = await tempStore(t);
    const f = await fixture(s0, dir);
    const tmp = await addTextToStore(s0, 'tmp', 'temp rooted');
    const store = await reopen(t, s0);
    const child = storeChild(dir, root, `
      const s = await openAt(root);
      await s.addTempRoot(${JSON.stringify(tmp)});
      send({ ok: true });
      setInterval(() => {}, 1000);
    `);
    const msgs = new Messages(child);
    t.after(() => child.kill('SIGKILL'));
    await msgs.next();
    const res = await collectGarbage(store, { runtimeRoots: false });
    assert.equal(res.paths.length, 6);
    assert.ok(res.paths.includes(f.user) && res.paths.includes(f.lone) && res.paths.includes(f.lone2));
    for (const p of [f.dep, f.top, f.linked, tmp]) {
      assert.equal(store.isValidPath(p), true, p);
      assert.ok(existsSync(store.toRealPath(p)), p);
    }
    for (const p of [f.lone, f.lone2, f.user]) {
      assert.equal(store.isValidPath(p), false, p);
      assert.equal(existsSync(store.toRealPath(p)), false, p);
    }
    assert.deepEqual(readdirSync(store.realStoreDir).filter((n) => n !== '.links').sort(), [f.dep, f.linked, f.top, tmp].map((p) => p.slice(11)).sort());

    // The temp root dies with its process; the out-link goes away: both paths become garbage.
    child.kill('SIGKILL');
    await waitExit(child);
    const auto = indirectRootPath(store.layout, f.outLink);
    assert.equal(readlinkSync(auto), f.outLink);
    unlinkSync(f.outLink);
    const res2 = await collectGarbage(store, { runtimeRoots: false });
    assert.deepEqual(res2.paths, [f.linked, tmp].sort());
    assert.equal(existsSync(auto), false, 'the dangling indirect root is removed');
  });

  test('a .lock file someone holds is not deleted', async (t) => {
    const { store } = await tempStore(t);
    const p = '/nix/store/33333333333333333333333333333333-building';
    const locks = (await store.lockPaths([p]))!;
    t.after(() => locks.release());
    const res = await collectGarbage(store, { runtimeRoots: false });
    assert.deepEqual(res.paths, []);
    assert.ok(existsSync(store.toRealPath(p) + '.lock'));
    void lockPaths;
  });

  test('a path a running process has as its cwd is a runtime root (Linux)', async (t) => {
    if (process.platform !== 'linux') throw new Error('cannot run on this host: needs Linux /proc');
    const { store: s0, dir, root } = await tempStore(t);
    const { addPathToStore } = await import('../../src/store/add.js');
    mkdirSync(join(dir, 'wd'));
    const wd = await addPathToStore(s0, join(dir, 'wd'));
    const store = await reopen(t, s0);
    const child = storeChild(dir, root, `process.chdir(${JSON.stringify(store.toRealPath(wd))}); send({ ok: true }); setInterval(() => {}, 1000);`);
    const msgs = new Messages(child);
    t.after(() => child.kill('SIGKILL'));
    await msgs.next();
    const res = await collectGarbage(store);
    assert.deepEqual(res.paths, []);
    assert.equal(store.isValidPath(wd), true);
    child.kill('SIGKILL');
    await waitExit(child);
    const res2 = await collectGarbage(store);
    assert.deepEqual(res2.paths, [wd]);
  });

  test('deleteSpecific refuses a live path and deletes a dead one', async (t) => {
    const { store: s0, dir } = await tempStore(t);
    const f = await fixture(s0, dir);
    const store = await reopen(t, s0);
    await assert.rejects(collectGarbage(store, { action: 'deleteSpecific', paths: [f.dep], runtimeRoots: false }), (e: unknown) => (e as { code?: string }).code === 'E_PATH_IN_USE');
    const res = await collectGarbage(store, { action: 'deleteSpecific', paths: [f.user], runtimeRoots: false });
    assert.deepEqual(res.paths, [f.user]);
    assert.equal(store.isValidPath(f.lone2), true);
  });

  test('deleteSpecific with max-freed stops once the limit is passed (as Nix), without an error', async (t) => {
    const { store: s0, dir } = await tempStore(t);
    const f = await fixture(s0, dir);
    const store = await reopen(t, s0);
    const res = await collectGarbage(store, { action: 'deleteSpecific', paths: [f.lone, f.user], maxFreed: 1, runtimeRoots: false });
    assert.deepEqual(res.paths, [f.lone]);
    assert.ok(res.bytesFreed > 1);
    assert.equal(store.isValidPath(f.lone), false);
    assert.equal(store.isValidPath(f.user), true);
  });
});
