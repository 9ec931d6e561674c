// Robustness of the worker-protocol server against malformed clients:
// random bytes, truncated and mutated valid requests, absurd lengths, unknown
// op codes. Every connection must end (the fuzz client closes its side after
// writing), the server's memory must stay bounded, no handler may leak, and a
// well-behaved client on another connection must keep working throughout.
//   DRVBOX_FUZZ_CASES   number of cases (default 3000)
//   DRVBOX_FUZZ_SEED    fast-check seed (default: random, printed)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Op, PROTOCOL_VERSION, Stderr, WORKER_MAGIC_2 } from '../../src/daemon/protocol.js';
import { encodeFrame, FRAME_END, WireWriter } from '../../src/daemon/wire.js';
import { narOfFile } from '../../src/daemon/client.js';
import { hashBytes } from '../../src/format/hash.js';
import { handshakeBytes, rawConnection, startServer, waitFor } from '../daemon/helpers.js';

const CASES = Number(process.env.DRVBOX_FUZZ_CASES ?? 3000);
const SEED = Number(process.env.DRVBOX_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const S = '/nix/store';
const P = `${S}/00000000000000000000000000000000-x`;

/** Well-formed requests, to be cut and mutated. */
function validRequests(): Buffer[] {
  const nar = narOfFile(Buffer.from('contents'));
  const narHash = Buffer.from(hashBytes('sha256', nar).digest).toString('hex');
  const w = () => new WireWriter();
  return [
    w().u64(Op.IsValidPath).string(P).take(),
    w().u64(Op.QueryValidPaths).strings([P, P]).bool(false).take(),
    w().u64(Op.QueryPathInfo).string(P).take(),
    w().u64(Op.AddTextToStore).string('n').string('text').strings([]).take(),
    Buffer.concat([w().u64(Op.AddToStore).string('n').string('fixed:r:sha256').strings([]).bool(false).take(), encodeFrame(nar), FRAME_END]),
    Buffer.concat([
      w().u64(Op.AddToStoreNar).string(P).string('').string(narHash).strings([]).u64(0).u64(nar.length).bool(false).strings([]).string('').bool(false).bool(false).take(),
      encodeFrame(nar),
      FRAME_END,
    ]),
    Buffer.concat([
      w().u64(Op.AddMultipleToStore).bool(false).bool(false).take(),
      encodeFrame(w().u64(1).string(P).string('').string(narHash).strings([]).u64(0).u64(nar.length).bool(false).strings([]).string('').take()),
      encodeFrame(nar),
      FRAME_END,
    ]),
    w().u64(Op.BuildPaths).strings([P, `${P}.drv!out`]).u64(0).take(),
    w().u64(Op.BuildPathsWithResults).strings([`${P}.drv!*`]).u64(0).take(),
    w().u64(Op.QueryMissing).strings([P]).take(),
    w().u64(Op.SetOptions).u64(0).u64(0).u64(0).u64(3).u64(1).u64(0).u64(1).u64(0).u64(0).u64(0).u64(0).u64(1).u64(1).string('k').string('v').take(),
    w().u64(Op.CollectGarbage).u64(0).strings([]).bool(false).u64(0).u64(0).u64(0).u64(0).take(),
    w().u64(Op.BuildDerivation).string(`${P}.drv`).u64(1).string('out').string(P).string('').string('').strings([]).string('x').string('/b').strings([]).u64(0).u64(0).take(),
    w().u64(Op.NarFromPath).string(P).take(),
    w().u64(Op.AddBuildLog).string('00000000000000000000000000000000-x.drv').take(),
  ];
}

type Case = { kind: string; bytes: Buffer };

function caseArb(valid: Buffer[]): fc.Arbitrary<Case> {
  const validArb = fc.constantFrom(...valid);
  const bigLen = fc.bigInt({ min: 1n << 26n, max: (1n << 64n) - 1n });
  return fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((b) => ({ kind: 'random bytes', bytes: Buffer.from(b) })),
    fc.tuple(fc.constantFrom(...Object.values(Op)), fc.uint8Array({ maxLength: 200 })).map(([op, b]) => ({
      kind: 'op + random bytes',
      bytes: Buffer.concat([new WireWriter().u64(op).take(), b]),
    })),
    fc
      .tuple(fc.bigInt({ min: 47n, max: (1n << 64n) - 1n }), fc.uint8Array({ maxLength: 64 }))
      .map(([op, b]) => ({ kind: 'unknown op', bytes: Buffer.concat([new WireWriter().u64(op).take(), b]) })),
    fc.tuple(fc.constantFrom(...Object.values(Op)), bigLen).map(([op, n]) => ({
      kind: 'absurd length',
      bytes: new WireWriter().u64(op).u64(n).take(),
    })),
    fc.tuple(validArb, fc.nat()).map(([v, cut]) => ({ kind: 'truncated request', bytes: v.subarray(0, cut % v.length) })),
    fc.tuple(validArb, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([v, at, x]) => {
      const b = Buffer.from(v);
      b[at % b.length]! ^= x;
      return { kind: 'mutated request', bytes: b };
    }),
    fc.tuple(validArb, fc.nat(), bigLen).map(([v, at, n]) => {
      // an absurd u64 dropped at an 8-byte boundary inside a valid request
      const b = Buffer.from(v);
      const off = (at % Math.max(1, Math.floor(b.length / 8))) * 8;
      if (off + 8 <= b.length) b.writeBigUInt64LE(n, off);
      return { kind: 'absurd field', bytes: b };
    }),
    fc.tuple(fc.constantFrom(Op.AddToStoreNar, Op.AddMultipleToStore, Op.AddToStore), bigLen).map(([op, n]) => {
      const head =
        op === Op.AddMultipleToStore
          ? new WireWriter().u64(op).bool(false).bool(false)
          : op === Op.AddToStore
            ? new WireWriter().u64(op).string('n').string('fixed:r:sha256').strings([]).bool(false)
            : new WireWriter().u64(op).string(P).string('').string('0'.repeat(64)).strings([]).u64(0).u64(0).bool(false).strings([]).string('').bool(false).bool(false);
      return { kind: 'absurd frame', bytes: Buffer.concat([head.take(), new WireWriter().u64(n).take(), Buffer.alloc(100)]) };
    }),
    fc.tuple(validArb, validArb, fc.uint8Array({ maxLength: 40 })).map(([a, b, junk]) => ({
      kind: 'valid then junk',
      bytes: Buffer.concat([a, b, junk]),
    })),
  );
}

