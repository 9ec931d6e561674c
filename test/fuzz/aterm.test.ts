// Mutation fuzzing of the ATerm parser, seeded with the Nix 2.8 fixtures and
// the malformed ones. The parser must only ever throw its typed errors, in
// both modes, without hanging or allocating out of proportion to the input;
// whatever strict mode accepts must print back byte for byte, and whatever
// lenient mode accepts must print to something strict mode accepts.
//
//   DRVBOX_FUZZ_CASES=100000 node test/run.mjs fuzz/aterm     (default 3000)
//   DRVBOX_FUZZ_SEED=<n>                                      (default 24301)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/host.js';
import { isAtermError, parseDerivation, printDerivation } from '../../src/format/aterm.js';
import { UnrepresentableString } from '../../src/format/derivation.js';

const CASES = Number(process.env.DRVBOX_FUZZ_CASES ?? 3000);
const SEED = Number(process.env.DRVBOX_FUZZ_SEED ?? 24301);
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'derivations');
/** A single parse slower than this counts as a hang. */
const MAX_CASE_MS = 5000;
const MAX_RSS = 768 * 1024 * 1024;

interface Seed {
  name: string;
  bytes: Buffer;
}

function seeds(): Seed[] {
  const res: Seed[] = [];
  for (const f of readdirSync(FIXTURES).filter((x) => x.endsWith('.drv')).sort()) {
    res.push({ name: f.slice(33, -4), bytes: readFileSync(join(FIXTURES, f)) });
  }
  const malformed = JSON.parse(readFileSync(join(FIXTURES, 'malformed', 'expected.json'), 'utf8')) as Array<{ file: string; name: string }>;
  for (const m of malformed) res.push({ name: m.name, bytes: readFileSync(join(FIXTURES, 'malformed', m.file)) });
  return res;
}

