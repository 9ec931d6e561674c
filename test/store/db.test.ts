import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { hashBytes, formatHash } from '../../src/format/hash.js';
import { makeTextPath } from '../../src/format/store-path.js';
import { ContentAddressMismatch, PathInUse, RealisationConflict, ReferenceCycle, ReferenceNotValid } from '../../src/store/errors.js';
import { tempStore, openAt } from './util.js';

const SD = '/nix/store';
const h = (s: string) => hashBytes('sha256', s);
const p = (hash: string, name: string) => `${SD}/${hash.padEnd(32, '0')}-${name}`;

describe('store database', () => {
  test('a new store has Nix 2.8 schema files, WAL mode and every table, index and trigger', async (t) => {
    const { store, root } = await tempStore(t);
    const dbDir = join(root, 'nix/var/nix/db');
    assert.equal(readFileSync(join(dbDir, 'schema'), 'utf8'), '10');
    assert.equal(readFileSync(join(dbDir, 'ca-schema'), 'utf8'), '3');
    const db = new Database(join(dbDir, 'db.sqlite'), { readonly: true });
    t.after(() => db.close());
    const objs = db.prepare("select type, name from sqlite_master where name not like 'sqlite_%' order by type, name").all();
    assert.deepEqual(objs, [
      { type: 'index', name: 'IndexDerivationOutputs' },
      { type: 'index', name: 'IndexRealisations' },
      { type: 'index', name: 'IndexRealisationsRefs' },
      { type: 'index', name: 'IndexRealisationsRefsOnOutputPath' },
      { type: 'index', name: 'IndexReference' },
      { type: 'index', name: 'IndexReferrer' },
      { type: 'table', name: 'DerivationOutputs' },
      { type: 'table', name: 'Realisations' },
      { type: 'table', name: 'RealisationsRefs' },
      { type: 'table', name: 'Refs' },
      { type: 'table', name: 'ValidPaths' },
      { type: 'trigger', name: 'DeleteSelfRefs' },
    ]);
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(store.queryAllValidPaths().length, 0);
  });

  test('register and query: hash stored as sha256:<base16>, nulls as Nix writes them', async (t) => {
    const { store, root } = await tempStore(t);
    const a = p('a', 'a');
    const b = p('b', 'b');
    store.db.registerValidPaths([
      { info: { path: b, narHash: h('b'), narSize: 8, references: [a, b], deriver: null, registrationTime: 1700000000, ultimate: true, sigs: ['k:2', 'k:1'] } },
      { info: { path: a, narHash: h('a'), narSize: 0, references: [] } },
    ]);
    const info = store.requirePathInfo(b);
    assert.deepEqual(info.references, [a, b]);
    assert.equal(info.narSize, 8);
    assert.equal(info.ultimate, true);
    assert.deepEqual(info.sigs, ['k:1', 'k:2']);
    assert.equal(info.registrationTime, 1700000000);
    assert.deepEqual(store.queryReferrers(a), [b]);
    assert.deepEqual(store.queryReferrers(b), [b]);
    const db = new Database(join(root, 'nix/var/nix/db/db.sqlite'), { readonly: true });
    t.after(() => db.close());
    const row = db.prepare('select * from ValidPaths where path = ?').get(a) as Record<string, unknown>;
    assert.equal(row.hash, formatHash(h('a'), 'base16'));
    assert.match(String(row.hash), /^sha256:[0-9a-f]{64}$/);
    assert.equal(row.narSize, null);
    assert.equal(row.ultimate, null);
    assert.equal(row.sigs, null);
    assert.equal(row.deriver, null);
    assert.ok(Number(row.registrationTime) > 1600000000);
    assert.equal(store.queryPathFromHashPart('b'.padEnd(32, '0')), b);
    assert.equal(store.queryPathFromHashPart('c'.padEnd(32, '0')), null);
  });

  test('a reference that is not valid rolls back the whole batch', async (t) => {
    const { store } = await tempStore(t);
    const a = p('a', 'a');
    const missing = p('m', 'missing');
    assert.throws(
      () => store.db.registerValidPaths([
        { info: { path: a, narHash: h('a'), narSize: 1, references: [] } },
        { info: { path: p('b', 'b'), narHash: h('b'), narSize: 1, references: [missing] } },
      ]),
      (e: unknown) => e instanceof ReferenceNotValid && e.message === `cannot register '${p('b', 'b')}': its reference '${missing}' is not valid`,
    );
    assert.equal(store.isValidPath(a), false);
  });

  test('a reference cycle between new paths is an error naming both paths', async (t) => {
    const { store } = await tempStore(t);
    const a = p('a', 'a');
    const b = p('b', 'b');
    assert.throws(
      () => store.db.registerValidPaths([
        { info: { path: a, narHash: h('a'), narSize: 1, references: [b] } },
        { info: { path: b, narHash: h('b'), narSize: 1, references: [a] } },
      ]),
      (e: unknown) => e instanceof ReferenceCycle && e.message === `cycle detected in the references of '${a}' from '${b}'`,
    );
    assert.equal(store.isValidPath(a), false);
    assert.equal(store.isValidPath(b), false);
  });

  test('a path claiming a content address it does not have is refused', async (t) => {
    const { store } = await tempStore(t);
    const good = makeTextPath(SD, h('x'), 'x');
    const ca = `text:${formatHash(h('x'))}`;
    store.db.registerValidPaths([{ info: { path: good, narHash: h('n'), narSize: 1, references: [], ca } }]);
    assert.equal(store.requirePathInfo(good).ca, ca);
    const bad = p('z', 'x');
    assert.throws(
      () => store.db.registerValidPaths([{ info: { path: bad, narHash: h('n'), narSize: 1, references: [], ca } }]),
      (e: unknown) => e instanceof ContentAddressMismatch && e.message.includes(`'${bad}'`) && e.message.includes(good),
    );
  });

  test('invalidating a path still referred to fails; a self-reference does not count', async (t) => {
    const { store } = await tempStore(t);
    const a = p('a', 'a');
    const b = p('b', 'b');
    store.db.registerValidPaths([
      { info: { path: a, narHash: h('a'), narSize: 1, references: [a] } },
      { info: { path: b, narHash: h('b'), narSize: 1, references: [a] } },
    ]);
    assert.throws(() => store.invalidatePathChecked(a), (e: unknown) => e instanceof PathInUse && e.message === `cannot delete path '${a}' because it is in use by '${b}'`);
    store.invalidatePathChecked(b);
    store.invalidatePathChecked(a);
    assert.deepEqual(store.queryAllValidPaths(), []);
  });

  test('realisations: register, query with dependencies, conflicting output refused', async (t) => {
    const { store } = await tempStore(t);
    const o1 = p('r', 'out1');
    const o2 = p('q', 'out2');
    store.db.registerValidPaths([
      { info: { path: o1, narHash: h('1'), narSize: 1, references: [] } },
      { info: { path: o2, narHash: h('2'), narSize: 1, references: [] } },
    ]);
    const id1 = { drvHash: h('drv1'), outputName: 'out' };
    const id2 = { drvHash: h('drv2'), outputName: 'out' };
    store.registerRealisation({ id: id1, outPath: o1, signatures: ['s1'], dependentRealisations: new Map() });
    const key1 = `${formatHash(h('drv1'), 'base16')}!out`;
    store.registerRealisation({ id: id2, outPath: o2, signatures: [], dependentRealisations: new Map([[key1, o1]]) });
    const r = store.queryRealisation(id2)!;
    assert.equal(r.outPath, o2);
    assert.deepEqual([...r.dependentRealisations], [[key1, o1]]);
    store.registerRealisation({ id: id1, outPath: o1, signatures: ['s0'], dependentRealisations: new Map() });
    assert.deepEqual(store.queryRealisation(id1)!.signatures, ['s0', 's1']);
    assert.throws(
      () => store.registerRealisation({ id: id1, outPath: o2, signatures: [], dependentRealisations: new Map() }),
      RealisationConflict,
    );
  });

  test('reopening keeps the data; two opens of one store see each other', async (t) => {
    const { store, root } = await tempStore(t);
    const a = p('a', 'a');
    store.db.registerValidPaths([{ info: { path: a, narHash: h('a'), narSize: 1, references: [] } }]);
    const other = await openAt(root);
    t.after(() => other.close());
    assert.equal(other.isValidPath(a), true);
  });
});
