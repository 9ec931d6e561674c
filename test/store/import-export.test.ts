import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addPathToStore, addTextToStore } from '../../src/store/add.js';
import { BadImportEntry, PathModified } from '../../src/store/errors.js';
import { exportPaths } from '../../src/store/export.js';
import { importPaths } from '../../src/store/import.js';
import type { LocalStore } from '../../src/store/local-store.js';
import { tempStore } from './util.js';

async function collect(gen: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of gen) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

function* chunked(data: Buffer, size: number): Generator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function populate(store: LocalStore, dir: string) {
  const dep = await addTextToStore(store, 'dep', 'dep');
  const top = await addTextToStore(store, 'top', `top ${dep}`, [dep]);
  mkdirSync(join(dir, 'tree', 'd'), { recursive: true });
  writeFileSync(join(dir, 'tree', 'd', 'big'), Buffer.alloc(300_000, 7));
  writeFileSync(join(dir, 'tree', 'x'), 'x');
  chmodSync(join(dir, 'tree', 'x'), 0o755);
  const tree = await addPathToStore(store, join(dir, 'tree'));
  return { dep, top, tree };
}

function listing(store: LocalStore): string[] {
  return readdirSync(store.realStoreDir).filter((n) => n !== '.links').sort();
}

describe('export and import', () => {
  test('round trip: same metadata, references first, every chunking', async (t) => {
    const { store: a, dir } = await tempStore(t);
    const { dep, top, tree } = await populate(a, dir);
    const stream = await collect(exportPaths(a, [top, tree, dep]));
    for (const size of [1, 7, 4096, 1 << 20]) {
      const { store: b } = await tempStore(t);
      const res = await importPaths(b, chunked(stream, size));
      assert.deepEqual(res.paths, a.topoSortPaths([dep, top, tree]).reverse());
      assert.equal(res.paths.indexOf(dep) < res.paths.indexOf(top), true, 'references come first');
      assert.deepEqual(new Set(res.added), new Set([dep, top, tree]));
      for (const p of [dep, top, tree]) {
        const ia = a.requirePathInfo(p);
        const ib = b.requirePathInfo(p);
        assert.deepEqual({ ...ib, registrationTime: 0, ca: null }, { ...ia, registrationTime: 0, ca: null });
        assert.equal(ib.ca, null, 'the export stream carries no content address');
      }
      assert.deepEqual(listing(b), [dep, top, tree].map((p) => p.slice(11)).sort());
    }
  });

  test('a truncated or corrupt stream leaves the store exactly as it was', async (t) => {
    const { store: a, dir } = await tempStore(t);
    const { top, tree, dep } = await populate(a, dir);
    const stream = await collect(exportPaths(a, [dep, top, tree]));
    const { store: b } = await tempStore(t);
    const keep = await addTextToStore(b, 'keep', 'keep');
    const before = listing(b);
    const cuts = [1, 8, 100, 200, stream.length - 300_100, stream.length - 9, stream.length - 1];
    for (const cut of cuts) {
      await assert.rejects(importPaths(b, chunked(stream.subarray(0, cut), 65536)), (e: unknown) => /E_BAD_(NAR|EXPORT)/.test(String((e as { code?: string }).code)), `cut at ${cut}`);
      assert.deepEqual(listing(b), before, `cut at ${cut}`);
      assert.deepEqual(b.queryAllValidPaths(), [keep]);
    }
    const corrupt = Buffer.from(stream);
    corrupt.write('nix-archive-2', 16, 'latin1');
    await assert.rejects(importPaths(b, [corrupt]), (e: unknown) => (e as { code?: string }).code === 'E_BAD_NAR');
    assert.deepEqual(listing(b), before);
  });

  test('a reference neither in the store nor earlier in the stream is refused', async (t) => {
    const { store: a, dir } = await tempStore(t);
    const { top, dep } = await populate(a, dir);
    const stream = await collect(exportPaths(a, [top]));
    const { store: b } = await tempStore(t);
    await assert.rejects(importPaths(b, [stream]), (e: unknown) => e instanceof BadImportEntry && e.message === `cannot import '${top}': its reference '${dep}' is neither in the store nor earlier in the stream`);
    assert.deepEqual(listing(b), []);
    // With the reference already valid, the same stream imports.
    await addTextToStore(b, 'dep', 'dep');
    const res = await importPaths(b, [stream]);
    assert.deepEqual(res.paths, [top]);
  });

  test('paths already valid are skipped but listed', async (t) => {
    const { store: a, dir } = await tempStore(t);
    const { top, dep } = await populate(a, dir);
    const stream = await collect(exportPaths(a, [top, dep]));
    const res = await importPaths(a, [stream]);
    assert.deepEqual(res.paths, [dep, top]);
    assert.deepEqual(res.added, []);
  });

  test('exporting a path whose contents changed fails', async (t) => {
    const { store: a } = await tempStore(t);
    const p = await addTextToStore(a, 'm', 'original');
    chmodSync(a.toRealPath(p), 0o644);
    writeFileSync(a.toRealPath(p), 'tampered');
    await assert.rejects(collect(exportPaths(a, [p])), (e: unknown) => e instanceof PathModified && e.message.startsWith(`hash of path '${p}' has changed`));
  });
});
