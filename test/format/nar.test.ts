import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compareBytes, entryNameProblem, symlinkTargetProblem, BadNar } from '../../src/format/nar.js';
import { NarParser, parseNar } from '../../src/format/nar-reader.js';
import { NarWriter } from '../../src/format/nar-writer.js';
import { arbChunking, arbTree, chunk, normalise, treeEvents, type Tree } from '../fixtures/nars/trees.js';

const enc = new TextEncoder();

function parseChunks(pieces: Uint8Array[]): ReturnType<NarParser['push']> {
  const p = new NarParser();
  const events = [];
  for (const piece of pieces) events.push(...p.push(piece));
  p.finish();
  assert.equal(p.takeRemainder().length, 0);
  return events;
}

describe('NAR round trip (property)', () => {
  test('random trees: events -> NarWriter -> NarParser -> the same events', () => {
    fc.assert(
      fc.property(arbTree(), (tree: Tree) => {
        const events = treeEvents(tree);
        const bytes = NarWriter.encodeAll(events);
        assert.deepEqual(normalise(parseNar(bytes)), normalise(events));
      }),
      { numRuns: 300 },
    );
  });

  test('names with arbitrary bytes (not UTF-8) survive via nameBytes', () => {
    fc.assert(
      fc.property(arbTree({ rawNames: true }), (tree: Tree) => {
        const events = treeEvents(tree);
        const bytes = NarWriter.encodeAll(events);
        const back = parseNar(bytes);
        assert.deepEqual(Buffer.from(NarWriter.encodeAll(back)), Buffer.from(bytes));
      }),
      { numRuns: 200 },
    );
  });

  test('random chunkings of 1-128 bytes give the same events as one chunk', () => {
    fc.assert(
      fc.property(arbTree(), arbChunking(128), (tree: Tree, sizes: number[]) => {
        const bytes = NarWriter.encodeAll(treeEvents(tree));
        const whole = normalise(parseNar(bytes));
        // Copies, so no event may keep pointing into a chunk it was not given.
        const pieces = chunk(bytes, sizes).map((c) => c.slice());
        assert.deepEqual(normalise(parseChunks(pieces)), whole);
      }),
      { numRuns: 300 },
    );
  });

  test('chunked writing: contents split anywhere encode to the same bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.boolean(), arbChunking(64), (data, executable, sizes) => {
        const one = NarWriter.encodeAll([
          { type: 'regular', executable, size: data.length },
          ...(data.length ? [{ type: 'contents' as const, data }] : []),
          { type: 'regularEnd' },
        ]);
        const many = NarWriter.encodeAll([
          { type: 'regular', executable, size: data.length },
          ...chunk(data, sizes).map((d) => ({ type: 'contents' as const, data: d })),
          { type: 'regularEnd' },
        ]);
        assert.deepEqual(Buffer.from(many), Buffer.from(one));
      }),
    );
  });

  test('a mutated byte either still parses to a NAR that re-encodes to itself, or raises BadNar', () => {
    fc.assert(
      fc.property(arbTree({ maxDepth: 3 }), fc.nat(), fc.integer({ min: 0, max: 255 }), (tree: Tree, at, value) => {
        const bytes = NarWriter.encodeAll(treeEvents(tree)).slice();
        bytes[at % bytes.length] = value;
        try {
          const p = new NarParser();
          const events = p.push(bytes);
          p.finish();
          const used = bytes.length - p.takeRemainder().length;
          assert.deepEqual(Buffer.from(NarWriter.encodeAll(events)), Buffer.from(bytes.subarray(0, used)));
        } catch (e) {
          assert.ok(e instanceof BadNar, String(e));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('name rules', () => {
  test('entryNameProblem', () => {
    const cases: Array<[string | Uint8Array, string | null]> = [
      ['a', null],
      ['.a', null],
      ['...', null],
      ['a.', null],
      ['ünï ✓', null],
      ['', 'empty-name'],
      ['.', 'dot'],
      ['..', 'dotdot'],
      ['a/', 'slash'],
      ['/', 'slash'],
      ['a\0', 'nul-character'],
      ['x'.repeat(255), null],
      ['x'.repeat(256), 'oversized-length'],
      [Uint8Array.from([0xff]), null],
    ];
    for (const [name, want] of cases) {
      assert.equal(entryNameProblem(typeof name === 'string' ? enc.encode(name) : name), want, JSON.stringify(name));
    }
  });

  test('symlinkTargetProblem', () => {
    assert.equal(symlinkTargetProblem(enc.encode('../x')), null);
    assert.equal(symlinkTargetProblem(enc.encode('')), 'empty-target');
    assert.equal(symlinkTargetProblem(enc.encode('a\0b')), 'target-nul-character');
    assert.equal(symlinkTargetProblem(enc.encode('t'.repeat(4095))), null);
    assert.equal(symlinkTargetProblem(enc.encode('t'.repeat(4096))), 'oversized-length');
  });

  test('compareBytes is memcmp then length', () => {
    assert.ok(compareBytes(enc.encode('a'), enc.encode('b')) < 0);
    assert.ok(compareBytes(enc.encode('ab'), enc.encode('a')) > 0);
    assert.equal(compareBytes(enc.encode('ab'), enc.encode('ab')), 0);
    assert.ok(compareBytes(enc.encode('Z'), enc.encode('a')) < 0);
    assert.ok(compareBytes(enc.encode('\ufffd'), enc.encode('\u{10000}')) < 0);
  });
});
