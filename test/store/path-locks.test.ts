import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { lockPaths } from '../../src/store/path-locks.js';
import { tempDir } from '../helpers/tmp.js';
import { Messages, storeChild, waitExit } from './util.js';

describe('path locks', () => {
  test('a held lock makes a non-waiting locker get null, and a waiting one wait', async (t) => {
    const dir = tempDir(t);
    const p = join(dir, 'x');
    const a = await lockPaths([p]);
    assert.ok(a);
    assert.equal(await lockPaths([p], { wait: false }), null);
    let got = false;
    const waiting = lockPaths([p]).then((l) => {
      got = true;
      return l;
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got, false);
    a.release();
    const b = await waiting;
    assert.ok(b);
    b.release();
  });

  test('releasing with deletion removes the file; a waiter on the old file retries on a fresh one', async (t) => {
    const dir = tempDir(t);
    const p = join(dir, 'y');
    const a = (await lockPaths([p]))!;
    const waiting = lockPaths([p]);
    await new Promise((r) => setTimeout(r, 30));
    a.setDeletion(true);
    a.release();
    const b = (await waiting)!;
    // b holds a lock on a live, empty lock file: nobody else can take it.
    assert.equal(statSync(p + '.lock').size, 0);
    assert.equal(await lockPaths([p], { wait: false }), null);
    b.setDeletion(true);
    b.release();
    assert.equal(existsSync(p + '.lock'), false);
  });

  test('a set that overlaps a held lock is not partly taken', async (t) => {
    const dir = tempDir(t);
    const [x, y] = [join(dir, 'a'), join(dir, 'b')];
    const held = (await lockPaths([y]))!;
    assert.equal(await lockPaths([x, y], { wait: false }), null);
    const onlyX = await lockPaths([x], { wait: false });
    assert.ok(onlyX, 'x must not stay locked after the failed attempt');
    onlyX.release();
    held.release();
  });

  test('a lock held by another process excludes us; kill -9 of that process frees it (no stale lock)', async (t) => {
    const dir = tempDir(t);
    const p = join(dir, 'z');
    const child = storeChild(dir, join(dir, 'unused'), `
      const l = await S.lockPaths([${JSON.stringify(p)}]);
      send({ locked: true });
      setInterval(() => {}, 1000);
    `);
    const msgs = new Messages(child);
    assert.deepEqual(await msgs.next(), { locked: true });
    assert.equal(await lockPaths([p], { wait: false }), null);
    child.kill('SIGKILL');
    const exit = await waitExit(child);
    assert.equal(exit.signal, 'SIGKILL');
    const l = await lockPaths([p], { wait: false });
    assert.ok(l, 'the dead process must not leave a blocking lock');
    assert.equal(readFileSync(p + '.lock', 'utf8'), '');
    l.release();
  });
});
