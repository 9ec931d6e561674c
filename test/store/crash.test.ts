// A process killed -9 in the middle of writing to the store must leave no
// half-registered path and no lock that blocks anyone; what it leaves on
// disk is garbage the next add or GC removes.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addTextToStore } from '../../src/store/add.js';
import { exportPaths } from '../../src/store/export.js';
import { collectGarbage } from '../../src/store/gc.js';
import { Messages, openAt, storeChild, tempStore, waitExit } from './util.js';

function entries(dir: string): string[] {
  return readdirSync(dir).filter((n) => n !== '.links').sort();
}

describe('crash safety (kill -9)', () => {
  test('mid-import: nothing registered, temps collected, paths importable again', async (t) => {
    const { store: src, dir } = await tempStore(t);
    const a = await addTextToStore(src, 'a', 'a'.repeat(100_000));
    const b = await addTextToStore(src, 'b', `b ${a}`, [a]);
    const parts: Buffer[] = [];
    for await (const c of exportPaths(src, [a, b])) parts.push(Buffer.from(c));
    const stream = Buffer.concat(parts);
    const streamFile = join(dir, 'stream');
    writeFileSync(streamFile, stream);
    const root = join(dir, 'target');
    const child = storeChild(dir, root, `
      const s = await openAt(root);
      const { readFileSync } = await import('node:fs');
      const data = readFileSync(${JSON.stringify(streamFile)});
      async function* source() {
        yield data.subarray(0, ${stream.length - 200}); // all of 'a', part of 'b'
        send({ half: true });
        await new Promise(() => {}); // never finishes
      }
      await S.importPaths(s, source());
    `);
    const msgs = new Messages(child);
    assert.deepEqual(await msgs.next(), { half: true });
    child.kill('SIGKILL');
    await waitExit(child);
    const store = await openAt(root);
    t.after(() => store.close());
    assert.deepEqual(store.queryAllValidPaths(), []);
    const left = entries(store.realStoreDir);
    assert.ok(left.length > 0 && left.every((n) => n.endsWith('-drvbox-import')), `temps of the dead import: ${left}`);
    const gc = await collectGarbage(store, { runtimeRoots: false });
    assert.equal(gc.paths.length, left.length);
    assert.deepEqual(entries(store.realStoreDir), []);
    const { importPaths } = await import('../../src/store/import.js');
    assert.deepEqual((await importPaths(store, [stream])).added, [a, b]);
  });

  test('killed holding the lock after renaming into place: the path is not valid, the lock does not block, the next add repairs it', async (t) => {
    const { dir } = await tempStore(t);
    const root = join(dir, 'r');
    const child = storeChild(dir, root, `
      const s = await openAt(root);
      const { writeFileSync, renameSync } = await import('node:fs');
      const p = '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo';
      await s.addTempRoot(p);
      const locks = await s.lockPaths([p]);
      const tmp = await S.makeTempStorePath(s);
      writeFileSync(tmp.real, 'half-writ');
      renameSync(tmp.real, s.toRealPath(p));
      send({ renamed: true });
      setInterval(() => {}, 1000);
    `);
    const msgs = new Messages(child);
    assert.deepEqual(await msgs.next(), { renamed: true });
    child.kill('SIGKILL');
    await waitExit(child);
    const store = await openAt(root);
    t.after(() => store.close());
    const p = '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo';
    assert.equal(store.isValidPath(p), false);
    const l = await store.lockPaths([p], { wait: false });
    assert.ok(l, 'no stale lock');
    l.release();
    assert.equal(await addTextToStore(store, 'foo', 'bar'), p);
    const { readFileSync } = await import('node:fs');
    assert.equal(readFileSync(store.toRealPath(p), 'utf8'), 'bar');
  });

  test('mid-add of a large tree: nothing registered and a fresh add succeeds', async (t) => {
    const { dir } = await tempStore(t);
    const root = join(dir, 'r2');
    const { mkdirSync } = await import('node:fs');
    const src = join(dir, 'big');
    mkdirSync(src);
    for (let i = 0; i < 20; i++) writeFileSync(join(src, `f${i}`), Buffer.alloc(2_000_000, i));
    const child = storeChild(dir, root, `
      const s = await openAt(root);
      const { setTimeout } = await import('node:timers/promises');
      send({ start: true });
      await S.addPathToStore(s, ${JSON.stringify(src)});
      send({ done: true });
    `);
    const msgs = new Messages(child);
    await msgs.next();
    await new Promise((r) => setTimeout(r, 60));
    child.kill('SIGKILL');
    await waitExit(child);
    const store = await openAt(root);
    t.after(() => store.close());
    const { addPathToStore } = await import('../../src/store/add.js');
    const valid = store.queryAllValidPaths();
    // The child may have finished before the kill; then the path is complete and valid.
    const p = await addPathToStore(store, src);
    if (valid.length > 0) assert.deepEqual(valid, [p]);
    const { verifyStore } = await import('../../src/store/verify.js');
    assert.equal((await verifyStore(store, { checkContents: true })).errors, false);
  });
});
