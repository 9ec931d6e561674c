// Store path computation and validation. Vectors are from Nix: the names of
// libstore-tests/path.cc, the downstream placeholder of
// libstore-tests/downstream-placeholder.cc, the placeholder in primops.cc's
// comment, and paths Nix 2.8 printed on this project's machines (toFile,
// nix-store --add, --add-fixed [--recursive] sha1/sha256, placeholder).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { hashBytes, parseHash } from '../../src/format/hash.js';
import {
  BadStorePath,
  BadStorePathName,
  DEFAULT_STORE_DIR,
  checkStorePathName,
  downstreamPlaceholder,
  hashPlaceholder,
  makeFixedOutputPath,
  makeOutputPath,
  makeSourcePath,
  makeStorePath,
  makeTextPath,
  outputPathName,
  parseStorePath,
  toStorePath,
} from '../../src/format/store-path.js';

const SD = DEFAULT_STORE_DIR;
const HASH_PART = 'g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q';

describe('store path names (libstore-tests/path.cc)', () => {
  const good = ['02345', 'foo', 'FOO', 'foo+bar', 'foo-dev', 'foo_bar', 'foo.txt', 'foo?why', 'foo=foo'];
  const bad = ['', '&*()', '**', '*,foo', 'foo,*', 'foo!o', '.', '..', '..-1', '.-1', '..-a', '.-a'];
  test('accepts good names', () => {
    for (const n of good) {
      assert.equal(parseStorePath(SD, `${SD}/${HASH_PART}-${n}`).name, n);
      assert.equal(checkStorePathName(n), n);
    }
  });
  test('rejects bad names', () => {
    for (const n of bad) {
      assert.throws(() => parseStorePath(SD, `${SD}/${HASH_PART}-${n}`), BadStorePath, JSON.stringify(n));
      assert.throws(() => checkStorePathName(n), BadStorePathName, JSON.stringify(n));
    }
  });
  test('211 characters is the longest name', () => {
    assert.equal(checkStorePathName('a'.repeat(211)), 'a'.repeat(211));
    assert.throws(() => checkStorePathName('a'.repeat(212)), /longer than 211/);
  });
  test('rejects paths outside the store, inside a store path, and bad hash parts', () => {
    for (const p of ['', `${HASH_PART}-foo`, `/foo/${HASH_PART}-foo`, '/nix/store', '/nix/store/', `${SD}/${HASH_PART}-foo/bin/sh`, `/nix/store${HASH_PART}-foo`, `${SD}/${HASH_PART.replace('g', 'e')}-foo`, `${SD}/abc-foo`]) {
      assert.throws(() => parseStorePath(SD, p), BadStorePath, p);
    }
    assert.equal(toStorePath(SD, `${SD}/${HASH_PART}-foo/bin/sh`), `${SD}/${HASH_PART}-foo`);
  });
});

