import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { BadRewrite, HashModuloSink, HashRewriter, ModuloOffsets, rewriteBytes } from '../../src/format/rewrite.js';
import { BadHashPart } from '../../src/format/refscan.js';
import { NIX32_ALPHABET, nix32Encode } from '../../src/format/nix32.js';
import { makeFixedOutputPath } from '../../src/format/store-path.js';
import { REPO_ROOT } from '../helpers/host.js';
import { arbChunking, chunk } from '../fixtures/nars/trees.js';

const A = 'z4y6f6vg9xi3sl0ia7rxrj8a5vqdyqdj';
const B = '0123456789abcdfghijklmnpqrsvwxyz';
const C = 'ksrlbsnkqjxc11pfq3nl9x6iy6bijq3b';
const D = 'd'.repeat(32);

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const text = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

/** Leftmost, non-overlapping, one pass: the semantics HashRewriter promises. */
function naive(data: Uint8Array, map: Map<string, string>): { out: string; offsets: number[] } {
  const s = text(data);
  let out = '';
  const offsets: number[] = [];
  let i = 0;
  while (i < s.length) {
    const w = s.slice(i, i + 32);
    const to = w.length === 32 ? map.get(w) : undefined;
    if (to !== undefined) {
      out += to;
      offsets.push(i);
      i += 32;
    } else out += s[i++];
  }
  return { out, offsets };
}

/** Nix 2.8's RewritingSink + HashModuloSink, transliterated (same chunking as given). */
function nixHashModulo(pieces: Uint8Array[], modulus: string): { hash: string; size: number } {
  const to = '\0'.repeat(32);
  let prev = '';
  let pos = 0;
  const matches: number[] = [];
  const h = createHash('sha256');
  for (const piece of pieces) {
    let s = prev + text(piece);
    let j = 0;
    while ((j = s.indexOf(modulus, j)) !== -1) {
      matches.push(pos + j);
      s = s.slice(0, j) + to + s.slice(j + 32);
    }
    prev = s.length < 32 ? s : s.slice(s.length - 31);
    const consumed = s.length - prev.length;
    pos += consumed;
    if (consumed) h.update(s.slice(0, consumed), 'latin1');
  }
  pos += prev.length;
  h.update(prev, 'latin1');
  for (const m of matches) h.update(`|${m}`);
  return { hash: h.digest('hex'), size: pos };
}

function runChunks(r: HashRewriter, pieces: Uint8Array[]): string {
  let out = '';
  for (const p of pieces) out += text(r.update(p));
  return out + text(r.flush());
}

const arbHashPart = fc.string({ unit: fc.constantFrom(...NIX32_ALPHABET), minLength: 32, maxLength: 32 });

function arbData(parts: string[]): fc.Arbitrary<Uint8Array> {
  const seg = fc.oneof(
    fc.uint8Array({ maxLength: 60 }),
    fc.string({ unit: fc.constantFrom(...NIX32_ALPHABET), maxLength: 50 }).map(bytes),
    fc.constantFrom(...parts.map(bytes)),
    fc.constantFrom(...parts.map((p) => bytes(p + p.slice(0, 17)))),
    fc.constantFrom(bytes('/nix/store/'), bytes('-x\n')),
  );
  return fc.array(seg, { maxLength: 30 }).map((s) => Buffer.concat(s));
}

