import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BadHashPart, HashPartTable, RefScanner, scanForHashParts } from '../../src/format/refscan.js';
import { NIX32_ALPHABET } from '../../src/format/nix32.js';
import { arbChunking, chunk } from '../fixtures/nars/trees.js';

const A = 'z4y6f6vg9xi3sl0ia7rxrj8a5vqdyqdj';
const B = '0123456789abcdfghijklmnpqrsvwxyz';
const C = 'ksrlbsnkqjxc11pfq3nl9x6iy6bijq3b';

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

/** The obvious scan: every candidate looked up with indexOf. */
function naive(data: Uint8Array, parts: string[]): Set<string> {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return new Set(parts.filter((p) => b.indexOf(p, 0, 'latin1') >= 0));
}

const arbHashPart = fc.string({ unit: fc.constantFrom(...NIX32_ALPHABET), minLength: 32, maxLength: 32 });

/** Data mixing random bytes, nix32 runs and planted hash parts, so every skip path is taken. */
function arbData(parts: string[]): fc.Arbitrary<Uint8Array> {
  const seg = fc.oneof(
    fc.uint8Array({ maxLength: 80 }),
    fc.string({ unit: fc.constantFrom(...NIX32_ALPHABET), maxLength: 70 }).map(bytes),
    fc.constantFrom(...parts.map(bytes)),
    fc.constantFrom(...parts.map((p) => bytes(p.slice(0, 1 + (p.charCodeAt(3) % 30))))), // prefixes only
    fc.constantFrom(bytes('/nix/store/'), bytes('-name\n'), bytes('e')),
  );
  return fc.array(seg, { maxLength: 30 }).map((segs) => Buffer.concat(segs));
}

describe('RefScanner', () => {
  test('finds hash parts of store paths in text', () => {
    const text = `PATH=/nix/store/${A}-bash-5.1/bin:/nix/store/${C}-coreutils/bin\n`;
    assert.deepEqual(scanForHashParts(bytes(text), [A, B, C]), new Set([A, C]));
  });

  test('finds a hash part inside a long run of nix32 characters', () => {
    const text = `${'a'.repeat(100)}${B}${'0'.repeat(45)}`;
    assert.deepEqual(scanForHashParts(bytes(text), [A, B]), new Set([B]));
  });

  test('a hash part split across two chunks at every position is found', () => {
    const data = bytes(`xx-${A}-yy`);
    for (let cut = 0; cut <= data.length; cut++) {
      const s = new RefScanner([A, B]);
      s.update(data.subarray(0, cut));
      s.update(data.subarray(cut));
      assert.deepEqual(s.found(), new Set([A]), `cut at ${cut}`);
    }
  });

  test('one byte at a time', () => {
    const data = bytes(`${C}...${A}e${B}`);
    const s = new RefScanner([A, B, C]);
    for (const b of data) s.update(Uint8Array.of(b));
    assert.deepEqual(s.found(), new Set([A, B, C]));
  });

  test('a near miss is not a match', () => {
    const data = bytes(A.slice(0, 31) + 'e' + A.slice(1));
    assert.deepEqual(scanForHashParts(data, [A]), new Set());
  });

  test('no candidates, empty chunks, found() is a copy', () => {
    const s = new RefScanner([]);
    s.update(bytes(A));
    assert.deepEqual(s.found(), new Set());
    const t = new RefScanner([A]);
    t.update(new Uint8Array(0));
    t.update(bytes(A));
    const f = t.found();
    f.clear();
    assert.deepEqual(t.found(), new Set([A]));
  });

  test('rejects candidates that are not 32 nix32 characters', () => {
    assert.throws(() => new RefScanner(['abc']), (e: unknown) => e instanceof BadHashPart && /not 32 characters long/.test(e.message));
    assert.throws(
      () => new RefScanner(['e'.repeat(32)]),
      (e: unknown) => e instanceof BadHashPart && e.code === 'E_BAD_HASH_PART' && /'e{32}' contains a non-nix32 character/.test(e.message),
    );
  });

  test('many candidates: each found exactly when present', () => {
    const parts = Array.from({ length: 1000 }, (_, i) => {
      let s = '';
      let x = i * 2654435761 + 12345;
      for (let j = 0; j < 32; j++) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        s += NIX32_ALPHABET[(x >>> 16) & 31];
      }
      return s;
    });
    const table = new HashPartTable(parts);
    assert.equal(table.size, 1000);
    const present = parts.filter((_, i) => i % 7 === 0);
    const data = bytes(present.map((p) => `/nix/store/${p}-x `).join(''));
    assert.deepEqual(scanForHashParts(data, parts), new Set(present));
  });

  test('past 256 KiB the shift table takes over, its q-gram length from the candidate count', () => {
    let x = 99;
    const rnd = (): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 16;
    const part = (): string => Array.from({ length: 32 }, () => NIX32_ALPHABET[rnd() & 31]).join('');
    for (const [n, tableSize] of [
      [1, 32 ** 2],
      [20, 32 ** 3],
      [1000, 32 ** 4],
    ] as const) {
      const parts = Array.from({ length: n }, part);
      // nix32-dense text: long runs of base-32 with paths; candidates planted after the switch (a scan stops once all are found).
      const lines: string[] = [];
      for (let i = 0; lines.length < 20000; i++) {
        const run = Array.from({ length: 20 + (rnd() % 60) }, () => NIX32_ALPHABET[rnd() & 31]).join('');
        lines.push(i >= 10000 && i % 97 === 5 ? `/nix/store/${parts[i % n]}-p ${run}` : `${run} /nix/store/${part()}-q`);
      }
      const data = bytes(lines.join('\n'));
      assert.ok(data.length > 4 * 256 * 1024);
      const table = new HashPartTable(parts);
      const sc = new RefScanner(table);
      assert.equal(table.shift.length, 1, 'no shift table before any scanning');
      for (let i = 0; i < data.length; i += 65536) sc.update(data.subarray(i, i + 65536));
      assert.equal(table.shift.length, tableSize, `${n} candidates`);
      assert.deepEqual(sc.found(), naive(data, parts), `${n} candidates`);
    }
  });

  test('property: equals indexOf for every candidate, and any 1-128 byte chunking equals one shot', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(arbHashPart, { minLength: 1, maxLength: 6 }).chain((parts) =>
          fc.tuple(fc.constant(parts), arbData(parts), arbChunking(128)),
        ),
        ([parts, data, sizes]) => {
          const want = naive(data, parts);
          assert.deepEqual(scanForHashParts(data, parts), want);
          const s = new RefScanner(parts);
          for (const piece of chunk(data, sizes)) s.update(piece.slice());
          assert.deepEqual(s.found(), want);
        },
      ),
      { numRuns: 500 },
    );
  });
});
