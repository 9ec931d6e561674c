import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BadNar, type NarEvent } from '../../src/format/nar.js';
import { NarParser, parseNar } from '../../src/format/nar-reader.js';
import { NarWriter } from '../../src/format/nar-writer.js';
import { REPO_ROOT } from '../helpers/host.js';
import { normalise } from '../fixtures/nars/trees.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'nars');
const manifest = JSON.parse(readFileSync(join(FIXTURES, 'malformed.json'), 'utf8')) as Record<string, { rule: string; offset: number }>;
const fixture = (name: string): Buffer => readFileSync(join(FIXTURES, `${name}.nar`));

/** Parses `data` in pieces of `size` bytes; throws what the parser throws. */
function parseChunked(data: Uint8Array, size: number): NarEvent[] {
  const p = new NarParser();
  const events: NarEvent[] = [];
  for (let i = 0; i < data.length; i += size) {
    // Copy each piece: views handed out must not depend on the caller keeping the chunk.
    events.push(...p.push(data.slice(i, i + size)));
    if (p.done && p.takeRemainder().length > 0) {
      throw new BadNar('trailing', { offset: -1, rule: 'trailing-data' });
    }
  }
  p.finish();
  return events;
}

function expectBadNar(fn: () => unknown, rule: string, offset: number, label: string): BadNar {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof BadNar, `${label}: expected BadNar, got ${String(caught)}`);
  assert.equal(caught.code, 'E_BAD_NAR');
  assert.equal(caught.rule, rule, `${label}: rule (${caught.message})`);
  if (offset >= 0) assert.equal(caught.offset, offset, `${label}: offset (${caught.message})`);
  assert.match(caught.message, new RegExp(`^bad NAR at byte ${caught.offset}: .*\\(${rule}\\)$`));
  return caught;
}

describe('malformed NAR fixtures', () => {
  test('there is one fixture for every rule the reader enforces', () => {
    const rules = new Set(Object.values(manifest).map((m) => m.rule));
    for (const r of [
      'bad-magic', 'unknown-token', 'oversized-length', 'nonzero-padding', 'truncated', 'truncated-padding',
      'executable-value', 'empty-name', 'dot', 'dotdot', 'slash', 'nul-character', 'unsorted', 'duplicate',
      'empty-target', 'target-nul-character', 'trailing-data',
    ]) {
      assert.ok(rules.has(r), `no fixture for ${r}`);
    }
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.nar') && !f.startsWith('valid-'));
    assert.deepEqual(files.map((f) => f.slice(0, -4)).sort(), Object.keys(manifest).sort());
  });

  for (const [name, { rule, offset }] of Object.entries(manifest)) {
    test(`${name}.nar is rejected: ${rule} at byte ${offset}`, () => {
      const data = fixture(name);
      expectBadNar(() => parseNar(data), rule, offset, 'one chunk');
      if (rule === 'trailing-data') return; // parseChunked reports trailing data itself
      for (const size of [1, 3, 7, 8, 13, 64]) expectBadNar(() => parseChunked(data, size), rule, offset, `chunks of ${size}`);
    });
  }

  test('an oversized length is rejected without allocating it', () => {
    const before = process.memoryUsage().arrayBuffers;
    expectBadNar(() => parseNar(fixture('oversized-length')), 'oversized-length', manifest['oversized-length']!.offset, 'x');
    assert.ok(process.memoryUsage().arrayBuffers - before < 1 << 20);
  });

  test('messages name the offending value', () => {
    assert.match(expectBadNar(() => parseNar(fixture('slash')), 'slash', -1, 'x').message, /"a\/b"/);
    assert.match(expectBadNar(() => parseNar(fixture('unsorted')), 'unsorted', -1, 'x').message, /entry "a" comes after "b"/);
    assert.match(expectBadNar(() => parseNar(fixture('unknown-token')), 'unknown-token', -1, 'x').message, /expected 'regular', 'symlink' or 'directory', got "fifo"/);
  });

  test('a failed parser keeps failing with the same error', () => {
    const p = new NarParser();
    const data = fixture('dot');
    const first = expectBadNar(() => p.push(data), 'dot', manifest.dot!.offset, 'first');
    assert.throws(() => p.push(new Uint8Array(8)), (e) => e === first);
    assert.throws(() => p.finish(), (e) => e === first);
  });
});

