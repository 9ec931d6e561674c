// Hashes against Nix's own vectors: Nix 2.8 src/libutil/tests/hash.cc and
// tests/hash.sh (hashes of strings in base16, base32 and SRI, and the
// conversions of try3), plus parsing of every form and its errors.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BadHash,
  HASH_ALGOS,
  HASH_SIZE,
  compressHash,
  formatHash,
  hashBytes,
  parseHash,
  parseHashAlgo,
  type HashAlgo,
} from '../../src/format/hash.js';

// tests/hash.sh `try`: (algo, input, base16).
const STRING_VECTORS: Array<[HashAlgo, string, string]> = [
  ['md5', '', 'd41d8cd98f00b204e9800998ecf8427e'],
  ['md5', 'a', '0cc175b9c0f1b6a831c399e269772661'],
  ['md5', 'abc', '900150983cd24fb0d6963f7d28e17f72'],
  ['md5', 'message digest', 'f96b697d7cb7938d525a2f31aaf161d0'],
  ['md5', 'abcdefghijklmnopqrstuvwxyz', 'c3fcd3d76192e4007dfb496cca67e13b'],
  ['md5', 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', 'd174ab98d277d9f5a5611c2c9f419d9f'],
  ['md5', '12345678901234567890123456789012345678901234567890123456789012345678901234567890', '57edf4a22be3c955ac49da2e2107b67a'],
  ['sha1', '', 'da39a3ee5e6b4b0d3255bfef95601890afd80709'],
  ['sha1', 'abc', 'a9993e364706816aba3e25717850c26c9cd0d89d'],
  ['sha1', 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '84983e441c3bd26ebaae4aa1f95129e5e54670f1'],
  ['sha256', '', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
  ['sha256', 'abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
  ['sha256', 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'],
  ['sha512', '', 'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e'],
  ['sha512', 'abc', 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f'],
  ['sha512', 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c33596fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445'],
  // src/libutil/tests/hash.cc testKnownSHA512Hashes2
  ['sha512', 'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu', '8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909'],
];

// tests/hash.sh with --sri.
const SRI_VECTORS: Array<[HashAlgo, string, string]> = [
  ['sha512', '', 'sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=='],
  ['sha512', 'abc', 'sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw=='],
  ['sha512', 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', 'sha512-IEqPxt2oLwoM7XvrjgikFlfBbvRosiioJ5vjMacDwzWW/RXBOxsH+aodO+pXeJygMa2Fx6cd1wNU7GMSOMo0RQ=='],
  ['sha256', 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', 'sha256-JI1qYdIGOLjlwCaTDD5gOaM85Flk/yFn9uzt1BnbBsE='],
];

// tests/hash.sh try3: (algo, base16, base32, base64).
const CONVERSIONS: Array<[HashAlgo, string, string, string]> = [
  ['sha1', '800d59cfcd3c05e900cb4e214be48f6b886a08df', 'vw46m23bizj4n8afrc0fj19wrp7mj3c0', 'gA1Zz808BekAy04hS+SPa4hqCN8='],
  ['sha256', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', '1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', 'ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0='],
  [
    'sha512',
    '204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c33596fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445',
    '12k9jiq29iyqm03swfsgiw5mlqs173qazm3n7daz43infy12pyrcdf30fkk3qwv4yl2ick8yipc2mqnlh48xsvvxl60lbx8vp38yji0',
    'IEqPxt2oLwoM7XvrjgikFlfBbvRosiioJ5vjMacDwzWW/RXBOxsH+aodO+pXeJygMa2Fx6cd1wNU7GMSOMo0RQ==',
  ],
];

describe('hashes', () => {
  test('hashes strings like Nix (base16 with type prefix)', () => {
    for (const [algo, input, b16] of STRING_VECTORS) {
      assert.equal(formatHash(hashBytes(algo, input), 'base16'), `${algo}:${b16}`, `${algo}(${JSON.stringify(input)})`);
    }
  });

  test('base32 of sha256("abc") (tests/hash.sh --base32)', () => {
    assert.equal(formatHash(hashBytes('sha256', 'abc'), 'nix32', false), '1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s');
  });

  test('SRI (tests/hash.sh --sri)', () => {
    for (const [algo, input, sri] of SRI_VECTORS) assert.equal(formatHash(hashBytes(algo, input), 'sri'), sri);
  });

  test('converts between base16, base32, base64 and SRI (tests/hash.sh try3)', () => {
    for (const [algo, b16, b32, b64] of CONVERSIONS) {
      for (const form of [`${algo}:${b16}`, `${algo}:${b32}`, `${algo}:${b64}`, `${algo}-${b64}`]) {
        const h = parseHash(form);
        assert.equal(h.algo, algo);
        assert.equal(formatHash(h, 'base16', false), b16, form);
        assert.equal(formatHash(h, 'nix32', false), b32, form);
        assert.equal(formatHash(h, 'base64', false), b64, form);
        assert.equal(formatHash(h, 'sri'), `${algo}-${b64}`, form);
      }
      for (const bare of [b16, b32, b64]) assert.equal(formatHash(parseHash(bare, algo), 'base16', false), b16, bare);
    }
  });

  test('uppercase base16 is accepted', () => {
    const h = parseHash('sha1:800D59CFCD3C05E900CB4E214BE48F6B886A08DF');
    assert.equal(formatHash(h, 'base16', false), '800d59cfcd3c05e900cb4e214be48f6b886a08df');
  });

  test('digest sizes', () => {
    assert.deepEqual(HASH_SIZE, { md5: 16, sha1: 20, sha256: 32, sha512: 64 });
    for (const a of HASH_ALGOS) assert.equal(hashBytes(a, 'x').digest.length, HASH_SIZE[a]);
  });

  test('rejects bad hashes with BadHash naming the value', () => {
    const cases: Array<[string, HashAlgo | undefined, RegExp]> = [
      ['sha256:abc', undefined, /hash 'sha256:abc' has wrong length for hash type 'sha256'/],
      ['sha0:abc', undefined, /unknown hash algorithm 'sha0'/],
      ['ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', undefined, /does not include a type/],
      ['sha1:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'sha256', /should have type 'sha256'/],
      ['sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5e', undefined, /invalid base-32 hash/],
      ['sha256:zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', undefined, /invalid base-16 hash/],
      ['sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa==', undefined, /invalid base-64 hash/],
    ];
    for (const [s, algo, re] of cases) {
      assert.throws(() => parseHash(s, algo), (e: unknown) => e instanceof BadHash && e.code === 'E_BAD_HASH' && re.test(e.message), s);
    }
    assert.throws(() => parseHashAlgo('blake3'), BadHash);
  });

  test('compressHash XOR-folds the digest (Nix compressHash)', () => {
    const d = Uint8Array.from({ length: 32 }, (_, i) => i);
    const c = compressHash(d, 20);
    // byte i = d[i] ^ d[i + 20] for i < 12, else d[i]
    assert.deepEqual([...c], Array.from({ length: 20 }, (_, i) => (i < 12 ? i ^ (i + 20) : i)));
  });

  test('parse(format(h)) round trips in every encoding (property)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...HASH_ALGOS), fc.uint8Array({ minLength: 0, maxLength: 64 }), (algo, data) => {
        const h = hashBytes(algo, data);
        for (const enc of ['base16', 'nix32', 'base64', 'sri'] as const) {
          const back = parseHash(formatHash(h, enc));
          assert.equal(back.algo, algo);
          assert.deepEqual(Buffer.from(back.digest), Buffer.from(h.digest));
        }
      }),
      { numRuns: 300 },
    );
  });
});
