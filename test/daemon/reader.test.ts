import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { StreamReader } from '../../src/daemon/reader.js';
import { copyNar } from '../../src/daemon/nar-copy.js';
import { BufferSource, WireTruncated, WireWriter } from '../../src/daemon/wire.js';
import { narOfFile } from '../../src/daemon/client.js';

type Node = { file: string; exec?: boolean } | { link: string } | { dir: [string, Node][] };

function writeNode(w: WireWriter, n: Node): void {
  w.string('(').string('type');
  if ('file' in n) {
    w.string('regular');
    if (n.exec) w.string('executable').string('');
    w.string('contents').string(n.file);
  } else if ('link' in n) {
    w.string('symlink').string('target').string(n.link);
  } else {
    w.string('directory');
    for (const [name, child] of n.dir) {
      w.string('entry').string('(').string('name').string(name).string('node');
      writeNode(w, child);
      w.string(')');
    }
  }
  w.string(')');
}

function nar(n: Node): Buffer {
  const w = new WireWriter().string('nix-archive-1');
  writeNode(w, n);
  return w.take();
}

/** Feeds `data` to a stream in the given piece sizes, asynchronously. */
function feed(data: Buffer, sizes: number[]): PassThrough {
  const s = new PassThrough();
  void (async () => {
    let off = 0;
    let i = 0;
    while (off < data.length) {
      const n = Math.max(1, sizes[i++ % sizes.length] ?? 1);
      s.write(data.subarray(off, off + n));
      off += n;
      await new Promise((r) => setImmediate(r));
    }
    s.end();
  })();
  return s;
}

async function all(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

const TREE: Node = {
  dir: [
    ['a', { file: 'hello' }],
    ['b', { dir: [['c', { link: '../a' }], ['d', { file: 'x'.repeat(100_000), exec: true }]] }],
    ['e', { dir: [] }],
    ['f', { file: '' }],
  ],
};

describe('StreamReader', () => {
  test('reads the same values as an in-memory source whatever the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }), async (sizes) => {
        const data = new WireWriter().u64(42).string('a string').strings(['x', 'yy', '']).bytes(Buffer.alloc(100, 7)).take();
        const r = new StreamReader(feed(data, sizes));
        assert.equal(await r.u64(), 42n);
        assert.equal(await r.string(), 'a string');
        assert.deepEqual(await r.strings(), ['x', 'yy', '']);
        assert.deepEqual(await r.bytes(), Buffer.alloc(100, 7));
        await assert.rejects(r.u64(), WireTruncated);
      }),
      { numRuns: 50 },
    );
  });

  test('pauses the stream at its high-water mark instead of buffering everything', async () => {
    const s = new PassThrough({ highWaterMark: 1024 });
    const r = new StreamReader(s, { highWaterMark: 4096 });
    const big = Buffer.alloc(1024 * 1024, 1);
    let accepted = 0;
    for (let off = 0; off < big.length; off += 1024) {
      if (!s.write(big.subarray(off, off + 1024))) break;
      accepted += 1024;
    }
    await new Promise((r) => setTimeout(r, 20));
    // held by the reader: at most the mark plus one chunk; the rest stays with the writer
    assert.ok(r.bufferedBytes <= 4096 + 1024, `buffered ${r.bufferedBytes}`);
    assert.ok(accepted < big.length);
    const first = await r.readExact(8);
    assert.deepEqual(first, Buffer.alloc(8, 1));
    s.destroy();
  });

  test('a read longer than the high-water mark still completes', async () => {
    const payload = Buffer.alloc(300_000, 3);
    const r = new StreamReader(feed(new WireWriter().bytes(payload).take(), [65536]), { highWaterMark: 1024 });
    assert.deepEqual(await r.bytes(), payload);
  });

  test('abort fails a pending read', async () => {
    const s = new PassThrough();
    const r = new StreamReader(s);
    const pending = r.u64();
    r.abort(new Error('shutting down'));
    await assert.rejects(pending, /shutting down/);
  });
});

describe('copyNar', () => {
  test('passes a NAR through byte for byte and stops at its end, any chunking', async () => {
    const n = nar(TREE);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 128 }), { minLength: 1, maxLength: 6 }), async (sizes) => {
        const r = new StreamReader(feed(Buffer.concat([n, new WireWriter().string('next op').take()]), sizes));
        assert.deepEqual(await all(copyNar(r)), n);
        assert.equal(await r.string(), 'next op');
      }),
      { numRuns: 30 },
    );
  });

  test('a single file NAR and its contents only', async () => {
    const n = narOfFile(Buffer.from('flat file\n'));
    assert.deepEqual(n, nar({ file: 'flat file\n' }));
    assert.deepEqual(await all(copyNar(new BufferSource(n))), n);
    assert.equal((await all(copyNar(new BufferSource(n), { onlyContents: true }))).toString(), 'flat file\n');
    await assert.rejects(all(copyNar(new BufferSource(nar(TREE)), { onlyContents: true })), /expected a regular file, got a directory/);
  });

  const bad: [string, Buffer, RegExp][] = [
    ['magic', new WireWriter().string('nix-archive-2').take(), /^bad NAR at byte 0: not a NAR \(starts with "nix-archive-2"\) \(bad-magic\)$/],
    ['unsorted', nar({ dir: [['b', { file: '' }], ['a', { file: '' }]] }), /entry "a" comes after "b" \(unsorted\)/],
    ['duplicate', nar({ dir: [['a', { file: '' }], ['a', { file: '' }]] }), /duplicate entry "a" \(duplicate\)/],
    ['dotdot', nar({ dir: [['..', { file: '' }]] }), /entry name is '\.\.': "\.\." \(dotdot\)/],
    ['slash', nar({ dir: [['a/b', { file: '' }]] }), /entry name contains '\/': "a\/b" \(slash\)/],
    ['nul-character', nar({ dir: [['a\0', { file: '' }]] }), /entry name contains a NUL byte/],
    ['empty-name', nar({ dir: [['', { file: '' }]] }), /entry name is empty/],
    ['unknown-type', new WireWriter().string('nix-archive-1').string('(').string('type').string('fifo').take(), /expected 'regular', 'symlink' or 'directory', got "fifo" \(unknown-token\)/],
    ['truncated', nar(TREE).subarray(0, 200), /unexpected end of input/],
    ['truncated-padding', nar({ file: 'abc' }).subarray(0, 8 * 12 + 3), /unexpected end of input/],
  ];
  for (const [name, data, msg] of bad) {
    test(`rejects a malformed NAR: ${name}`, async () => {
      await assert.rejects(all(copyNar(new BufferSource(data))), (e: unknown) => {
        assert.match((e as Error).message, msg);
        return true;
      });
    });
  }

  test('a huge token length is refused without allocating', async () => {
    const data = new WireWriter().string('nix-archive-1').string('(').u64(1n << 50n).take();
    await assert.rejects(all(copyNar(new BufferSource(data))), /a token has length 1125899906842624, more than 16 \(oversized-length\)/);
  });

  test('deep nesting is parsed without recursion', async () => {
    let n: Node = { file: 'leaf' };
    for (let i = 0; i < 1000; i++) n = { dir: [['d', n]] };
    const data = nar(n);
    assert.deepEqual(await all(copyNar(new BufferSource(data))), data);
  });
});