describe('store path computation (Nix 2.8)', () => {
  test('text paths: builtins.toFile without and with references', () => {
    const a = makeTextPath(SD, hashBytes('sha256', 'A'), 'a.txt');
    assert.equal(a, '/nix/store/l82nr4gna33sc2g8m4hkkr6r983dlbd6-a.txt');
    const b = makeTextPath(SD, hashBytes('sha256', `B ${a}`), 'b.txt', [a]);
    assert.equal(b, '/nix/store/dw3kyjnj3hqr8if9pp84vh843p2dd7fg-b.txt');
    assert.equal(makeTextPath(SD, hashBytes('sha256', 'hello\n'), 'src.txt'), '/nix/store/igyqgjr9qf4b57k33k7js2m3dbmmj2na-src.txt');
  });

  test('source paths: nix-store --add of a file and of a tree', () => {
    const file = parseHash('sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw');
    assert.equal(makeSourcePath(SD, file, 'f.txt'), '/nix/store/6h9lcbx523532ax1c5g2351w9bm8ykhy-f.txt');
    const tree = parseHash('sha256:d658f99c9b5ac9fc2736b55780e50ddbd9668d6536dd598504b3403329605b86');
    assert.equal(makeSourcePath(SD, tree, 'tree'), '/nix/store/p8pxqpj9zxgf5j8f0sn02apiklwyd3ir-tree');
  });

  test('fixed-output paths: --add-fixed flat sha256/sha1, recursive sha1, recursive sha256 = source', () => {
    const flat256 = parseHash('sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03');
    assert.equal(makeFixedOutputPath(SD, 'flat', flat256, 'f.txt'), '/nix/store/d4b4lmbd433fa2xcdysz7p7zahnqh1z4-f.txt');
    const flat1 = parseHash('sha1:f572d396fae9206628714fb2ce00f72e94f2258f');
    assert.equal(makeFixedOutputPath(SD, 'flat', flat1, 'f.txt'), '/nix/store/4kn848vczvkyzl9npz1zz3f585s6byn3-f.txt');
    const rec1 = parseHash('sha1:387ff45197176455f0760951dcf7386a4f65af8f');
    assert.equal(makeFixedOutputPath(SD, 'recursive', rec1, 'tree'), '/nix/store/1inqlqm2v5y8dx2i5fx05j26pi0vp7jk-tree');
    const rec256 = parseHash('sha256:d658f99c9b5ac9fc2736b55780e50ddbd9668d6536dd598504b3403329605b86');
    assert.equal(makeFixedOutputPath(SD, 'recursive', rec256, 'tree'), '/nix/store/p8pxqpj9zxgf5j8f0sn02apiklwyd3ir-tree');
  });

  test('fixed outputs of derivations (nix-instantiate of interop.nix)', () => {
    const h = parseHash('sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s');
    assert.equal(makeFixedOutputPath(SD, 'flat', parseHash('sha256:0000000000000000000000000000000000000000000000000000'), 'fod'), '/nix/store/59209gx1b93k17d049isa072bka4iv8w-fod');
    assert.equal(makeFixedOutputPath(SD, 'flat', h, 'fod-flat-sha256'), '/nix/store/xn05kfvbjrzabby72hzvzhhfs13ir9m2-fod-flat-sha256');
  });

  test('fixed outputs other than recursive sha256 cannot have references', () => {
    assert.throws(() => makeFixedOutputPath(SD, 'flat', hashBytes('sha256', ''), 'x', [`${SD}/${HASH_PART}-foo`]), BadStorePath);
  });

  test('output paths and output path names', () => {
    assert.equal(outputPathName('hello', 'out'), 'hello');
    assert.equal(outputPathName('hello', 'dev'), 'hello-dev');
    const h = hashBytes('sha256', 'x');
    assert.equal(makeOutputPath(SD, 'dev', h, 'x'), makeStorePath(SD, 'output:dev', h, 'x-dev'));
    assert.equal(makeOutputPath(SD, 'out', h, 'x'), makeStorePath(SD, 'output:out', h, 'x'));
  });

  test('hashPlaceholder (primops.cc comment; builtins.placeholder in Nix 2.8)', () => {
    assert.equal(hashPlaceholder('out'), '/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9');
    assert.equal(hashPlaceholder('dev'), '/02qcpld1y6xhs5gz9bchpxaw0xdhmsp5dv88lh25r2ss44kh8dxz');
    assert.equal(hashPlaceholder('bin'), '/04f3da1kmbr67m3gzxikmsl4vjz5zf777sv6m14ahv22r65aac9m');
  });

  test('downstreamPlaceholder (libstore-tests/downstream-placeholder.cc; Nix 2.8 derivations)', () => {
    assert.equal(
      downstreamPlaceholder(SD, `${SD}/${HASH_PART}-foo.drv`, 'out'),
      '/0c6rn30q4frawknapgwq386zq358m8r6msvywcvc89n6m5p2dgbz',
    );
    // Nix 2.8 wrote these into a dependent of ca.drv (outputs out and dev).
    assert.equal(downstreamPlaceholder(SD, '/nix/store/107n4mv1ay9lv9733jwnrwj3j0cykph6-ca.drv', 'out'), '/0vlw61xkwan93zlyf4d6l8j1z6pfvnj056rg6qz9vw16qxw9vzkl');
    assert.equal(downstreamPlaceholder(SD, '/nix/store/107n4mv1ay9lv9733jwnrwj3j0cykph6-ca.drv', 'dev'), '/01kvmplj0ib4c3lz9srp5b9wl3jac1cj4mpdip0w7p17d10rrgr9');
  });
});
