// Fuzzing the NAR reader: valid NARs (random trees and the fixtures) mutated
// in every way that matters to a length-prefixed format (bit flips, byte
// changes, insertions, deletions, truncation, spliced streams, length fields
// replaced by boundary values), fed in random chunkings. The reader must
// either accept — and then the input is canonical: re-encoding the events
// gives back exactly the bytes it consumed — or throw BadNar, identically for
// every chunking. Nothing else may be thrown, no case may hang, and memory
// must stay bounded (lengths are capped before anything is allocated).
//   DRVBOX_FUZZ_CASES   number of cases (default 3000; >= 100000 by hand)
//   DRVBOX_FUZZ_SEED    fast-check seed (default: random, printed)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { BadNar, type NarEvent } from '../../src/format/nar.js';
import { NarParser } from '../../src/format/nar-reader.js';
import { NarWriter } from '../../src/format/nar-writer.js';
import { REPO_ROOT } from '../helpers/host.js';
import { arbChunking, arbTree, chunk, normalise, treeEvents } from '../fixtures/nars/trees.js';

const CASES = Number(process.env.DRVBOX_FUZZ_CASES ?? 3000);
const SEED = Number(process.env.DRVBOX_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'nars');
const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.nar'))
  .map((f) => readFileSync(join(FIXTURES, f)));

const BOUNDARY = [0n, 1n, 7n, 8n, 13n, 255n, 256n, 4095n, 4096n, 1n << 31n, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, 1n << 63n, (1n << 64n) - 1n];

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'length'; word: number; value: bigint }
  | { kind: 'splice'; at: number; other: number; from: number };

const arbMutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('length' as const), word: fc.nat(), value: fc.constantFrom(...BOUNDARY) }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), other: fc.nat(), from: fc.nat() }),
);

function mutate(input: Uint8Array, m: Mutation): Uint8Array {
  const b = Buffer.from(input);
  const n = b.length;
  const at = n === 0 ? 0 : m.kind === 'length' ? 0 : (m as { at: number }).at % (n + 1);
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
    case 'length': {
      const words = Math.floor(n / 8);
      if (words > 0) b.writeBigUInt64LE(m.value, (m.word % words) * 8);
      return b;
    }
    case 'splice': {
      const other = fixtures[m.other % fixtures.length]!;
      return Buffer.concat([b.subarray(0, at), other.subarray(m.from % (other.length + 1))]);
    }
  }
}

type Outcome = { ok: true; events: unknown[]; used: number } | { ok: false; rule: string; offset: number };

function run(data: Uint8Array, pieces: Uint8Array[]): Outcome {
  const p = new NarParser();
  const events: NarEvent[] = [];
  try {
    for (const piece of pieces) events.push(...p.push(piece));
    p.finish();
  } catch (e) {
    if (!(e instanceof BadNar)) throw new Error(`non-BadNar thrown: ${String(e)}`, { cause: e });
    assert.ok(Number.isSafeInteger(e.offset) && e.offset >= 0 && e.offset <= data.length, `offset ${e.offset} out of range`);
    return { ok: false, rule: e.rule, offset: e.offset };
  }
  const used = p.offset;
  // Accepted input is canonical: the writer reproduces exactly the consumed bytes.
  assert.deepEqual(Buffer.from(NarWriter.encodeAll(events)), Buffer.from(data.subarray(0, used)));
  return { ok: true, events: normalise(events), used };
}

const arbInput = fc.oneof(
  { weight: 3, arbitrary: arbTree({ maxDepth: 3, maxFile: 64 }).map((t) => NarWriter.encodeAll(treeEvents(t))) },
  { weight: 2, arbitrary: fc.constantFrom(...fixtures) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
);

test(`NAR reader fuzz: ${CASES} cases (seed ${SEED})`, () => {
  console.log(`# NAR fuzz: ${CASES} cases, DRVBOX_FUZZ_SEED=${SEED}`);
  const start = performance.now();
  let slowest = 0;
  let accepted = 0;
  const rssBefore = process.memoryUsage().rss;
  fc.assert(
    fc.property(arbInput, fc.array(arbMutation, { minLength: 0, maxLength: 3 }), arbChunking(128), (input, muts, sizes) => {
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
