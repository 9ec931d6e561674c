// Fuzzing the export-stream reader: valid streams (random entries, and the
// export Nix 2.8 wrote) mutated (bit flips, byte changes, insertions,
// deletions, truncation, numbers and lengths replaced by boundary values)
// and fed in random chunkings. The reader must accept — and then writing the
// events back and reading them again gives the same paths, references,
// derivers and NARs — or throw BadExport / BadNar, identically for every
// chunking. Nothing else may be thrown, no case may hang, memory stays bounded.
//   DRVBOX_FUZZ_CASES   number of cases (default 3000; >= 100000 by hand)
//   DRVBOX_FUZZ_SEED    fast-check seed (default: random, printed)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { BadExport, ExportParser, exportEntryTrailer, exportPathStart, exportStreamEnd, type ExportEvent } from '../../src/format/export-stream.js';
import { BadNar, type NarEvent } from '../../src/format/nar.js';
import { NarParser } from '../../src/format/nar-reader.js';
import { NarWriter } from '../../src/format/nar-writer.js';
import { REPO_ROOT } from '../helpers/host.js';
import { arbChunking, arbTree, chunk, normalise, treeEvents } from '../fixtures/nars/trees.js';

const CASES = Number(process.env.DRVBOX_FUZZ_CASES ?? 3000);
const SEED = Number(process.env.DRVBOX_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const nixExport = readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'nars', 'nix-export-closure.bin'));
const PATHS = [
  '/nix/store/z4y6f6vg9xi3sl0ia7rxrj8a5vqdyqdj-one',
  '/nix/store/ksrlbsnkqjxc11pfq3nl9x6iy6bijq3b-two',
  '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-two.drv',
];
const BOUNDARY = [0n, 1n, 2n, 0x4558494en, 255n, 256n, 4096n, 1n << 20n, (1n << 20n) + 1n, 1n << 32n, 1n << 53n, (1n << 64n) - 1n];

interface Entry {
  path: string;
  references: string[];
  deriver: string | null;
  nar: Uint8Array;
}

function encode(entries: Entry[]): Buffer {
  const parts: Uint8Array[] = [];
  for (const e of entries) parts.push(exportPathStart(), e.nar, exportEntryTrailer(e));
  parts.push(exportStreamEnd());
  return Buffer.concat(parts);
}

const arbEntries = fc.array(
  fc.record({
    path: fc.constantFrom(...PATHS),
    references: fc.subarray(PATHS),
    deriver: fc.option(fc.constantFrom(PATHS[2]!), { nil: null }),
    nar: arbTree({ maxDepth: 2, maxFile: 40 }).map((t) => NarWriter.encodeAll(treeEvents(t))),
  }),
  { maxLength: 3 },
);

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'number'; word: number; value: bigint };

const arbMutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('number' as const), word: fc.nat(), value: fc.constantFrom(...BOUNDARY) }),
);

function mutate(input: Uint8Array, m: Mutation): Uint8Array {
  const b = Buffer.from(input);
  const n = b.length;
  const at = m.kind === 'number' ? 0 : (m as { at: number }).at % (n + 1);
  switch (m.kind) {
    case 'flip':
      if (n > 0) b[at % n]! ^= 1 << m.bit;
      return b;
    case 'set':
      if (n > 0) b[at % n] = m.value;
      return b;
    case 'insert':
      return Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    case 'delete':
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
    case 'truncate':
      return b.subarray(0, at);
    case 'number': {
      const words = Math.floor(n / 8);
      if (words > 0) b.writeBigUInt64LE(m.value, (m.word % words) * 8);
      return b;
    }
  }
}

type Outcome = { ok: true; entries: unknown[] } | { ok: false; cls: string; rule: string; offset: number };

function entriesOf(events: ExportEvent[]): Entry[] {
  const out: Entry[] = [];
  let nar: NarEvent[] = [];
  for (const e of events) {
    if (e.type === 'nar') nar.push(e.event);
    if (e.type === 'pathEnd') {
      out.push({ path: e.path, references: e.references, deriver: e.deriver, nar: NarWriter.encodeAll(nar) });
      nar = [];
    }
  }
  return out;
}

function run(data: Uint8Array, pieces: Uint8Array[]): Outcome {
  const p = new ExportParser();
  const events: ExportEvent[] = [];
  try {
    for (const piece of pieces) events.push(...p.push(piece));
    p.finish();
  } catch (e) {
    if (!(e instanceof BadExport) && !(e instanceof BadNar)) throw new Error(`unexpected error: ${String(e)}`, { cause: e });
    assert.ok(Number.isSafeInteger(e.offset) && e.offset >= 0 && e.offset <= data.length, `offset ${e.offset} out of range`);
    return { ok: false, cls: e.name, rule: e.rule, offset: e.offset };
  }
  assert.equal(events.at(-1)?.type, 'end');
  const entries = entriesOf(events);
  // Write the events back and read them again: the same entries (references now sorted).
  const again = entriesOf(new ExportParser().push(encode(entries)));
  const sorted = entries.map((e) => ({ ...e, references: [...e.references].sort() }));
  assert.deepEqual(again, sorted);
  return { ok: true, entries: entries.map((e) => ({ ...e, nar: normalise(new NarParser().push(e.nar)) })) };
}


const arbInput: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: arbEntries.map((e): Uint8Array => encode(e)) },
  { weight: 1, arbitrary: fc.constant<Uint8Array>(nixExport) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
);

test(`export stream fuzz: ${CASES} cases (seed ${SEED})`, () => {
  console.log(`# export fuzz: ${CASES} cases, DRVBOX_FUZZ_SEED=${SEED}`);
  const start = performance.now();
  let slowest = 0;
  let accepted = 0;
  const rssBefore = process.memoryUsage().rss;
  fc.assert(
    fc.property(arbInput, fc.array(arbMutation, { maxLength: 3 }), arbChunking(128), (input, muts, sizes) => {
      const t0 = performance.now();
      const data = muts.reduce((d, m) => mutate(d, m), input);
      const whole = run(data, [data]);
      const pieces = run(data, chunk(data, sizes).map((c) => c.slice()));
      assert.deepEqual(pieces, whole, 'chunking changed the outcome');
      if (whole.ok) accepted++;
      slowest = Math.max(slowest, performance.now() - t0);
    }),
    { numRuns: CASES, seed: SEED },
  );
  const rssGrowth = process.memoryUsage().rss - rssBefore;
  console.log(
    `# ${CASES} cases in ${((performance.now() - start) / 1000).toFixed(1)} s, ${accepted} accepted, slowest case ${slowest.toFixed(1)} ms, RSS growth ${(rssGrowth / 2 ** 20).toFixed(0)} MiB`,
  );
  assert.ok(slowest < 2000, `a case took ${slowest} ms`);
  assert.ok(rssGrowth < 256 * 2 ** 20, `RSS grew by ${rssGrowth} bytes`);
});