test(`worker protocol fuzz: ${CASES} malformed connections (seed ${SEED})`, async (t) => {
  const s = await startServer(t, { maxConnections: 8, maxQueuedConnections: 64 });
  const good = await s.connect();
  const goodPath = await good.addTextToStore('good', 'still here');
  const cases = fc.sample(caseArb(validRequests()), { numRuns: CASES, seed: SEED });
  const kinds = new Map<string, number>();

  global.gc?.();
  const before = process.memoryUsage();
  let maxRss = before.rss;
  let unknownOpErrors = 0;

  const runOne = async (c: Case, i: number) => {
    kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
    const { sock, received, closed } = await rawConnection(s.socketPath);
    sock.end(Buffer.concat([handshakeBytes(), c.bytes]));
    const timeout = new Promise<never>((_, reject) => {
      const tm = setTimeout(() => reject(new Error(`case ${i} (${c.kind}) did not end: ${c.bytes.toString('hex').slice(0, 200)}`)), 10_000);
      closed.finally(() => clearTimeout(tm));
    });
    await Promise.race([closed, timeout]);
    const r = received();
    // the server always completes the greeting first
    assert.ok(r.length >= 24, `case ${i}: no greeting`);
    assert.equal(r.readBigUInt64LE(0), BigInt(WORKER_MAGIC_2));
    assert.equal(r.readBigUInt64LE(8), BigInt(PROTOCOL_VERSION));
    if (c.kind === 'unknown op') {
      // ... the greeting's nix version and STDERR_LAST, then the op's error frame
      const tail = r.subarray(r.length - 200 < 0 ? 0 : r.length - 200).toString('latin1');
      assert.match(tail, /invalid operation \d+/, `case ${i}`);
      unknownOpErrors++;
    }
  };

  const queue = cases.map((c, i) => [c, i] as const);
  const workers = Array.from({ length: 8 }, async () => {
    for (;;) {
      const next = queue.shift();
      if (!next) return;
      await runOne(next[0], next[1]);
      if (next[1] % 250 === 0) {
        // the well-behaved client is unaffected
        assert.equal(await good.isValidPath(goodPath), true);
        maxRss = Math.max(maxRss, process.memoryUsage().rss);
      }
    }
  });
  await Promise.all(workers);

  await waitFor(() => s.server.stats.active === 1 && s.server.stats.queued === 0, 'fuzz connections to end');
  assert.equal(await good.isValidPath(goodPath), true);
  global.gc?.();
  const after = process.memoryUsage();
  maxRss = Math.max(maxRss, after.rss);
  const growth = (maxRss - before.rss) / 2 ** 20;
  t.diagnostic(`cases by kind: ${JSON.stringify(Object.fromEntries(kinds))}`);
  t.diagnostic(`rss growth peak ${growth.toFixed(1)} MiB; heap ${(before.heapUsed / 2 ** 20).toFixed(1)} -> ${(after.heapUsed / 2 ** 20).toFixed(1)} MiB; connection errors ${s.errorCount()}`);
  assert.ok(growth < 200, `memory grew by ${growth.toFixed(1)} MiB`);
  assert.ok(unknownOpErrors > 0 || CASES < 100);
  // every malformed connection is reported as an error, none as a crash of the server
  assert.ok(s.errorCount() > CASES / 4, `only ${s.errorCount()} connection errors for ${CASES} cases`);
  void Stderr;
});
