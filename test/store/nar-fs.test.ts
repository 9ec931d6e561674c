import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync, chmodSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { BadNar, BadNarEvent } from '../../src/format/nar.js';
import { NarWriter } from '../../src/format/nar-writer.js';
import {
  dumpPath,
  hashFile,
  hashPath,
  NarRestoreError,
  NarRestorer,
  restoreNar,
  streamNar,
  UnsupportedFileType,
  NAR_CHUNK_SIZE,
} from '../../src/store/nar-fs.js';
import { tempDir } from '../helpers/tmp.js';
import { REPO_ROOT } from '../helpers/host.js';
import { arbTree, dir, file, materialise, symlink, treeEvents, type Tree } from '../fixtures/nars/trees.js';

async function collect(gen: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const hex = (d: Uint8Array): string => Buffer.from(d).toString('hex');

const sample: Tree = dir({
  bin: dir({ tool: file('#!/bin/sh\necho tool\n', true) }),
  'empty-dir': dir({}),
  'empty-file': file(''),
  'ünï ✓': file('unicode name\n'),
  link: symlink('bin/tool'),
  abs: symlink('/nonexistent/target'),
});

describe('dumpPath / hashPath', () => {
  test('dump of a tree equals the NAR of its events; hash and size agree', async (t) => {
    const d = tempDir(t);
    const root = join(d, 'tree');
    materialise(root, sample);
    const want = NarWriter.encodeAll(treeEvents(sample));
    const dump = await collect(dumpPath(root));
    assert.deepEqual(dump, Buffer.from(want));
    const h = await hashPath(root);
    assert.equal(h.hash.algo, 'sha256');
    assert.equal(hex(h.hash.digest), sha256(want));
    assert.equal(h.narSize, want.length);
    const h512 = await hashPath(root, 'sha512');
    assert.equal(hex(h512.hash.digest), createHash('sha512').update(want).digest('hex'));
  });

  test('matches the nix-store --dump fixture of the same kind of file', async (t) => {
    const d = tempDir(t);
    const p = join(d, 'hello');
    writeFileSync(p, '#!/bin/sh\necho hello\n');
    chmodSync(p, 0o755);
    assert.deepEqual(await collect(dumpPath(p)), readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'nars', 'valid-executable.nar')));
  });

  test('property: random trees (including non-UTF-8 names) dump to the NAR of their events', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(arbTree({ maxDepth: 3 }), arbTree({ maxDepth: 3, rawNames: true })), async (tree) => {
        const d = tempDir(null);
        try {
          const root = join(d, 'root');
          materialise(root, tree);
          const want = NarWriter.encodeAll(treeEvents(tree));
          assert.deepEqual(await collect(dumpPath(root)), Buffer.from(want));
          assert.equal(hex((await hashPath(root)).hash.digest), sha256(want));
        } finally {
          (await import('../helpers/tmp.js')).removeTree(d);
        }
      }),
      { numRuns: 60 },
    );
  });

  test('large files go through the chunked reader: sizes around the chunk size', async (t) => {
    const d = tempDir(t);
    for (const size of [256 * 1024 + 1, NAR_CHUNK_SIZE - 3, NAR_CHUNK_SIZE, 3 * NAR_CHUNK_SIZE + 5]) {
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4096) data[i] = (i / 4096) & 0xff;
      const p = join(d, `f${size}`);
      writeFileSync(p, data);
      const tree = dir({ a: file('x'), big: file(data), z: file('y', true) });
      const root = join(d, `t${size}`);
      materialise(root, tree);
      const want = NarWriter.encodeAll(treeEvents(tree));
      const chunks: Uint8Array[] = [];
      for await (const c of dumpPath(root)) chunks.push(c);
      assert.ok(chunks.every((c) => c.length <= NAR_CHUNK_SIZE));
      assert.deepEqual(Buffer.concat(chunks), Buffer.from(want), `size ${size}`);
      assert.equal(hex((await hashPath(root)).hash.digest), sha256(want), `size ${size}`);
      let n = 0;
      const h = createHash('sha256');
      assert.equal(await streamNar(root, (c) => { h.update(c); n += c.length; }), want.length);
      assert.equal(h.digest('hex'), sha256(want));
      assert.equal(hex((await hashFile(p, 'sha256')).digest), sha256(data));
    }
  });

  test('dumpPath chunks are independent memory (safe to keep)', async (t) => {
    const d = tempDir(t);
    const root = join(d, 'r');
    const big = Buffer.alloc(3 * NAR_CHUNK_SIZE, 1);
    materialise(root, dir({ a: file(big), b: file(Buffer.alloc(3 * NAR_CHUNK_SIZE, 2)) }));
    const kept: Uint8Array[] = [];
    for await (const c of dumpPath(root)) kept.push(c);
    const buffers = new Set(kept.map((c) => c.buffer));
    assert.equal(buffers.size, kept.length);
  });

  test('a top-level symlink is dumped as a symlink, not followed', async (t) => {
    const d = tempDir(t);
    writeFileSync(join(d, 'target'), 'x');
    symlinkSync('target', join(d, 'l'));
    const want = NarWriter.encodeAll([{ type: 'symlink', target: 'target' }]);
    assert.deepEqual(await collect(dumpPath(join(d, 'l'))), Buffer.from(want));
  });

  test('sockets are refused with the path in the message', async (t) => {
    const d = tempDir(t);
    mkdirSync(join(d, 'r'));
    const sock = join(d, 'r', 's.sock');
    const server = createServer();
    await new Promise<void>((res) => server.listen(sock, res));
    try {
      await assert.rejects(
        collect(dumpPath(join(d, 'r'))),
        (e: unknown) => e instanceof UnsupportedFileType && e.code === 'E_UNSUPPORTED_FILE_TYPE' && e.message.includes(sock),
      );
      await assert.rejects(hashPath(join(d, 'r')), UnsupportedFileType);
    } finally {
      server.close();
    }
  });

  test('a missing path fails with ENOENT', async () => {
    await assert.rejects(hashPath('/nonexistent/drvbox-nar-test'), /ENOENT/);
  });
});

