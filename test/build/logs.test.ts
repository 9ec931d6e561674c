import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BuildLog, drvLogPath, findDrvLog, MAX_KEPT_LINE, overlayCarriageReturns } from '../../src/build/logs.js';
import { tempDir } from '../helpers/tmp.js';

/** The tail as Nix computes it: every byte, \n ends a line, \r overwrites from column 0. */
function referenceTail(data: string, n: number): string[] {
  const lines = data.split('\n');
  const last = lines.pop()!;
  const tail = lines.map(overlayCarriageReturns).slice(-n);
  if (last !== '') {
    tail.push(overlayCarriageReturns(last));
    if (tail.length > n) tail.shift();
  }
  return tail;
}

describe('build logs', () => {
  test("path: <logDir>/drvs/<first 2 chars>/<rest> (Nix's layout)", () => {
    assert.equal(
      drvLogPath('/nix/var/log/nix/drvs', '/nix/store/dh90cv62na87s6n51in9nvv1mlsq5a3w-fail.drv'),
      '/nix/var/log/nix/drvs/dh/90cv62na87s6n51in9nvv1mlsq5a3w-fail.drv',
    );
  });

  test('the file gets every byte; the tail keeps the last 10 lines', (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'drvs', 'ab', 'cdef-x.drv');
    const log = new BuildLog(path);
    const data = Array.from({ length: 25 }, (_, i) => `line ${i}`).join('\n') + '\npartial';
    log.write(Buffer.from(data));
    log.close();
    assert.equal(readFileSync(path, 'utf8'), data);
    assert.deepEqual(log.tail(), [...Array.from({ length: 9 }, (_, i) => `line ${i + 16}`), 'partial']);
    assert.equal(log.lastLine(), 'partial');
    assert.equal(log.bytes, data.length);
    assert.deepEqual(findDrvLog(join(dir, 'drvs'), '/nix/store/abcdef-x.drv'), { path, compressed: false });
    assert.equal(findDrvLog(join(dir, 'drvs'), '/nix/store/zzcdef-x.drv'), null);
  });

  test('carriage returns overwrite the line from its start (progress bars)', () => {
    assert.equal(overlayCarriageReturns('10%\r20%\r100% done'), '100% done');
    assert.equal(overlayCarriageReturns('downloading...\rok'), 'okwnloading...');
    assert.equal(overlayCarriageReturns('dos line\r'), 'dos line');
  });

  test('property: any chunking gives the tail of the whole text', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', 'bc', '\n', '\r', 'xyz\n', '\n\n', 'é'), { maxLength: 60 }),
        fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 1, max: 12 }),
        (parts, cuts, n) => {
          const data = parts.join('');
          const buf = Buffer.from(data, 'utf8');
          const log = new BuildLog(null, { tailLines: n });
          let at = 0;
          let k = 0;
          while (at < buf.length) {
            const len = cuts[k++ % cuts.length]!;
            log.write(buf.subarray(at, at + len));
            at += len;
          }
          // Chunks may split a UTF-8 sequence; compare on ASCII-only data, and on lengths otherwise.
          const expected = referenceTail(data, n);
          if (/^[\x00-\x7f]*$/.test(data)) assert.deepEqual(log.tail(), expected);
          else assert.equal(log.tail().length, expected.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('memory stays bounded: a line without end is capped, big chunks are not scanned whole', () => {
    const log = new BuildLog(null);
    const chunk = Buffer.alloc(1 << 20, 0x61); // 1 MiB of 'a', no newline
    for (let i = 0; i < 64; i++) log.write(chunk);
    assert.equal(log.lastLine().length, MAX_KEPT_LINE);
    assert.equal(log.bytes, 64 << 20);
    const many = Buffer.from('x\n'.repeat(1 << 19));
    log.write(many);
    assert.deepEqual(log.tail(), Array.from({ length: 10 }, () => 'x'));
  });

  test('onChunk sees every chunk after it reached the file (-v streaming)', () => {
    const seen: string[] = [];
    const log = new BuildLog(null, { onChunk: (c) => seen.push(Buffer.from(c).toString()) });
    log.write(Buffer.from('a\nb'));
    log.note('registering');
    assert.deepEqual(seen, ['a\nb', 'registering\n']);
  });
});
