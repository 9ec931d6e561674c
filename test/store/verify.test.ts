import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { addTextToStore } from '../../src/store/add.js';
import { verifyStore } from '../../src/store/verify.js';
import { tempStore } from './util.js';

describe('verify', () => {
  test('a clean store has no problems', async (t) => {
    const { store } = await tempStore(t);
    await addTextToStore(store, 'a', 'a');
    const res = await verifyStore(store, { checkContents: true });
    assert.deepEqual(res, { errors: false, problems: [], checked: 1 });
  });

  test('a vanished path without referrers is unregistered; with a valid referrer it is an error', async (t) => {
    const { store } = await tempStore(t);
    const lone = await addTextToStore(store, 'lone', 'lone');
    const dep = await addTextToStore(store, 'dep', 'dep');
    const top = await addTextToStore(store, 'top', `top ${dep}`, [dep]);
    rmSync(store.toRealPath(lone));
    rmSync(store.toRealPath(dep));
    const res = await verifyStore(store, { repair: true });
    assert.equal(res.errors, true);
    assert.deepEqual(
      res.problems.map((p) => [p.kind, p.path, p.repaired]),
      [
        ['missing-with-referrers', dep, null],
        ['missing', lone, 'unregistered'],
      ].sort((a, b) => (String(a[1]) < String(b[1]) ? -1 : 1)),
    );
    assert.equal(store.isValidPath(lone), false);
    assert.equal(store.isValidPath(dep), true);
    assert.equal(store.isValidPath(top), true);
  });

  test('--check-contents finds a modified path; a missing narSize is filled in', async (t) => {
    const { store, root } = await tempStore(t);
    const a = await addTextToStore(store, 'a', 'original');
    const b = await addTextToStore(store, 'b', 'b');
    chmodSync(store.toRealPath(a), 0o644);
    writeFileSync(store.toRealPath(a), 'tampered');
    const db = new Database(`${root}/nix/var/nix/db/db.sqlite`);
    db.prepare('update ValidPaths set narSize = null where path = ?').run(b);
    db.close();
    const res = await verifyStore(store, { checkContents: true });
    assert.equal(res.errors, true);
    assert.deepEqual(res.problems.map((p) => [p.kind, p.path]), [['hash-mismatch', a]]);
    assert.match(res.problems[0]!.message, new RegExp(`^path '${a}' was modified! expected hash 'sha256:[0-9a-z]{52}', got 'sha256:[0-9a-z]{52}'$`));
    assert.equal(store.requirePathInfo(b).narSize, 120);
  });
});