describe('valid NARs written by nix-store --dump', () => {
  const valid = readdirSync(FIXTURES).filter((f) => f.startsWith('valid-'));

  test('fixtures are present', () => {
    assert.deepEqual(valid.sort(), [
      'valid-ca-self-reference.nar',
      'valid-empty-dir.nar',
      'valid-empty-file.nar',
      'valid-executable.nar',
      'valid-symlink.nar',
      'valid-tree.nar',
    ]);
  });

  for (const f of valid) {
    test(`${f}: parse then write gives the same bytes, in any chunking`, () => {
      const data = readFileSync(join(FIXTURES, f));
      const events = parseNar(data);
      assert.deepEqual(Buffer.from(NarWriter.encodeAll(events)), data);
      for (const size of [1, 2, 5, 8, 9, 100]) assert.deepEqual(normalise(parseChunked(data, size)), normalise(events));
    });
  }

  test('valid-tree.nar has the expected structure', () => {
    const events = parseNar(readFileSync(join(FIXTURES, 'valid-tree.nar')));
    const shape = events.map((e) => {
      switch (e.type) {
        case 'entry':
          return `entry:${e.name}`;
        case 'regular':
          return `regular:${e.executable ? 'x' : '-'}:${e.size}`;
        case 'contents':
          return `contents:${Buffer.from(e.data).toString()}`;
        case 'symlink':
          return `symlink:${e.target}`;
        default:
          return e.type;
      }
    });
    assert.deepEqual(shape, [
      'directory',
      'entry:Zupper', 'regular:-:25', 'contents:sorted before lower case\n', 'regularEnd', 'entryEnd',
      'entry:bin', 'directory',
      'entry:hello', 'regular:x:21', 'contents:#!/bin/sh\necho hello\n', 'regularEnd', 'entryEnd',
      'directoryEnd', 'entryEnd',
      'entry:dangling', 'symlink:/nonexistent/absolute', 'entryEnd',
      'entry:eight-bytes', 'regular:-:8', 'contents:12345678', 'regularEnd', 'entryEnd',
      'entry:empty-dir', 'directory', 'directoryEnd', 'entryEnd',
      'entry:empty-file', 'regular:-:0', 'regularEnd', 'entryEnd',
      'entry:link', 'symlink:bin/hello', 'entryEnd',
      'entry:share', 'directory',
      'entry:dоc', 'directory',
      'entry:ünïcødé ✓.txt', 'regular:-:8', 'contents:unicode\n', 'regularEnd', 'entryEnd',
      'directoryEnd', 'entryEnd',
      'directoryEnd', 'entryEnd',
      'directoryEnd',
    ]);
  });
});

describe('NarParser stream behaviour', () => {
  const nar = readFileSync(join(FIXTURES, 'valid-executable.nar'));

  test('stops exactly at the end of the NAR and hands back the rest', () => {
    const after = Buffer.from('NEXT-THING-0123456789');
    const data = Buffer.concat([nar, after]);
    for (const size of [1, 7, 8, 24, data.length]) {
      const p = new NarParser();
      const rest: Buffer[] = [];
      for (let i = 0; i < data.length; i += size) {
        p.push(data.subarray(i, i + size));
        if (p.done) rest.push(Buffer.from(p.takeRemainder()));
      }
      assert.equal(p.done, true);
      assert.equal(p.offset, nar.length, `size ${size}`);
      assert.deepEqual(Buffer.concat(rest), after, `size ${size}`);
      p.finish();
    }
  });

  test('remainder pushed in several calls after the end is concatenated', () => {
    const p = new NarParser();
    p.push(nar);
    p.push(Buffer.from('ab'));
    p.push(Buffer.from('cd'));
    assert.deepEqual(Buffer.from(p.takeRemainder()), Buffer.from('abcd'));
    assert.equal(p.takeRemainder().length, 0);
  });

  test('callback variant gives the same events and push() returns none', () => {
    const seen: NarEvent[] = [];
    const p = new NarParser({ onEvent: (e) => seen.push(e) });
    assert.deepEqual(p.push(nar), []);
    p.finish();
    assert.deepEqual(normalise(seen), normalise(parseNar(nar)));
  });

  test('contents are views of the input chunk, not copies', () => {
    const events = new NarParser().push(nar);
    const c = events.find((e) => e.type === 'contents');
    assert.ok(c && c.type === 'contents');
    assert.equal(c.data.buffer, nar.buffer);
  });

  test('a huge file is streamed: 64 MiB of contents in 1 MiB chunks, no contents copy', () => {
    const size = 64 << 20;
    const w = new NarWriter();
    const start = w.write({ type: 'regular', executable: false, size });
    assert.equal(start.length, 24 + 64 + 8);
    const p = new NarParser();
    let total = 0;
    p.push(start);
    const block = new Uint8Array(1 << 20).fill(7);
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 64; i++) {
      w.write({ type: 'contents', data: block });
      for (const e of p.push(block)) if (e.type === 'contents') total += e.data.length;
    }
    assert.ok(process.memoryUsage().arrayBuffers - before < 8 << 20);
    p.push(w.write({ type: 'regularEnd' }));
    p.finish();
    assert.equal(total, size);
  });

  test('offsets include baseOffset', () => {
    const p = new NarParser({ baseOffset: 1000 });
    expectBadNar(() => p.push(fixture('dot')), 'dot', 1000 + manifest.dot!.offset, 'base');
  });

  test('truncation at every byte of a valid NAR is reported by finish()', () => {
    const data = readFileSync(join(FIXTURES, 'valid-tree.nar'));
    for (let cut = 0; cut < data.length; cut++) {
      const p = new NarParser();
      p.push(data.subarray(0, cut));
      assert.throws(
        () => p.finish(),
        (e: unknown) => e instanceof BadNar && (e.rule === 'truncated' || e.rule === 'truncated-padding') && e.offset === cut,
        `cut at ${cut}`,
      );
    }
  });
});
