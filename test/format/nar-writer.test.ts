import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BadNarEvent, type NarEvent } from '../../src/format/nar.js';
import { NarWriter, encodeNarString } from '../../src/format/nar-writer.js';
import { REPO_ROOT } from '../helpers/host.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'nars');

function rejects(events: NarEvent[], rule: string, offset: number, message: RegExp): void {
  const w = new NarWriter();
  assert.throws(
    () => {
      for (const e of events) w.write(e);
      w.end();
    },
    (e: unknown) => {
      assert.ok(e instanceof BadNarEvent, String(e));
      assert.equal(e.code, 'E_BAD_NAR_EVENT');
      assert.equal(e.rule, rule, e.message);
      assert.equal(e.offset, offset, e.message);
      assert.match(e.message, message);
      return true;
    },
  );
}

const file = (name: string, data = 'x'): NarEvent[] => [
  { type: 'entry', name },
  { type: 'regular', executable: false, size: data.length },
  ...(data.length ? [{ type: 'contents', data: Buffer.from(data) } as NarEvent] : []),
  { type: 'regularEnd' },
  { type: 'entryEnd' },
];

// Bytes before the first entry of a directory: magic (24) + "(" "type" "directory" (16 + 16 + 24).
const DIR_HEAD = 80;
// One entry holding a 1-byte file, names up to 8 bytes:
// entry ( name <str> node = 80, ( type regular contents <u64> x<pad> ) = 96, ) = 16.
const ONE_FILE = 80 + 96 + 16;

