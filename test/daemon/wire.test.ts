import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BufferSource,
  encodeFrame,
  FRAME_END,
  FramedSource,
  parseDerivedPath,
  formatDerivedPath,
  readBasicDerivation,
  readBuildResult,
  readError,
  readPathInfo,
  readStderrFrame,
  realisationFromJson,
  realisationToJson,
  WireBadPadding,
  WireBadValue,
  WireLimitExceeded,
  WireTruncated,
  WireUnknownFrame,
  WireWriter,
  writeBasicDerivation,
  writeBuildResult,
  writeError,
  writePathInfo,
  writeStderrFrame,
  type StderrFrame,
} from '../../src/daemon/wire.js';
import { PROTOCOL_MINOR, Stderr } from '../../src/daemon/protocol.js';
import { hashBytes } from '../../src/format/hash.js';
import type { BasicDerivation, BuildResult, PathInfo } from '../../src/daemon/store-api.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const u64hex = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b.toString('hex');
};
const strhex = (s: string) => {
  const b = Buffer.from(s);
  return u64hex(b.length) + b.toString('hex') + '00'.repeat((8 - (b.length % 8)) % 8);
};
const src = (b: Uint8Array, limits = {}) => new BufferSource(b, limits);

const STORE = '/nix/store';
const storePath = fc
  .tuple(fc.stringMatching(/^[0-9a-df-np-sv-z]{32}$/), fc.stringMatching(/^[a-zA-Z0-9+._?=-]{1,40}$/).filter((n) => !n.startsWith('.')))
  .map(([h, n]) => `${STORE}/${h}-${n}`);
function rec<T>(m: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(m, { noNullPrototype: true }) as unknown as fc.Arbitrary<T>;
}
const text = fc.string({ unit: 'grapheme', maxLength: 50 });

