import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { formatHash } from '../../src/format/hash.js';
import { BadStorePathName } from '../../src/format/store-path.js';
import { addDumpToStore, addNarToStore, addPathToStore, addTextToStore } from '../../src/store/add.js';
import { BadAddSource, NarHashMismatch } from '../../src/store/errors.js';
import { dumpPath } from '../../src/store/nar-fs.js';
import { tempStore } from './util.js';

/** The tree of the Nix vectors below: a file, a setuid executable, a symlink, an empty dir. */
function makeTree(dir: string): string {
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'sub'), { recursive: true });
  mkdirSync(join(tree, 'empty'));
  writeFileSync(join(tree, 'a'), 'hello\n');
  writeFileSync(join(tree, 'sub', 'run'), '#!/bin/sh\necho hi\n');
  chmodSync(join(tree, 'sub', 'run'), 0o4755);
  symlinkSync('a', join(tree, 'link'));
  return tree;
}

function storeEntries(root: string): string[] {
  return readdirSync(join(root, 'nix/store')).filter((n) => n !== '.links').sort();
}

describe('adding paths', () => {
  // Expected values from Nix 2.8: nix-store --add / --add-fixed of the same inputs.
  test('recursive: same path, NAR hash, size and ca as nix-store --add; canonical metadata', async (t) => {
    const { store, dir, root } = await tempStore(t);
    const tree = makeTree(dir);
    const p = await addPathToStore(store, tree);
    assert.equal(p, '/nix/store/lj2jx50nibymw61n96ks4ifkc5k41b23-tree');
    const info = store.requirePathInfo(p);
    assert.equal(formatHash(info.narHash, 'sri'), 'sha256-JFvMVuEBvi+XqO9A38tndcrtH36x63+yJeurcsfdXJA=');
    assert.equal(info.narSize, 1056);
    assert.equal(info.ca, 'fixed:r:sha256:142wvp3p5azb4nr7zsxigqgyvjkmcz5xyh7gm2bjzgh1w5bcqnr4');
    assert.equal(info.ultimate, false);
    const real = store.toRealPath(p);
    const modes: Record<string, string> = {};
    for (const rel of ['', 'a', 'empty', 'sub', 'sub/run']) {
      const st = lstatSync(join(real, rel));
      modes[rel] = (st.mode & 0o7777).toString(8) + '@' + st.mtimeMs;
    }
    assert.deepEqual(modes, { '': '555@1000', a: '444@1000', empty: '555@1000', sub: '555@1000', 'sub/run': '555@1000' });
    assert.equal(lstatSync(join(real, 'link')).mtimeMs, 1000);
    // Nothing else left in the store dir: no temp names, no lock files.
    assert.deepEqual(storeEntries(root), ['lj2jx50nibymw61n96ks4ifkc5k41b23-tree']);
  });

  test('recursive sha1 and flat sha256 give Nix\'s paths', async (t) => {
    const { store, dir } = await tempStore(t);
    const tree = makeTree(dir);
    assert.equal(await addPathToStore(store, tree, { hashAlgo: 'sha1' }), '/nix/store/9jb3cskp4lkkkdxajpz17yvc6yyjw4vn-tree');
    assert.equal(store.requirePathInfo('/nix/store/9jb3cskp4lkkkdxajpz17yvc6yyjw4vn-tree').ca, 'fixed:r:sha1:amm5ph0x0gvgxiq2pnw34h85di4jikxn');
    writeFileSync(join(dir, 'f.txt'), 'hello\n');
    const flat = await addPathToStore(store, join(dir, 'f.txt'), { method: 'flat' });
    assert.equal(flat, '/nix/store/d4b4lmbd433fa2xcdysz7p7zahnqh1z4-f.txt');
    const info = store.requirePathInfo(flat);
    assert.equal(formatHash(info.narHash, 'sri'), 'sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=');
    assert.equal(info.narSize, 120);
    assert.equal(info.ca, 'fixed:sha256:00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq');
    chmodSync(join(dir, 'f.txt'), 0o755); // flat ignores the executable bit
    assert.equal(await addPathToStore(store, join(dir, 'f.txt'), { method: 'flat', hashAlgo: 'sha1' }), '/nix/store/4kn848vczvkyzl9npz1zz3f585s6byn3-f.txt');
    assert.equal(lstatSync(store.toRealPath('/nix/store/4kn848vczvkyzl9npz1zz3f585s6byn3-f.txt')).mode & 0o777, 0o444);
  });

  test('text with references = builtins.toFile; adding twice is a no-op', async (t) => {
    const { store, root } = await tempStore(t);
    const foo = await addTextToStore(store, 'foo', 'bar');
    assert.equal(foo, '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo');
    const info = store.requirePathInfo(foo);
    assert.equal(formatHash(info.narHash, 'sri'), 'sha256-v99DtL7wY23pozQiKq4pK76RH8H7O4kV82q32XRlz/Y=');
    assert.equal(info.ca, 'text:sha256:1fcgpy7vc4ammr7s17j2xq88scswkgz23dqzc04g8sx5vcp2pppw');
    const withRef = await addTextToStore(store, 'x', `see ${foo}`, [foo]);
    assert.deepEqual(store.requirePathInfo(withRef).references, [foo]);
    const t1 = store.requirePathInfo(foo).registrationTime;
    assert.equal(await addTextToStore(store, 'foo', 'bar'), foo);
    assert.equal(store.requirePathInfo(foo).registrationTime, t1);
    assert.equal(readFileSync(store.toRealPath(foo), 'utf8'), 'bar');
    assert.equal(storeEntries(root).length, 2);
  });

  test('repair rewrites the contents of a valid path', async (t) => {
    const { store } = await tempStore(t);
    const foo = await addTextToStore(store, 'foo', 'bar');
    const real = store.toRealPath(foo);
    chmodSync(real, 0o644);
    writeFileSync(real, 'corrupted');
    await addTextToStore(store, 'foo', 'bar', [], { repair: true });
    assert.equal(readFileSync(real, 'utf8'), 'bar');
    assert.equal(lstatSync(real).mode & 0o777, 0o444);
  });

  test('an invalid leftover at the final name is replaced', async (t) => {
    const { store, root } = await tempStore(t);
    const real = join(root, 'nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo');
    mkdirSync(join(real, 'junk'), { recursive: true });
    assert.equal(await addTextToStore(store, 'foo', 'bar'), '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo');
    assert.equal(readFileSync(real, 'utf8'), 'bar');
  });

  test('bad sources and names are typed errors; nothing is left behind', async (t) => {
    const { store, dir, root } = await tempStore(t);
    await assert.rejects(addPathToStore(store, join(dir, 'nope')), (e: unknown) => e instanceof BadAddSource && e.message === `cannot add '${join(dir, 'nope')}' to the store: it does not exist`);
    mkdirSync(join(dir, 'd'));
    await assert.rejects(addPathToStore(store, join(dir, 'd'), { method: 'flat' }), BadAddSource);
    await assert.rejects(addPathToStore(store, join(dir, 'd'), { name: '.hidden' }), BadStorePathName);
    mkfifoOrSkip(join(dir, 'd', 'fifo'));
    await assert.rejects(addPathToStore(store, join(dir, 'd')), (e: unknown) => (e as { code?: string }).code === 'E_UNSUPPORTED_FILE_TYPE');
    assert.deepEqual(storeEntries(root), []);
    assert.deepEqual(store.queryAllValidPaths(), []);
  });

  test('addNarToStore checks the NAR hash; a mismatch leaves nothing', async (t) => {
    const { store, dir, root } = await tempStore(t);
    const tree = makeTree(dir);
    const p = '/nix/store/lj2jx50nibymw61n96ks4ifkc5k41b23-tree';
    const good = { path: p, narHash: (await import('../../src/format/hash.js')).parseHash('sha256-JFvMVuEBvi+XqO9A38tndcrtH36x63+yJeurcsfdXJA='), narSize: 1056, references: [], ca: 'fixed:r:sha256:142wvp3p5azb4nr7zsxigqgyvjkmcz5xyh7gm2bjzgh1w5bcqnr4' };
    const wrong = { ...good, narHash: { algo: 'sha256' as const, digest: new Uint8Array(32) } };
    await assert.rejects(addNarToStore(store, wrong, dumpPath(tree)), (e: unknown) => e instanceof NarHashMismatch && e.message.startsWith(`hash mismatch importing path '${p}'`));
    assert.deepEqual(storeEntries(root), []);
    assert.equal(await addNarToStore(store, good, dumpPath(tree)), true);
    assert.equal(await addNarToStore(store, good, dumpPath(tree)), false);
    assert.equal(store.isValidPath(p), true);
  });

  test('addNarToStore: a self-referential CA path is checked modulo its own hash part', async (t) => {
    const { store } = await tempStore(t);
    const { NarWriter } = await import('../../src/format/nar-writer.js');
    const { HashModuloSink } = await import('../../src/format/rewrite.js');
    const { hashBytes } = await import('../../src/format/hash.js');
    const { makeFixedOutputPath } = await import('../../src/format/store-path.js');
    const nar = (text: string) => {
      const data = Buffer.from(text);
      return Buffer.from(NarWriter.encodeAll([{ type: 'regular', executable: false, size: data.length }, { type: 'contents', data }, { type: 'regularEnd' }]));
    };
    const placeholder = '0'.repeat(31) + '1';
    const sink = new HashModuloSink('sha256', placeholder);
    sink.update(nar(`I am /nix/store/${placeholder}-self`));
    const modulo = sink.finish().hash;
    const path = makeFixedOutputPath('/nix/store', 'recursive', modulo, 'self', [], true);
    const final = nar(`I am ${path}`);
    const info = { path, narHash: hashBytes('sha256', final), narSize: final.length, references: [path], ca: `fixed:r:${formatHash(modulo)}` };
    assert.equal(await addNarToStore(store, info, [final]), true);
    assert.deepEqual(store.requirePathInfo(path).references, [path]);
    const { store: other } = await tempStore(t);
    const wrongCa = { ...info, ca: `fixed:r:${formatHash(hashBytes('sha256', final))}` };
    await assert.rejects(addNarToStore(other, wrongCa, [final]), (e: unknown) => (e as { code?: string }).code === 'E_CA_MISMATCH');
  });

  test('addDumpToStore: NAR (recursive) and raw contents (flat, text)', async (t) => {
    const { store, dir } = await tempStore(t);
    const tree = makeTree(dir);
    assert.equal(await addDumpToStore(store, dumpPath(tree), { name: 'tree', method: 'recursive' }), '/nix/store/lj2jx50nibymw61n96ks4ifkc5k41b23-tree');
    assert.equal(await addDumpToStore(store, [Buffer.from('hello\n')], { name: 'f.txt', method: 'flat' }), '/nix/store/d4b4lmbd433fa2xcdysz7p7zahnqh1z4-f.txt');
    assert.equal(await addDumpToStore(store, [Buffer.from('ba'), Buffer.from('r')], { name: 'foo', method: 'text' }), '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo');
    assert.equal(formatHash(store.requirePathInfo('/nix/store/d4b4lmbd433fa2xcdysz7p7zahnqh1z4-f.txt').narHash, 'sri'), 'sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=');
  });

  test('auto-optimise-store hard-links identical files through .links', async (t) => {
    const { store, dir, root } = await tempStore(t, { autoOptimiseStore: true });
    mkdirSync(join(dir, 'x'));
    mkdirSync(join(dir, 'y'));
    writeFileSync(join(dir, 'x', 'same'), 'same contents');
    writeFileSync(join(dir, 'y', 'same'), 'same contents');
    writeFileSync(join(dir, 'y', 'other'), 'other');
    const px = await addPathToStore(store, join(dir, 'x'));
    const py = await addPathToStore(store, join(dir, 'y'));
    const a = lstatSync(join(store.toRealPath(px), 'same'));
    const b = lstatSync(join(store.toRealPath(py), 'same'));
    assert.equal(a.ino, b.ino);
    assert.equal(a.nlink, 3);
    assert.equal(readdirSync(join(root, 'nix/store/.links')).length, 2);
    assert.equal((lstatSync(store.toRealPath(py)).mode & 0o777).toString(8), '555');
    assert.equal(lstatSync(store.toRealPath(py)).mtimeMs, 1000);
  });
});

function mkfifoOrSkip(path: string): void {
  // node has no mkfifo; the coreutils one is everywhere these tests run
  execFileSync('mkfifo', [path]);
  assert.ok(existsSync(path));
}