describe('restoreNar / NarRestorer', () => {
  test('restores a tree that dumps to the same NAR, with Nix’s modes', async (t) => {
    const d = tempDir(t);
    const nar = NarWriter.encodeAll(treeEvents(sample));
    const out = join(d, 'out');
    await restoreNar(out, [nar.subarray(0, 100), nar.subarray(100)]);
    assert.deepEqual(await collect(dumpPath(out)), Buffer.from(nar));
    assert.equal(lstatSync(join(out, 'bin', 'tool')).mode & 0o111, 0o111);
    assert.equal(lstatSync(join(out, 'empty-file')).mode & 0o111, 0);
    assert.equal(readlinkSync(join(out, 'link')), 'bin/tool');
    assert.deepEqual(readdirSync(join(out, 'empty-dir')), []);
  });

  test('property: restore(dump(tree)) dumps identically, raw names included', async () => {
    await fc.assert(
      fc.asyncProperty(arbTree({ maxDepth: 3, rawNames: true }), async (tree) => {
        const d = tempDir(null);
        try {
          const nar = NarWriter.encodeAll(treeEvents(tree));
          await restoreNar(join(d, 'x'), [nar]);
          assert.deepEqual(await collect(dumpPath(join(d, 'x'))), Buffer.from(nar));
        } finally {
          (await import('../helpers/tmp.js')).removeTree(d);
        }
      }),
      { numRuns: 40 },
    );
  });

  test('an existing target is refused and left alone', async (t) => {
    const d = tempDir(t);
    const out = join(d, 'exists');
    mkdirSync(out);
    writeFileSync(join(out, 'keep'), 'mine');
    await assert.rejects(
      restoreNar(out, [NarWriter.encodeAll(treeEvents(sample))]),
      (e: unknown) => e instanceof NarRestoreError && e.code === 'E_NAR_RESTORE' && e.fields.errno === 'EEXIST' && e.message.includes(out),
    );
    assert.equal(readFileSync(join(out, 'keep'), 'utf8'), 'mine');
  });

  test('a malformed or truncated NAR leaves nothing behind', async (t) => {
    const d = tempDir(t);
    const nar = NarWriter.encodeAll(treeEvents(sample));
    const out = join(d, 'out');
    await assert.rejects(restoreNar(out, [nar.subarray(0, nar.length - 9)]), (e: unknown) => e instanceof BadNar && e.rule === 'truncated');
    assert.equal(existsSync(out), false);
    const bad = Buffer.from(nar);
    bad[bad.length - 20] = 7; // inside the final ")" token
    await assert.rejects(restoreNar(out, [bad]), BadNar);
    assert.equal(existsSync(out), false);
    await assert.rejects(
      restoreNar(out, [nar, Buffer.from('extra')]),
      (e: unknown) => e instanceof BadNar && e.rule === 'trailing-data' && e.offset === nar.length,
    );
    assert.equal(existsSync(out), false);
  });

  test('NarRestorer refuses names that would escape the target, before touching the disk', (t) => {
    const d = tempDir(t);
    const r = new NarRestorer(join(d, 'x'));
    r.handle({ type: 'directory' });
    for (const name of ['..', '.', 'a/b', '', 'a\0']) {
      assert.throws(() => r.handle({ type: 'entry', name }), BadNarEvent);
    }
    assert.deepEqual(readdirSync(join(d, 'x')), []);
  });

  test('NarRestorer checks contents sizes and completeness', (t) => {
    const d = tempDir(t);
    const r = new NarRestorer(join(d, 'f'));
    r.handle({ type: 'regular', executable: false, size: 3 });
    r.handle({ type: 'contents', data: Buffer.from('ab') });
    assert.throws(() => r.handle({ type: 'regularEnd' }), (e: unknown) => e instanceof BadNarEvent && e.rule === 'contents-size');
    r.abort();
    const r2 = new NarRestorer(join(d, 'g'));
    r2.handle({ type: 'directory' });
    assert.throws(() => r2.finish(), (e: unknown) => e instanceof BadNarEvent && e.rule === 'event-order');
  });

  test('symlinks in the tree are never followed when restoring', async (t) => {
    const d = tempDir(t);
    mkdirSync(join(d, 'outside'));
    // A NAR cannot put an entry under a symlink; a duplicate name is refused before any write.
    const events = [
      { type: 'directory' as const },
      { type: 'entry' as const, name: 'a' },
      { type: 'symlink' as const, target: join(d, 'outside') },
      { type: 'entryEnd' as const },
      { type: 'entry' as const, name: 'a' },
    ];
    const r = new NarRestorer(join(d, 'x'));
    assert.throws(() => events.forEach((e) => r.handle(e)), (e: unknown) => e instanceof BadNarEvent && e.rule === 'duplicate');
    assert.deepEqual(readdirSync(join(d, 'outside')), []);
  });
});

describe('hashFile', () => {
  test('flat hash of contents, following a symlink', async (t) => {
    const d = tempDir(t);
    writeFileSync(join(d, 'f'), 'hello\n');
    symlinkSync('f', join(d, 'l'));
    assert.equal(hex((await hashFile(join(d, 'l'), 'sha256')).digest), sha256(Buffer.from('hello\n')));
    const md5 = await hashFile(join(d, 'f'), 'md5');
    assert.equal(md5.algo, 'md5');
    assert.equal(hex(md5.digest), 'b1946ac92492d2347c6235b4d2611184');
    writeFileSync(join(d, 'empty'), '');
    assert.equal(hex((await hashFile(join(d, 'empty'), 'sha256')).digest), sha256(new Uint8Array(0)));
  });
});