describe('wire: exact bytes', () => {
  test('u64 is 8 bytes little-endian; booleans are u64 0/1', () => {
    assert.equal(hex(new WireWriter().u64(0x0102030405060708n).take()), '0807060504030201');
    assert.equal(hex(new WireWriter().bool(true).bool(false).take()), '0100000000000000' + '0000000000000000');
    assert.equal(hex(new WireWriter().u64(0xffffffffffffffffn).take()), 'ffffffffffffffff');
  });

  test('strings are length-prefixed and zero-padded to 8 bytes', () => {
    assert.equal(hex(new WireWriter().string('').take()), '0000000000000000');
    assert.equal(hex(new WireWriter().string('abc').take()), '0300000000000000' + '6162630000000000');
    assert.equal(hex(new WireWriter().string('12345678').take()), '0800000000000000' + '3132333435363738');
    assert.equal(hex(new WireWriter().strings(['a', 'bc']).take()), u64hex(2) + strhex('a') + strhex('bc'));
  });

  test('the worker magic numbers and stderr tags are the ones Nix sends', () => {
    assert.equal(hex(new WireWriter().u64(0x6e697863).take()), '6378696e00000000'); // "cxin"
    assert.equal(hex(new WireWriter().u64(Stderr.Last).take()), '73746c6100000000'); // "stla"
    const w = new WireWriter();
    writeStderrFrame(w, { type: 'last' }, PROTOCOL_MINOR);
    assert.equal(hex(w.take()), '73746c6100000000');
  });

  test('STDERR_NEXT and STDERR_ERROR frames (1.34 structured error, no exit status)', () => {
    const w = new WireWriter();
    writeStderrFrame(w, { type: 'next', text: 'hi\n' }, 34);
    assert.equal(hex(w.take()), u64hex(Stderr.Next) + strhex('hi\n'));
    writeStderrFrame(w, { type: 'error', error: { message: 'boom', level: 0, traces: ['t1'] } }, 34);
    assert.equal(
      hex(w.take()),
      u64hex(Stderr.Error) + strhex('Error') + u64hex(0) + strhex('Error') + strhex('boom') + u64hex(0) + u64hex(1) + u64hex(0) + strhex('t1'),
    );
    // before 1.26: message and exit status
    writeStderrFrame(w, { type: 'error', error: { message: 'boom', level: 0, status: 100, traces: [] } }, 25);
    assert.equal(hex(w.take()), u64hex(Stderr.Error) + strhex('boom') + u64hex(100));
  });

  test('activity frames', () => {
    const w = new WireWriter();
    writeStderrFrame(w, { type: 'startActivity', id: 7n, level: 3, activityType: 105, text: 'b', fields: ['x', 5], parent: 0n }, 34);
    assert.equal(
      hex(w.take()),
      u64hex(Stderr.StartActivity) + u64hex(7) + u64hex(3) + u64hex(105) + strhex('b') + u64hex(2) + u64hex(1) + strhex('x') + u64hex(0) + u64hex(5) + u64hex(0),
    );
    writeStderrFrame(w, { type: 'result', id: 7n, resultType: 101, fields: ['line'] }, 34);
    assert.equal(hex(w.take()), u64hex(Stderr.Result) + u64hex(7) + u64hex(101) + u64hex(1) + u64hex(1) + strhex('line'));
    writeStderrFrame(w, { type: 'stopActivity', id: 7n }, 34);
    assert.equal(hex(w.take()), u64hex(Stderr.StopActivity) + u64hex(7));
  });

  test('framed data: u64 length + raw bytes, no padding, u64 0 at the end', () => {
    assert.equal(hex(encodeFrame(Buffer.from('abc'))), u64hex(3) + '616263');
    assert.equal(hex(FRAME_END), u64hex(0));
  });

  test('path info as QueryPathInfo sends it (no path, base16 NAR hash, ca last)', () => {
    const narHash = hashBytes('sha256', 'x');
    const info: PathInfo = {
      path: `${STORE}/00000000000000000000000000000000-a`,
      deriver: null,
      narHash,
      references: [`${STORE}/11111111111111111111111111111111-b`],
      registrationTime: 5,
      narSize: 120,
      ultimate: true,
      sigs: ['k:s'],
      ca: 'fixed:r:sha256:abc',
    };
    const w = new WireWriter();
    writePathInfo(w, info, 34, false);
    assert.equal(
      hex(w.take()),
      strhex('') + strhex(hex(narHash.digest)) + u64hex(1) + strhex(info.references[0]!) + u64hex(5) + u64hex(120) + u64hex(1) + u64hex(1) + strhex('k:s') + strhex('fixed:r:sha256:abc'),
    );
  });

  test('realisations are JSON with sorted keys and base-name paths, as nlohmann prints them', () => {
    const j = realisationToJson(
      { id: 'sha256:ab!out', outPath: `${STORE}/00000000000000000000000000000000-a`, signatures: [], dependentRealisations: {} },
      STORE,
    );
    assert.equal(j, '{"dependentRealisations":{},"id":"sha256:ab!out","outPath":"00000000000000000000000000000000-a","signatures":[]}');
    assert.deepEqual(realisationFromJson(j, STORE).outPath, `${STORE}/00000000000000000000000000000000-a`);
  });

  test('derived paths: opaque, outputs, all outputs', () => {
    assert.deepEqual(parseDerivedPath('/nix/store/x-a'), { kind: 'opaque', path: '/nix/store/x-a' });
    assert.deepEqual(parseDerivedPath('/nix/store/x-a.drv!out,dev'), { kind: 'built', drvPath: '/nix/store/x-a.drv', outputs: ['dev', 'out'] });
    assert.equal(formatDerivedPath({ kind: 'built', drvPath: '/nix/store/x-a.drv', outputs: [] }), '/nix/store/x-a.drv!*');
  });
});

