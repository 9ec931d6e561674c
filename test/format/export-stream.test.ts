import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  BadExport,
  EXPORT_MAGIC,
  ExportParser,
  exportEntryTrailer,
  exportStream,
  parseExport,
  type ExportEvent,
} from '../../src/format/export-stream.js';
import { BadNar, type NarEvent } from '../../src/format/nar.js';
import { NarWriter, encodeNarString, encodeU64 } from '../../src/format/nar-writer.js';
import { REPO_ROOT } from '../helpers/host.js';
import { arbChunking, arbTree, chunk, normalise, treeEvents } from '../fixtures/nars/trees.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'nars');
const nixExport = readFileSync(join(FIXTURES, 'nix-export-closure.bin'));
const GREETING = '/nix/store/0q6yv2alszy3ij8bisdsahrwabxhghmg-greeting.txt';
const DRV = '/nix/store/krd1j2nff3jhkqmvyrl1vf88c8vwjnf1-exp-test.drv';
const P1 = '/nix/store/z4y6f6vg9xi3sl0ia7rxrj8a5vqdyqdj-one';
const P2 = '/nix/store/ksrlbsnkqjxc11pfq3nl9x6iy6bijq3b-two';
const DRV2 = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-two.drv';

const smallNar = NarWriter.encodeAll([
  { type: 'regular', executable: false, size: 5 },
  { type: 'contents', data: Buffer.from('hello') },
  { type: 'regularEnd' },
]);

function summary(events: ExportEvent[]): unknown[] {
  const out: unknown[] = [];
  let nar: NarEvent[] = [];
  for (const e of events) {
    if (e.type === 'nar') nar.push(e.event);
    else if (e.type === 'pathEnd') {
      out.push({ ...e, nar: normalise(nar) });
      nar = [];
    } else out.push(e.type);
  }
  return out;
}

async function collect(gen: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

function parseChunked(data: Uint8Array, size: number, storeDir = '/nix/store'): ExportEvent[] {
  const p = new ExportParser(storeDir);
  const events: ExportEvent[] = [];
  for (let i = 0; i < data.length; i += size) events.push(...p.push(data.slice(i, i + size)));
  p.finish();
  return events;
}

function expectBad(fn: () => unknown, cls: typeof BadExport | typeof BadNar, rule: string, offset: number, msg?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.equal((e as BadExport).rule, rule, (e as Error).message);
    assert.equal((e as BadExport).offset, offset, (e as Error).message);
    if (msg) assert.match((e as Error).message, msg);
    return true;
  });
}

/** An entry built by hand: 1, nar, magic, path, refs, deriver, signature part. */
function entry(path: string, refs: string[], deriver: string, sig: Uint8Array = encodeU64(0), nar: Uint8Array = smallNar): Buffer {
  return Buffer.concat([
    encodeU64(1),
    nar,
    encodeU64(EXPORT_MAGIC),
    encodeNarString(path),
    encodeU64(refs.length),
    ...refs.map((r) => encodeNarString(r)),
    encodeNarString(deriver),
    sig,
  ]);
}