/** mulberry32: small, fast, reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TOKENS = [
  'Derive(', '[', ']', '(', ')', ',', '"', '\\', '\\n', '\\"', '\\\\', '""', '"out"', '"r:sha256"', '"sha256"', '"text:sha256"',
  '"impure"', '"sha1"', '"md5"', '"sha512"', '"r:sha3"', '("a","b")', '["out"]', '"/nix/store/00000000000000000000000000000000-x"',
  '"/nix/store/00000000000000000000000000000000-x.drv"', '"/nix/store/eeee"', '"/tmp/x"', '\n', '\t', '\r', '\u0000', 'é', '😀',
].map((t) => Buffer.from(t, 'utf8'));
const BYTES = [0x00, 0x22, 0x5c, 0x28, 0x29, 0x5b, 0x5d, 0x2c, 0x0a, 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xf8, 0xff];

type Mutator = (b: Buffer, r: () => number, other: Buffer) => Buffer;
const int = (r: () => number, n: number) => Math.floor(r() * n);

const MUTATORS: Array<[string, Mutator]> = [
  ['flip', (b, r) => {
    if (b.length === 0) return b;
    const c = Buffer.from(b);
    c[int(r, c.length)]! ^= 1 << int(r, 8);
    return c;
  }],
  ['byte', (b, r) => {
    if (b.length === 0) return b;
    const c = Buffer.from(b);
    c[int(r, c.length)] = BYTES[int(r, BYTES.length)]!;
    return c;
  }],
  ['delete', (b, r) => {
    const i = int(r, b.length + 1);
    return Buffer.concat([b.subarray(0, i), b.subarray(Math.min(b.length, i + 1 + int(r, 16)))]);
  }],
  ['insert-random', (b, r) => {
    const i = int(r, b.length + 1);
    const ins = Buffer.from(Array.from({ length: 1 + int(r, 16) }, () => int(r, 256)));
    return Buffer.concat([b.subarray(0, i), ins, b.subarray(i)]);
  }],
  ['insert-token', (b, r) => {
    const i = int(r, b.length + 1);
    return Buffer.concat([b.subarray(0, i), TOKENS[int(r, TOKENS.length)]!, b.subarray(i)]);
  }],
  ['truncate', (b, r) => b.subarray(0, int(r, b.length + 1))],
  ['duplicate', (b, r) => {
    const i = int(r, b.length + 1);
    const j = Math.min(b.length, i + int(r, 64));
    const at = int(r, b.length + 1);
    return Buffer.concat([b.subarray(0, at), b.subarray(i, j), b.subarray(at)]);
  }],
  ['splice', (b, r, other) => {
    const i = int(r, b.length + 1);
    const j = int(r, other.length + 1);
    return Buffer.concat([b.subarray(0, i), other.subarray(j)]);
  }],
  ['huge', (b, r) => {
    // Long runs: nesting, long strings, many escapes, many list items, bad UTF-8.
    const n = [1000, 100_000, 1_000_000][int(r, 3)]!;
    const kind = int(r, 6);
    let ins: Buffer;
    if (kind === 0) ins = Buffer.alloc(n, '[');
    else if (kind === 1) ins = Buffer.concat([Buffer.from('"'), Buffer.alloc(n, 'a'), Buffer.from('"')]);
    else if (kind === 2) ins = Buffer.from('\\"'.repeat(n / 2));
    else if (kind === 3) ins = Buffer.from('("x","y"),'.repeat(Math.floor(n / 10)));
    else if (kind === 4) ins = Buffer.alloc(n, 0x80);
    else ins = Buffer.from('(['.repeat(n / 2));
    const i = int(r, b.length + 1);
    return Buffer.concat([b.subarray(0, i), ins, b.subarray(i)]);
  }],
];

interface Failure {
  case: number;
  seed: string;
  mutations: string[];
  mode: string;
  error: string;
}

test(`ATerm parser fuzz: ${CASES} mutated cases only raise typed errors`, () => {
  const all = seeds();
  assert.ok(all.length > 40, 'fixtures missing');
  const r = rng(SEED);
  const failures: Failure[] = [];
  let accepted = 0;
  let rejected = 0;
  let maxMs = 0;
  let maxRss = 0;
  const started = Date.now();
  for (let k = 0; k < CASES && failures.length < 5; k++) {
    const seed = all[int(r, all.length)]!;
    const other = all[int(r, all.length)]!.bytes;
    let bytes = seed.bytes;
    const used: string[] = [];
    // Huge runs are rare so the default run stays quick.
    const count = 1 + int(r, 4);
    for (let m = 0; m < count; m++) {
      let idx = int(r, MUTATORS.length);
      if (MUTATORS[idx]![0] === 'huge' && r() > 0.05) idx = 0;
      const [mname, fn] = MUTATORS[idx]!;
      bytes = fn(bytes, r, other);
      used.push(mname);
    }
    for (const lenient of [false, true]) {
      const t0 = performance.now();
      const fail = (error: string) => failures.push({ case: k, seed: seed.name, mutations: used, mode: lenient ? 'lenient' : 'strict', error });
      try {
        const d = parseDerivation(bytes, seed.name, { lenient });
        accepted++;
        let text: string;
        try {
          text = printDerivation(d);
        } catch (e) {
          // Lenient mode may read values Nix itself could not write back (a quote in the system).
          if (lenient && e instanceof UnrepresentableString) continue;
          fail(`printing what was parsed threw ${String(e)}`);
          continue;
        }
        if (!lenient && !Buffer.from(text, 'utf8').equals(bytes)) fail('strict parse did not re-print byte for byte');
        if (lenient) {
          const again = printDerivation(parseDerivation(text, seed.name));
          if (again !== text) fail('lenient result does not re-print canonically');
        }
      } catch (e) {
        if (isAtermError(e)) rejected++;
        else fail(`untyped error: ${e instanceof Error ? e.stack : String(e)}`);
      } finally {
        maxMs = Math.max(maxMs, performance.now() - t0);
      }
    }
    if ((k & 1023) === 0) maxRss = Math.max(maxRss, process.memoryUsage().rss);
  }
  maxRss = Math.max(maxRss, process.memoryUsage().rss);
  const secs = (Date.now() - started) / 1000;
  console.log(`# aterm fuzz: ${CASES} cases (seed ${SEED}) in ${secs.toFixed(1)} s: ${accepted} parses accepted, ${rejected} typed rejections, slowest ${maxMs.toFixed(1)} ms, peak RSS ${(maxRss / 2 ** 20).toFixed(0)} MiB`);
  assert.deepEqual(failures, [], `reproduce with DRVBOX_FUZZ_SEED=${SEED} DRVBOX_FUZZ_CASES=${CASES}`);
  assert.ok(maxMs < MAX_CASE_MS, `a single case took ${maxMs.toFixed(0)} ms`);
  assert.ok(maxRss < MAX_RSS, `peak RSS ${maxRss} bytes`);
  assert.ok(rejected > 0 && accepted > 0);
});