describe('wire: round trips', () => {
  test('integers, strings, string lists', async () => {
    await fc.assert(
      fc.asyncProperty(fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }), fc.uint8Array({ maxLength: 100 }), fc.array(text, { maxLength: 10 }), async (n, b, list) => {
        const w = new WireWriter(1).u64(n).bytes(b).strings(list);
        const s = src(w.take());
        assert.equal(await s.u64(), n);
        assert.deepEqual(new Uint8Array(await s.bytes()), b);
        assert.deepEqual(await s.strings(), list);
        assert.equal(s.remaining, 0);
      }),
    );
  });

  test('path info (with and without the path, old and new formats)', async () => {
    const info = rec({
      path: storePath,
      deriver: fc.option(storePath, { nil: null }),
      narHash: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((d) => ({ algo: 'sha256' as const, digest: Buffer.from(d) })),
      references: fc.array(storePath, { maxLength: 5 }),
      registrationTime: fc.nat(),
      narSize: fc.nat(),
      ultimate: fc.boolean(),
      sigs: fc.array(text, { maxLength: 3 }),
      ca: fc.option(fc.constantFrom('fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', 'text:sha256:x'), { nil: null }),
    });
    await fc.assert(
      fc.asyncProperty(info, fc.boolean(), async (i, withPath) => {
        const w = new WireWriter();
        writePathInfo(w, i, 34, withPath);
        const back = await readPathInfo(src(w.take()), 34, withPath ? undefined : i.path);
        assert.deepEqual({ ...back, narHash: { algo: back.narHash.algo, digest: Buffer.from(back.narHash.digest) } }, i);
        // 1.15 and older have no ultimate/sigs/ca
        writePathInfo(w, i, 15, true);
        const old = await readPathInfo(src(w.take()), 15);
        assert.equal(old.ultimate, false);
        assert.deepEqual(old.sigs, []);
      }),
    );
  });

  test('stderr frames', async () => {
    const field = fc.oneof(fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }), text);
    const frame: fc.Arbitrary<StderrFrame> = fc.oneof(
      text.map((t) => ({ type: 'next' as const, text: t })),
      fc.nat().map((n) => ({ type: 'read' as const, length: n })),
      fc.uint8Array({ maxLength: 40 }).map((d) => ({ type: 'write' as const, data: Buffer.from(d) })),
      fc.constant({ type: 'last' as const }),
      rec({ message: text, level: fc.nat({ max: 7 }), traces: fc.array(text, { maxLength: 3 }) }).map((e) => ({ type: 'error' as const, error: e })),
      fc
        .record({
          id: fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }),
          level: fc.nat({ max: 7 }),
          activityType: fc.nat({ max: 200 }),
          text,
          fields: fc.array(field, { maxLength: 4 }),
          parent: fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }),
        })
        .map((a) => ({ type: 'startActivity' as const, ...a })),
      fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }).map((id) => ({ type: 'stopActivity' as const, id })),
      fc
        .record({ id: fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }), resultType: fc.nat({ max: 200 }), fields: fc.array(field, { maxLength: 4 }) })
        .map((r) => ({ type: 'result' as const, ...r })),
    );
    await fc.assert(
      fc.asyncProperty(frame, async (f) => {
        const w = new WireWriter();
        writeStderrFrame(w, f, 34);
        assert.deepEqual(await readStderrFrame(src(w.take()), 34), f);
      }),
    );
  });

  test('build results and basic derivations', async () => {
    const real = rec({
      id: fc.stringMatching(/^sha256:[0-9a-f]{64}![a-z]{1,5}$/),
      outPath: storePath,
      signatures: fc.array(text, { maxLength: 2 }).map((s) => [...new Set(s)].sort()),
      dependentRealisations: fc.constant({}),
    });
    const result: fc.Arbitrary<BuildResult> = rec({
      path: fc.oneof(
        storePath.map((p) => ({ kind: 'opaque' as const, path: p })),
        fc.tuple(storePath, fc.uniqueArray(fc.stringMatching(/^[a-z]{1,5}$/), { maxLength: 3 })).map(([d, o]) => ({
          kind: 'built' as const,
          drvPath: d,
          outputs: [...o].sort(),
        })),
      ),
      status: fc.nat({ max: 14 }),
      errorMsg: text,
      timesBuilt: fc.nat({ max: 5 }),
      isNonDeterministic: fc.boolean(),
      startTime: fc.nat(),
      stopTime: fc.nat(),
      builtOutputs: fc.uniqueArray(real, { maxLength: 3, selector: (r) => r.id }).map((rs) => rs.sort((a, b) => (a.id < b.id ? -1 : 1))),
    });
    await fc.assert(
      fc.asyncProperty(result, async (r) => {
        const w = new WireWriter();
        writeBuildResult(w, r, STORE);
        assert.deepEqual(await readBuildResult(src(w.take()), STORE), r);
      }),
    );
    const drv: fc.Arbitrary<BasicDerivation> = rec({
      outputs: fc.array(rec({ name: text, path: text, hashAlgo: text, hash: text }), { maxLength: 3 }),
      inputSrcs: fc.array(storePath, { maxLength: 3 }),
      platform: text,
      builder: text,
      args: fc.array(text, { maxLength: 3 }),
      env: fc.array(fc.tuple(text, text), { maxLength: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(drv, async (d) => {
        const w = new WireWriter();
        writeBasicDerivation(w, d);
        assert.deepEqual(await readBasicDerivation(src(w.take())), d);
      }),
    );
  });

  test('framed data read back whatever the frame sizes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 50 }), { maxLength: 8 }), fc.integer({ min: 1, max: 64 }), async (frames, piece) => {
        const w = new WireWriter();
        for (const f of frames) w.raw(encodeFrame(f));
        w.raw(FRAME_END).string('after');
        const s = src(w.take());
        const framed = new FramedSource(s);
        const got: Buffer[] = [];
        for await (const c of framed.chunks(piece)) got.push(c);
        assert.deepEqual(Buffer.concat(got), Buffer.concat(frames.map((f) => Buffer.from(f))));
        assert.equal(await s.string(), 'after');
      }),
    );
  });

  test('a framed source is a WireSource across frame boundaries; finish skips the rest', async () => {
    const inner = new WireWriter().u64(2).string('hello').string('world').take();
    const w = new WireWriter();
    for (let i = 0; i < inner.length; i += 3) w.raw(encodeFrame(inner.subarray(i, i + 3)));
    w.raw(FRAME_END).u64(99);
    const s = src(w.take());
    const f = new FramedSource(s);
    assert.equal(await f.num(), 2);
    assert.equal(await f.string(), 'hello');
    await f.finish();
    assert.equal(f.finished, true);
    assert.equal(await s.u64(), 99n);
  });
});