describe('HashRewriter', () => {
  test('rewrites store paths and reports offsets', () => {
    const offsets: Array<[number, string]> = [];
    const r = new HashRewriter(new Map([[A, B], [C, D]]), { onMatch: (o, f) => offsets.push([o, f]) });
    const input = `/nix/store/${A}-x and /nix/store/${C}-y\n`;
    assert.equal(runChunks(r, [bytes(input)]), `/nix/store/${B}-x and /nix/store/${D}-y\n`);
    assert.deepEqual(offsets, [[11, A], [61, C]]);
    assert.equal(r.matches, 2);
    assert.equal(r.offset, input.length);
  });

  test('split at every position, including inside the hash part', () => {
    const input = bytes(`ab${A}cd`);
    for (let cut = 0; cut <= input.length; cut++) {
      const r = new HashRewriter(new Map([[A, B]]));
      assert.equal(runChunks(r, [input.subarray(0, cut), input.subarray(cut)]), `ab${B}cd`, `cut ${cut}`);
    }
  });

  test('holds back only bytes that could start a match', () => {
    const r = new HashRewriter(new Map([[A, B]]));
    assert.equal(text(r.update(bytes('hello world\n'))), 'hello world\n');
    assert.equal(text(r.update(bytes('tail abc'))), 'tail ');
    assert.equal(text(r.flush()), 'abc');
    assert.equal(r.flush().length, 0);
  });

  test('overlapping candidates: leftmost wins, replaced bytes are not examined again', () => {
    // AA with the second copy starting inside the first replacement's range is impossible;
    // a match immediately after a replacement is still found.
    const r = new HashRewriter(new Map([[A, B], [B, C]]));
    assert.equal(runChunks(r, [bytes(A + B + A)]), B + C + B);
  });

  test('never modifies the caller’s chunk', () => {
    const input = bytes(`x${A}x`);
    const copy = Buffer.from(input);
    const r = new HashRewriter(new Map([[A, B]]));
    runChunks(r, [input]);
    assert.deepEqual(input, copy);
  });

  test('rewriteBytes', () => {
    assert.equal(text(rewriteBytes(bytes(`${A}${A}`), new Map([[A, B]]))), B + B);
    const plain = bytes('no match');
    const out = rewriteBytes(plain, new Map([[A, B]]));
    assert.equal(text(out), 'no match');
    assert.notEqual(out, plain);
  });

  test('rejects bad rewrites', () => {
    assert.throws(() => new HashRewriter(new Map([[A, 'short']])), (e: unknown) => e instanceof BadRewrite && /not 32 characters/.test(e.message));
    assert.throws(() => new HashRewriter(new Map([[A, '✓'.repeat(32)]])), (e: unknown) => e instanceof BadRewrite && e.code === 'E_BAD_REWRITE');
    assert.throws(() => new HashRewriter(new Map([['e'.repeat(32), B]])), BadHashPart);
  });

  test('property: any 1-128 byte chunking equals the one-pass reference, offsets included', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(arbHashPart, { minLength: 1, maxLength: 4 }).chain((keys) =>
          fc.tuple(fc.constant(keys), fc.array(arbHashPart, { minLength: keys.length, maxLength: keys.length }), arbData(keys), arbChunking(128)),
        ),
        ([keys, values, data, sizes]) => {
          const map = new Map(keys.map((k, i) => [k, values[i]!]));
          const want = naive(data, map);
          const offsets: number[] = [];
          const r = new HashRewriter(map, { onMatch: (o) => offsets.push(o) });
          assert.equal(runChunks(r, chunk(data, sizes).map((c) => c.slice())), want.out);
          assert.deepEqual(offsets, want.offsets);
          assert.equal(text(rewriteBytes(data, map)), want.out);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('constant memory: 64 MiB through 64 KiB chunks', async () => {
    const r = new HashRewriter(new Map([[A, B]]));
    // Each block: the end of A, 'a's, A, 'a's, the start of A; so A also spans every boundary.
    const block = Buffer.alloc(1 << 16, 'a');
    bytes(A.slice(22)).copy(block, 0);
    bytes(A).copy(block, 100);
    bytes(A.slice(0, 22)).copy(block, block.length - 22);
    // Compare memory after full collections: what the rewriter keeps, not when V8 happens to collect.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    await new Promise((r) => setTimeout(r, 10));
    const before = process.memoryUsage().arrayBuffers;
    let total = 0;
    for (let i = 0; i < 1024; i++) total += r.update(block).length;
    total += r.flush().length;
    assert.equal(total, 64 << 20);
    assert.equal(r.matches, 2048 - 1);
    gc();
    // Array buffer memory is released by a task after the collection.
    await new Promise((r) => setTimeout(r, 10));
    assert.ok(process.memoryUsage().arrayBuffers - before < 1 << 20);
  });
});

describe('HashModuloSink (Nix 2.8 CA hashing modulo self-references)', () => {
  test('known vector: the CA floating output Nix 2.8 built at /nix/store/dp8zych2ag7l7ngppsqpzf4cyhv7nv7s-ca-self', () => {
    const nar = readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'nars', 'valid-ca-self-reference.nar'));
    for (const size of [nar.length, 1, 7, 64]) {
      const s = new HashModuloSink('sha256', 'dp8zych2ag7l7ngppsqpzf4cyhv7nv7s');
      for (let i = 0; i < nar.length; i += size) s.update(nar.subarray(i, i + size));
      const r = s.finish();
      assert.equal(r.selfReferences, 4);
      assert.equal(r.size, nar.length);
      assert.equal(
        makeFixedOutputPath('/nix/store', 'recursive', r.hash, 'ca-self', [], true),
        '/nix/store/dp8zych2ag7l7ngppsqpzf4cyhv7nv7s-ca-self',
      );
    }
  });

  test('the same content at a different self path hashes alike; without self-references it is a plain hash', () => {
    const mk = (self: string): Buffer => bytes(`#!/bin/sh\nexec /nix/store/${self}-x/bin/y "$@" # ${self}\n`);
    const h = (self: string): string => {
      const s = new HashModuloSink('sha256', self);
      s.update(mk(self));
      return nix32Encode(s.finish().hash.digest);
    };
    assert.equal(h(A), h(C));
    const plain = new HashModuloSink('sha512', A);
    plain.update(bytes('no refs'));
    const r = plain.finish();
    assert.equal(r.hash.algo, 'sha512');
    assert.deepEqual(Buffer.from(r.hash.digest), createHash('sha512').update('no refs').digest());
    assert.equal(r.selfReferences, 0);
  });

  test('property: equals Nix 2.8’s RewritingSink/HashModuloSink for any chunking', () => {
    fc.assert(
      fc.property(
        arbHashPart.chain((m) => fc.tuple(fc.constant(m), arbData([m]), arbChunking(128))),
        ([modulus, data, sizes]) => {
          const pieces = chunk(data, sizes);
          const want = nixHashModulo(pieces, modulus);
          assert.deepEqual(nixHashModulo([data], modulus), want); // the reference itself is chunk-independent here
          const s = new HashModuloSink('sha256', modulus);
          for (const p of pieces) s.update(p);
          const got = s.finish();
          assert.equal(Buffer.from(got.hash.digest).toString('hex'), want.hash);
          assert.equal(got.size, want.size);
        },
      ),
      { numRuns: 400 },
    );
  });

  test('many self-references: 50,000 delta-encoded offsets', () => {
    const s = new HashModuloSink('sha256', A);
    const block = bytes(`${A}-`.repeat(1000));
    for (let i = 0; i < 50; i++) s.update(block);
    const r = s.finish();
    assert.equal(r.selfReferences, 50000);
    const ref = nixHashModulo(Array.from({ length: 50 }, () => block), A);
    assert.equal(Buffer.from(r.hash.digest).toString('hex'), ref.hash);
  });
});

describe('ModuloOffsets', () => {
  test('hashes |<offset> for every recorded offset, in order, whatever their size', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 32, max: 2 ** 40 }), { maxLength: 200 }), (gaps) => {
        const o = new ModuloOffsets();
        let at = 0;
        const offsets: number[] = [];
        for (const g of gaps) {
          at += g;
          offsets.push(at);
          o.record(at);
        }
        const h = createHash('sha256');
        o.hashSuffix(h);
        const want = createHash('sha256').update(offsets.map((x) => `|${x}`).join(''), 'latin1');
        assert.equal(o.count, offsets.length);
        assert.equal(h.digest('hex'), want.digest('hex'));
      }),
    );
  });

  test('a first offset of 0 and offsets past 4 GiB', () => {
    const o = new ModuloOffsets();
    for (const x of [0, 4294967296 + 7, 2 ** 50]) o.record(x);
    const h = createHash('sha256');
    o.hashSuffix(h);
    assert.equal(h.digest('hex'), createHash('sha256').update('|0|4294967303|1125899906842624').digest('hex'));
  });
});
