import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { tryLock } from '../../src/store/flock.js';
import { findTempRoots } from '../../src/store/gc-roots.js';
import { Messages, storeChild, tempStore, waitExit } from './util.js';

const P1 = '/nix/store/00000000000000000000000000000001-a';
const P2 = '/nix/store/00000000000000000000000000000002-b';
const P3 = '/nix/store/00000000000000000000000000000003-c';

describe('temp roots', () => {
  test('written as NUL-terminated paths to temproots/<pid>, seen by the collector, removed on close', async (t) => {
    const { store, root } = await tempStore(t);
    await store.addTempRoot(P1);
    await store.addTempRoot(P2);
    await store.addTempRoot(P1);
    const file = join(root, 'nix/var/nix/temproots', String(process.pid));
    assert.equal(readFileSync(file, 'latin1'), `${P1}\0${P2}\0`);
    assert.deepEqual([...findTempRoots(store.layout).keys()].sort(), [P1, P2]);
    store.close();
    assert.equal(existsSync(file), false);
  });

  test('addTempRoots: the new ones of several paths in one write, in order; known ones and repeats skipped', async (t) => {
    const { store, root } = await tempStore(t);
    await store.addTempRoot(P2);
    await store.addTempRoots([P1, P2, P3, P1]);
    await store.addTempRoots([P3, P2]);
    const file = join(root, 'nix/var/nix/temproots', String(process.pid));
    assert.equal(readFileSync(file, 'latin1'), `${P2}\0${P1}\0${P3}\0`);
    assert.deepEqual([...findTempRoots(store.layout).keys()].sort(), [P1, P2, P3]);
  });

  test('roots of a dead process are ignored and its file removed', async (t) => {
    const { store, dir, root } = await tempStore(t);
    const child = storeChild(dir, root, `
      const s = await openAt(root);
      await s.addTempRoot(${JSON.stringify(P1)});
      send({ pid: process.pid });
      setInterval(() => {}, 1000);
    `);
    const msgs = new Messages(child);
    const { pid } = (await msgs.next()) as { pid: number };
    assert.deepEqual([...findTempRoots(store.layout).keys()], [P1]);
    child.kill('SIGKILL');
    await waitExit(child);
    assert.deepEqual([...findTempRoots(store.layout).keys()], []);
    assert.equal(existsSync(join(root, 'nix/var/nix/temproots', String(pid))), false);
  });

  test('while a collection holds gc.lock, a new root is sent to its socket before addTempRoot returns', async (t) => {
    const { store } = await tempStore(t);
    const fd = openSync(store.layout.gcLockPath, constants.O_RDWR);
    t.after(() => closeSync(fd));
    assert.equal(tryLock(fd, 'exclusive', 'gc.lock'), true);
    const got: string[] = [];
    const server = createServer((sock) => {
      sock.setEncoding('latin1');
      sock.on('data', (d: string) => {
        for (const line of d.split('\n').filter(Boolean)) {
          got.push(line);
          sock.write('1');
        }
      });
    });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(store.layout.stateDir, 'gc-socket'), { recursive: true });
    await new Promise<void>((r) => server.listen(store.layout.gcSocketPath, () => r()));
    t.after(() => server.close());
    await store.addTempRoot(P2);
    assert.deepEqual(got, [P2]);
    assert.deepEqual([...findTempRoots(store.layout).keys()], [P2]);
    // Several at once: each is told to the collector before they are written.
    await store.addTempRoots([P1, P2, P3]);
    assert.deepEqual(got, [P2, P1, P3]);
    assert.deepEqual([...findTempRoots(store.layout).keys()].sort(), [P1, P2, P3]);
  });
});
