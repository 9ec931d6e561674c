// Nix's base-32, against vectors from Nix's own test suite (tests/hash.sh in
// Nix 2.8: the try3 conversions) and properties of the encoding.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NIX32_ALPHABET, isNix32, nix32Decode, nix32Encode, nix32EncodedLength } from '../../src/format/nix32.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));

// (base16, nix32) pairs: Nix 2.8 tests/hash.sh, `nix-hash --to-base32`.
const VECTORS: Array<[string, string]> = [
  ['800d59cfcd3c05e900cb4e214be48f6b886a08df', 'vw46m23bizj4n8afrc0fj19wrp7mj3c0'],
  ['ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', '1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s'],
  [
    '204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c33596fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445',
    '12k9jiq29iyqm03swfsgiw5mlqs173qazm3n7daz43infy12pyrcdf30fkk3qwv4yl2ick8yipc2mqnlh48xsvvxl60lbx8vp38yji0',
  ],
  // Checked with Nix 2.8: nix-hash --type sha256 --base32 --flat of "hello\n".
  ['5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03', '00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq'],
];

describe('nix32', () => {
  test('alphabet omits e, o, u and t', () => {
    assert.equal(NIX32_ALPHABET, '0123456789abcdfghijklmnpqrsvwxyz');
    assert.equal(NIX32_ALPHABET.length, 32);
  });

  test('encodes Nix test vectors', () => {
    for (const [b16, b32] of VECTORS) assert.equal(nix32Encode(hex(b16)), b32, b16);
  });

  test('decodes Nix test vectors', () => {
    for (const [b16, b32] of VECTORS) assert.deepEqual(nix32Decode(b32), hex(b16), b32);
  });

  test('encoded lengths for md5, sha1, sha256, sha512 and store path hashes', () => {
    assert.equal(nix32EncodedLength(16), 26);
    assert.equal(nix32EncodedLength(20), 32);
    assert.equal(nix32EncodedLength(32), 52);
    assert.equal(nix32EncodedLength(64), 103);
    assert.equal(nix32Encode(new Uint8Array(0)), '');
  });

  test('the last character holds the low bits of the first byte', () => {
    assert.equal(nix32Encode(Uint8Array.of(1)), '01');
    assert.equal(nix32Encode(Uint8Array.of(0x1f)), '0z');
    assert.equal(nix32Encode(Uint8Array.of(0x20)), '10');
    assert.equal(nix32Encode(Uint8Array.of(0xff)), '7z');
  });

  test('rejects characters outside the alphabet', () => {
    for (const c of ['e', 'o', 'u', 't', 'A', '-', '\u00e9']) {
      const s = '1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5' + c;
      assert.equal(nix32Decode(s, 32), null, c);
      assert.equal(isNix32(s), false, c);
    }
  });

  test('rejects bits beyond the digest size (Nix: invalid base-32 hash)', () => {
    // 52 characters carry 260 bits; the top 4 must be zero for 32 bytes.
    assert.equal(nix32Decode('z' + '0'.repeat(51), 32), null);
    assert.equal(nix32Decode('2' + '0'.repeat(51), 32), null);
    const top = nix32Decode('1' + '0'.repeat(51), 32);
    assert.equal(top?.[31], 0x80);
    assert.deepEqual(nix32Decode('0'.repeat(52), 32), new Uint8Array(32));
  });

  test('rejects a wrong length for the size', () => {
    assert.equal(nix32Decode('0'.repeat(51), 32), null);
    assert.equal(nix32Decode('0'.repeat(53), 32), null);
  });

  test('round trip (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const s = nix32Encode(bytes);
        assert.equal(s.length, nix32EncodedLength(bytes.length));
        assert.ok(isNix32(s));
        assert.deepEqual(nix32Decode(s, bytes.length), bytes);
      }),
      { numRuns: 500 },
    );
  });
});