describe('ExportParser', () => {
  test('reads the export Nix 2.8 wrote of a closure (greeting.txt, then the .drv referring to it)', () => {
    const events = parseExport(nixExport);
    const s = summary(events) as Array<Record<string, unknown>>;
    assert.equal(s.length, 5);
    assert.equal(s[0], 'pathStart');
    assert.deepEqual({ ...s[1], nar: undefined }, { type: 'pathEnd', path: GREETING, references: [], deriver: null, nar: undefined });
    assert.deepEqual(s[1]!.nar, [
      { type: 'regular', executable: false, size: 5 },
      { type: 'contents', data: Buffer.from('hello') },
      { type: 'regularEnd' },
    ]);
    assert.equal(s[2], 'pathStart');
    assert.equal(s[3]!.path, DRV);
    assert.deepEqual(s[3]!.references, [GREETING]);
    assert.equal(s[4], 'end');
    for (const size of [1, 3, 8, 17, 200]) assert.deepEqual(summary(parseChunked(nixExport, size)), summary(events));
  });

  test('writes the same bytes Nix wrote, from the parsed events', async () => {
    const events = parseExport(nixExport);
    const entries: Array<{ info: { path: string; references: string[]; deriver: string | null }; nar: Uint8Array[] }> = [];
    let nar: NarEvent[] = [];
    for (const e of events) {
      if (e.type === 'nar') nar.push(e.event);
      if (e.type === 'pathEnd') {
        entries.push({ info: { path: e.path, references: e.references, deriver: e.deriver }, nar: [NarWriter.encodeAll(nar)] });
        nar = [];
      }
    }
    assert.deepEqual(await collect(exportStream(entries)), nixExport);
  });

  test('deriver, several references (written sorted), legacy signature accepted', () => {
    const data = Buffer.concat([
      entry(P1, [], ''),
      entry(P2, [P2, P1], DRV2, Buffer.concat([encodeU64(1), encodeNarString('cache.example.org-1:c2lnbmF0dXJl')])),
      encodeU64(0),
    ]);
    const ends = parseExport(data).filter((e) => e.type === 'pathEnd');
    assert.deepEqual(ends, [
      { type: 'pathEnd', path: P1, references: [], deriver: null },
      { type: 'pathEnd', path: P2, references: [P2, P1], deriver: DRV2, signature: 'cache.example.org-1:c2lnbmF0dXJl' },
    ]);
    const t = exportEntryTrailer({ path: P2, references: [P1, P2, P1], deriver: DRV2 });
    assert.deepEqual(
      Buffer.from(t),
      Buffer.concat([encodeU64(EXPORT_MAGIC), encodeNarString(P2), encodeU64(2), encodeNarString(P2), encodeNarString(P1), encodeNarString(DRV2), encodeU64(0)]),
    );
  });

  test('an empty stream is just the end marker; a custom store dir works', () => {
    assert.deepEqual(parseExport(encodeU64(0)), [{ type: 'end' }]);
    const p = '/gnu/store/z4y6f6vg9xi3sl0ia7rxrj8a5vqdyqdj-x';
    const ev = parseExport(Buffer.concat([entry(p, [], ''), encodeU64(0)]), '/gnu/store');
    assert.equal(ev.filter((e) => e.type === 'pathEnd').length, 1);
    expectBad(() => parseExport(Buffer.concat([entry(p, [], ''), encodeU64(0)])), BadExport, 'invalid-store-path', 8 + smallNar.length + 8, /is not in the Nix store/);
  });

  test('callback variant', () => {
    const seen: ExportEvent[] = [];
    const p = new ExportParser('/nix/store', { onEvent: (e) => seen.push(e) });
    assert.deepEqual(p.push(nixExport), []);
    p.finish();
    assert.equal(p.done, true);
    assert.deepEqual(summary(seen), summary(parseExport(nixExport)));
  });

  describe('rejects malformed streams', () => {
    const magicAt = 8 + smallNar.length;
    const pathAt = magicAt + 8;
    const refsAt = pathAt + 56; // P1 is 47 bytes: 8 + 47 + 1 padding
    test('bad marker', () => expectBad(() => parseExport(encodeU64(2)), BadExport, 'bad-marker', 0, /expected 1 \(a path follows\) or 0 \(end\), got 2/));
    test('bad marker after an entry', () => {
      const data = Buffer.concat([entry(P1, [], ''), encodeU64(7)]);
      expectBad(() => parseExport(data), BadExport, 'bad-marker', data.length - 8);
    });
    test('bad magic', () => {
      const data = entry(P1, [], '');
      data.writeUInt32LE(0x4558494f, magicAt);
      expectBad(() => parseExport(data), BadExport, 'bad-magic', magicAt, /export magic/);
    });
    test('invalid store path, reference, deriver', () => {
      expectBad(() => parseExport(entry('/nix/store/short-x', [], '')), BadExport, 'invalid-store-path', pathAt, /'\/nix\/store\/short-x'/);
      expectBad(() => parseExport(entry(P1, ['/etc/passwd'], '')), BadExport, 'invalid-store-path', refsAt + 8, /reference of/);
      expectBad(() => parseExport(entry(P1, [], `${P2}/sub`)), BadExport, 'invalid-store-path', refsAt + 8, /deriver of .* is not a store path \(it is inside one\)/);
      expectBad(() => parseExport(entry('/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x', [], '')), BadExport, 'invalid-store-path', pathAt, /invalid hash part/);
    });
    test('oversized path length, reference count and signature', () => {
      const long = Buffer.concat([entry(P1, [], '').subarray(0, pathAt), encodeU64(1 << 30)]);
      expectBad(() => parseExport(long), BadExport, 'oversized-length', pathAt, /more than 255/);
      const many = Buffer.concat([entry(P1, [], '').subarray(0, refsAt), encodeU64(2 ** 40)]);
      expectBad(() => parseExport(many), BadExport, 'oversized-length', refsAt, /claims 1099511627776 references/);
      const sig = entry(P1, [], '', Buffer.concat([encodeU64(1), encodeU64(1e6)]));
      expectBad(() => parseExport(sig), BadExport, 'oversized-length', sig.length - 8);
    });
    test('non-zero padding', () => {
      const data = entry(P1, [], '');
      data[pathAt + 8 + P1.length] = 1;
      expectBad(() => parseExport(data), BadExport, 'nonzero-padding', pathAt + 8 + P1.length);
    });
    test('bad signature marker', () => {
      const data = entry(P1, [], '', encodeU64(2));
      expectBad(() => parseExport(data), BadExport, 'bad-signature-marker', data.length - 8);
    });
    test('a malformed NAR inside raises BadNar with the offset in the stream', () => {
      const nar = Buffer.from(smallNar);
      nar[8 + 13] = 1; // padding of the magic string
      expectBad(() => parseExport(entry(P1, [], '', encodeU64(0), nar)), BadNar, 'nonzero-padding', 8 + 8 + 13);
    });
    test('trailing data after the end marker', () => {
      const data = Buffer.concat([encodeU64(0), Buffer.from('x')]);
      expectBad(() => parseExport(data), BadExport, 'trailing-data', 8);
    });
    test('truncation at every byte', () => {
      for (let cut = 0; cut < nixExport.length; cut++) {
        const p = new ExportParser();
        p.push(nixExport.subarray(0, cut));
        assert.throws(
          () => p.finish(),
          (e: unknown) =>
            (e instanceof BadExport && e.rule === 'truncated' && e.offset === cut) ||
            (e instanceof BadNar && (e.rule === 'truncated' || e.rule === 'truncated-padding') && e.offset === cut),
          `cut at ${cut}`,
        );
      }
    });
  });

  test('writer refuses invalid paths before writing anything', async () => {
    const gen = exportStream([{ info: { path: '/tmp/x', references: [], deriver: null }, nar: [smallNar] }]);
    await assert.rejects(collect(gen), (e: unknown) => e instanceof BadExport && e.rule === 'invalid-store-path' && /'\/tmp\/x'/.test(e.message));
    await assert.rejects(collect(exportStream([{ info: { path: P1, references: [], deriver: null }, nar: [] }])), BadNar);
  });

  test('property: random entries round-trip through exportStream and ExportParser in any chunking', async () => {
    const paths = [P1, P2, DRV2, GREETING, DRV];
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            tree: arbTree({ maxDepth: 3 }),
            path: fc.constantFrom(...paths),
            references: fc.subarray(paths),
            deriver: fc.option(fc.constantFrom(DRV, DRV2), { nil: null }),
          }),
          { maxLength: 4 },
        ),
        arbChunking(128),
        async (entries, sizes) => {
          const bytes = await collect(
            exportStream(entries.map((e) => ({ info: e, nar: [NarWriter.encodeAll(treeEvents(e.tree))] }))),
          );
          const want = entries.map((e) => ({
            type: 'pathEnd',
            path: e.path,
            references: [...new Set(e.references)].sort(),
            deriver: e.deriver,
            nar: normalise(treeEvents(e.tree)),
          }));
          const p = new ExportParser();
          const events: ExportEvent[] = [];
          for (const piece of chunk(bytes, sizes)) events.push(...p.push(piece.slice()));
          p.finish();
          const s = summary(events);
          assert.deepEqual(s.filter((x) => typeof x !== 'string'), want);
          assert.equal(s.at(-1), 'end');
        },
      ),
      { numRuns: 150 },
    );
  });
});