describe('wire: malformed input fails fast', () => {
  test('an absurd string length is refused before anything is allocated', async () => {
    const s = src(new WireWriter().u64(0xfffffffffffffn).take());
    await assert.rejects(s.bytes('name'), (e: unknown) => e instanceof WireLimitExceeded && /name: length 4503599627370495 exceeds the limit of 33554432 bytes/.test((e as Error).message));
    assert.ok(s.poisoned instanceof WireLimitExceeded);
  });

  test('an absurd list length is refused', async () => {
    const s = src(new WireWriter().u64(1n << 40n).take());
    await assert.rejects(s.strings('references'), /references: 1099511627776 elements exceed the limit of 1048576/);
  });

  test('the per-request byte budget bounds many small fields', async () => {
    const w = new WireWriter().u64(100);
    for (let i = 0; i < 100; i++) w.string('x'.repeat(100));
    const s = src(w.take(), { maxRequestBytes: 2000 });
    await assert.rejects(s.strings('paths'), WireLimitExceeded);
  });

  test('non-zero padding, bad booleans, too-large ints, unknown frame tags', async () => {
    await assert.rejects(src(Buffer.from('0100000000000000' + '6101000000000000', 'hex')).string('s'), WireBadPadding);
    await assert.rejects(src(new WireWriter().u64(2).take()).bool('flag'), /flag: 2 is not a boolean/);
    await assert.rejects(src(new WireWriter().u64(1n << 33n).take()).int('op'), WireBadValue);
    await assert.rejects(readStderrFrame(src(new WireWriter().u64(0x1234).take()), 34), WireUnknownFrame);
  });

  test('truncation anywhere is WireTruncated naming what was being read', async () => {
    const full = new WireWriter().string('hello world').take();
    for (let cut = 0; cut < full.length; cut++) {
      await assert.rejects(src(full.subarray(0, cut)).string('greeting'), (e: unknown) => e instanceof WireTruncated && /greeting/.test((e as Error).message));
    }
  });

  test('error frames: structured (>= 1.26) and legacy', async () => {
    const w = new WireWriter();
    writeError(w, { message: 'm', level: 1, traces: ['a', 'b'] }, 34);
    assert.deepEqual(await readError(src(w.take()), 34), { message: 'm', level: 1, traces: ['a', 'b'] });
    writeError(w, { message: 'm', level: 0, status: 101, traces: [] }, 25);
    assert.deepEqual(await readError(src(w.take()), 25), { message: 'm', level: 0, status: 101, traces: [] });
  });
});