describe('NarWriter', () => {
  test('writes exactly what nix-store --dump wrote for the same events', () => {
    const nar = readFileSync(join(FIXTURES, 'valid-executable.nar'));
    const bytes = NarWriter.encodeAll([
      { type: 'regular', executable: true, size: 21 },
      { type: 'contents', data: Buffer.from('#!/bin/sh\n') },
      { type: 'contents', data: Buffer.from('echo hello\n') },
      { type: 'regularEnd' },
    ]);
    assert.deepEqual(Buffer.from(bytes), nar);
  });

  test('symlink and empty directory roots', () => {
    assert.deepEqual(
      Buffer.from(NarWriter.encodeAll([{ type: 'symlink', target: 'bin/hello' }])),
      readFileSync(join(FIXTURES, 'valid-symlink.nar')),
    );
    assert.deepEqual(
      Buffer.from(NarWriter.encodeAll([{ type: 'directory' }, { type: 'directoryEnd' }])),
      readFileSync(join(FIXTURES, 'valid-empty-dir.nar')),
    );
  });

  test('strings are length-prefixed and zero-padded to 8 bytes', () => {
    assert.deepEqual([...encodeNarString('abc')], [3, 0, 0, 0, 0, 0, 0, 0, 97, 98, 99, 0, 0, 0, 0, 0]);
    assert.deepEqual([...encodeNarString('')], [0, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(encodeNarString('12345678').length, 16);
  });

  test('contents are passed through without copying; offset counts every byte', () => {
    const w = new NarWriter();
    w.write({ type: 'regular', executable: false, size: 3 });
    const data = Buffer.from('abc');
    assert.equal(w.write({ type: 'contents', data }), data);
    w.write({ type: 'regularEnd' });
    assert.equal(w.done, true);
    assert.equal(w.offset, 24 + 64 + 8 + 3 + 5 + 16);
  });

  test('names are compared as bytes, not UTF-16 code units', () => {
    // U+FFFD (EF BF BD) sorts before U+10000 (F0 90 80 80) as bytes, after it as UTF-16.
    const ok = NarWriter.encodeAll([{ type: 'directory' }, ...file('\ufffd'), ...file('\u{10000}'), { type: 'directoryEnd' }]);
    assert.ok(ok.length > 0);
    rejects([{ type: 'directory' }, ...file('\u{10000}'), ...file('\ufffd')], 'unsorted', DIR_HEAD + ONE_FILE, /unsorted/);
  });

  test('nameBytes take precedence over name (non-UTF-8 names)', () => {
    const raw = Uint8Array.from([0xff, 0xfe]);
    const bytes = NarWriter.encodeAll([
      { type: 'directory' },
      { type: 'entry', name: '\ufffd\ufffd', nameBytes: raw },
      { type: 'symlink', target: 'x' },
      { type: 'entryEnd' },
      { type: 'directoryEnd' },
    ]);
    assert.ok(Buffer.from(bytes).includes(Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0, 0, 0, 0, 0, 0])));
  });

  describe('enforces its invariants', () => {
    test('empty name', () => rejects([{ type: 'directory' }, ...file('')], 'empty-name', DIR_HEAD, /entry name is empty/));
    test('dot', () => rejects([{ type: 'directory' }, ...file('.')], 'dot', DIR_HEAD, /'\.'/));
    test('dotdot', () => rejects([{ type: 'directory' }, ...file('..')], 'dotdot', DIR_HEAD, /'\.\.'/));
    test('slash', () => rejects([{ type: 'directory' }, ...file('a/b')], 'slash', DIR_HEAD, /contains '\/': "a\/b"/));
    test('NUL', () => rejects([{ type: 'directory' }, ...file('a\0b')], 'nul-character', DIR_HEAD, /NUL/));
    test('too long', () => rejects([{ type: 'directory' }, ...file('n'.repeat(256))], 'oversized-length', DIR_HEAD, /longer than 255/));
    test('duplicate', () =>
      rejects([{ type: 'directory' }, ...file('a'), ...file('a')], 'duplicate', DIR_HEAD + ONE_FILE, /duplicate entry "a"/));
    test('unsorted', () =>
      rejects([{ type: 'directory' }, ...file('b'), ...file('a')], 'unsorted', DIR_HEAD + ONE_FILE, /entry "a" after "b"/));
    test('contents longer than declared', () =>
      rejects(
        [{ type: 'regular', executable: false, size: 2 }, { type: 'contents', data: Buffer.from('abc') }],
        'contents-size',
        96,
        /exceed the declared size 2/,
      ));
    test('contents shorter than declared', () =>
      rejects(
        [{ type: 'regular', executable: false, size: 4 }, { type: 'contents', data: Buffer.from('abc') }, { type: 'regularEnd' }],
        'contents-size',
        99,
        /contents are 3 bytes, declared 4/,
      ));
    test('negative or fractional size', () => {
      rejects([{ type: 'regular', executable: false, size: -1 }], 'contents-size', 0, /invalid regular file size -1/);
      rejects([{ type: 'regular', executable: false, size: 1.5 }], 'contents-size', 0, /1\.5/);
    });
    test('empty or NUL symlink target', () => {
      rejects([{ type: 'symlink', target: '' }], 'empty-target', 0, /empty/);
      rejects([{ type: 'symlink', target: 'a\0' }], 'target-nul-character', 0, /NUL/);
    });
    test('events out of order', () => {
      rejects([{ type: 'entry', name: 'a' }], 'event-order', 0, /'entry' outside a directory/);
      rejects([{ type: 'directory' }, { type: 'entry', name: 'a' }, { type: 'entryEnd' }], 'event-order', DIR_HEAD + 80, /without a complete entry/);
      rejects([{ type: 'directory' }, { type: 'regularEnd' }], 'event-order', DIR_HEAD, /outside a regular file/);
      rejects([{ type: 'symlink', target: 'a' }, { type: 'directory' }], 'event-order', 24 + 64 + 16 + 16, /after the end of the NAR/);
      rejects([{ type: 'directory' }, { type: 'contents', data: Buffer.from('x') }], 'event-order', DIR_HEAD, /'contents' outside/);
      rejects([{ type: 'directory' }, { type: 'directory' }], 'event-order', DIR_HEAD, /where no node may start/);
    });
    test('an incomplete NAR cannot end', () => {
      rejects([{ type: 'directory' }], 'event-order', DIR_HEAD, /incomplete/);
      rejects([], 'event-order', 0, /incomplete/);
    });
  });
});
