// Two processes writing the same path at once converge on one valid copy;
// path locks serialise them.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Messages, openAt, storeChild, tempStore, waitExit } from './util.js';

describe('concurrency between processes', () => {
  test('two processes adding the same tree at once get the same path, registered once, nothing left over', async (t) => {
    const { dir, store } = await tempStore(t);
    const root = store.layout.root!;
    const src = join(dir, 'tree');
    mkdirSync(src);
    for (let i = 0; i < 50; i++) writeFileSync(join(src, `f${i}`), Buffer.alloc(100_000, i));
    const go = join(dir, 'go');
    const body = `
      const s = await openAt(root);
      const { existsSync } = await import('node:fs');
      send({ ready: true });
      while (!existsSync(${JSON.stringify(go)})) await new Promise((r) => setTimeout(r, 2));
      const p = await S.addPathToStore(s, ${JSON.stringify(src)});
      send({ path: p });
      s.close();
    `;
    const kids = [storeChild(dir, root, body), storeChild(dir, root, body)];
    const msgs = kids.map((k) => new Messages(k));
    for (const m of msgs) await m.next();
    writeFileSync(go, '');
    const paths = await Promise.all(msgs.map((m) => m.next()));
    for (const k of kids) assert.equal((await waitExit(k)).code, 0);
    const p = (paths[0] as { path: string }).path;
    assert.deepEqual(paths, [{ path: p }, { path: p }]);
    const s2 = await openAt(root);
    t.after(() => s2.close());
    assert.deepEqual(s2.queryAllValidPaths(), [p]);
    assert.deepEqual(readdirSync(s2.realStoreDir).filter((n) => n !== '.links'), [p.slice(11)]);
  });

  test('a path lock serialises two processes (the second gets it only after the first releases)', async (t) => {
    const { dir, store } = await tempStore(t);
    const root = store.layout.root!;
    const body = (who: string) => `
      const s = await openAt(root);
      send({ ready: true });
      const l = await s.lockPaths(['/nix/store/44444444444444444444444444444444-shared']);
      const got = Date.now();
      await new Promise((r) => setTimeout(r, 200));
      const released = Date.now();
      l.release();
      send({ who: ${JSON.stringify(who)}, got, released });
    `;
    const a = storeChild(dir, root, body('a'));
    const ma = new Messages(a);
    await ma.next();
    const b = storeChild(dir, root, body('b'));
    const mb = new Messages(b);
    await mb.next();
    const [ra, rb] = (await Promise.all([ma.next(), mb.next()])) as Array<{ got: number; released: number }>;
    const [first, second] = ra!.got <= rb!.got ? [ra!, rb!] : [rb!, ra!];
    assert.ok(second.got >= first.released, `overlap: ${JSON.stringify({ first, second })}`);
    await waitExit(a);
    await waitExit(b);
  });
});
