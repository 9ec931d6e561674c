// In-process hot paths under tinybench: the codecs every build runs through
// (nix32, store paths, ATerm, NAR, reference scan and rewrite) and the
// SQLite registration of a build's outputs.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { parseDerivation, printDerivation, printDerivationBytes } from '../../src/format/aterm.js';
import { hashBytes } from '../../src/format/hash.js';
import type { NarEvent } from '../../src/format/nar.js';
import { NarParser } from '../../src/format/nar-reader.js';
import { NarWriter } from '../../src/format/nar-writer.js';
import { NIX32_ALPHABET, nix32Decode, nix32Encode } from '../../src/format/nix32.js';
import { RefScanner } from '../../src/format/refscan.js';
import { HashRewriter } from '../../src/format/rewrite.js';
import { makeOutputPath, makeTextPath } from '../../src/format/store-path.js';
import { chrootLocation } from '../../src/config/store-location.js';
import { LocalStore, storeSettingsFrom } from '../../src/store/local-store.js';
import { freshDir, removeTree, type BenchContext } from '../lib/context.js';
import { wideDag, STORE_DIR } from '../lib/derivations.js';
import type { MicroResult } from '../lib/report.js';

function hashParts(n: number): string[] {
  return Array.from({ length: n }, () => {
    let s = '';
    for (const x of randomBytes(32)) s += NIX32_ALPHABET[x & 31];
    return s;
  });
}

/** 1 MiB of text-like data: words and store paths, a few of them candidates. */
function textChunk(parts: string[]): Buffer {
  const lines: string[] = [];
  let n = 0;
  for (let i = 0; n < 1 << 20; i++) {
    const l = i % 50 === 0 ? `${STORE_DIR}/${parts[i % parts.length]}-dep/lib ${i}` : `some words of text, line ${i} /usr/lib/x${i}`;
    lines.push(l);
    n += l.length + 1;
  }
  return Buffer.from(lines.join('\n')).subarray(0, 1 << 20);
}

export async function microRows(ctx: BenchContext): Promise<MicroResult[]> {
  const time = ctx.quick ? 200 : 1000;
  const bench = new Bench({ time, warmupTime: ctx.quick ? 50 : 200 });
  const bytes = new Map<string, number>();

  const digest = hashBytes('sha256', 'drvbox').digest;
  const enc = nix32Encode(digest);
  bench.add('nix32 encode (32 bytes)', () => void nix32Encode(digest));
  bench.add('nix32 decode (52 chars)', () => void nix32Decode(enc, 32));
  const h = hashBytes('sha256', 'modulo');
  bench.add('makeOutputPath', () => void makeOutputPath(STORE_DIR, 'out', h, 'hello-2.12'));
  bench.add('makeTextPath with 3 references', () =>
    void makeTextPath(STORE_DIR, h, 'x.drv', [`${STORE_DIR}/${enc.slice(0, 32)}-a`, `${STORE_DIR}/${enc.slice(1, 33)}-b`, `${STORE_DIR}/${enc.slice(2, 34)}-c`]),
  );

  const { set, target } = wideDag(100, 'micro');
  const rootText = printDerivationBytes(set.derivation(target)!);
  const rootDrv = parseDerivation(rootText, 'micro-root');
  bench.add(`ATerm parse (.drv with 100 inputs, ${(rootText.length / 1024).toFixed(1)} KiB)`, () => void parseDerivation(rootText, 'micro-root'));
  bench.add('ATerm print (the same)', () => void printDerivation(rootDrv));
  bytes.set(`ATerm parse (.drv with 100 inputs, ${(rootText.length / 1024).toFixed(1)} KiB)`, rootText.length);

  const events: NarEvent[] = [{ type: 'directory' }];
  const payload = Buffer.from('a small file\n');
  for (let i = 0; i < 1000; i++) {
    events.push(
      { type: 'entry', name: `file-${String(i).padStart(4, '0')}` },
      { type: 'regular', executable: i % 10 === 0, size: payload.length },
      { type: 'contents', data: payload },
      { type: 'regularEnd' },
      { type: 'entryEnd' },
    );
  }
  events.push({ type: 'directoryEnd' });
  const nar = NarWriter.encodeAll(events);
  bench.add('NAR write: 1,000-file directory', () => void NarWriter.encodeAll(events));
  bench.add('NAR read: the same NAR, 4 KiB chunks', () => {
    const p = new NarParser({ onEvent: () => {} });
    for (let i = 0; i < nar.length; i += 4096) p.push(nar.subarray(i, i + 4096));
  });
  bytes.set('NAR read: the same NAR, 4 KiB chunks', nar.length);
  const big = randomBytes(1 << 20);
  const bigNar = NarWriter.encodeAll([{ type: 'regular', executable: false, size: big.length }, { type: 'contents', data: big }, { type: 'regularEnd' }]);
  bench.add('NAR hash: sha256 of a 1 MiB file NAR', () => void hashBytes('sha256', bigNar));
  bytes.set('NAR hash: sha256 of a 1 MiB file NAR', bigNar.length);

  const parts = hashParts(1000);
  const text = textChunk(parts);
  bench.add('reference scan: 1 MiB text, 1,000 candidates', () => {
    const s = new RefScanner(parts);
    s.update(text);
  });
  bytes.set('reference scan: 1 MiB text, 1,000 candidates', text.length);
  const rewrites = new Map(parts.slice(0, 10).map((p, i) => [p, parts[999 - i]!]));
  bench.add('hash rewrite: 1 MiB text, 10 rewrites', () => {
    const r = new HashRewriter(rewrites);
    r.update(text);
    r.flush();
  });
  bytes.set('hash rewrite: 1 MiB text, 10 rewrites', text.length);

  const dir = freshDir(ctx, 'micro-db');
  const store = await LocalStore.open(
    chrootLocation(join(dir, 'root'), STORE_DIR, 'bench') as Parameters<typeof LocalStore.open>[0],
    storeSettingsFrom(null),
  );
  let k = 0;
  bench.add('SQLite: register 1 output (one transaction)', () => {
    const p = `${STORE_DIR}/${nix32Encode(hashBytes('sha1', String(k++)).digest).slice(0, 32)}-out`;
    store.registerValidPaths([{ path: p, narHash: h, narSize: 120, references: [] }]);
  });
  bench.add('SQLite: isValidPath', () => void store.isValidPath(`${STORE_DIR}/${enc.slice(0, 32)}-nope`));
  try {
    await bench.run();
  } finally {
    store.close();
    removeTree(dir);
  }
  const res: MicroResult[] = [];
  for (const t of bench.tasks) {
    const r = t.result as unknown as { state: string; latency?: { mean: number; p50: number; samplesCount?: number }; throughput?: { mean: number }; error?: Error };
    if (r.state !== 'completed' || !r.latency) throw new Error(`micro ${t.name}: ${r.state} ${r.error?.message ?? ''}`);
    const m: MicroResult = { name: t.name, meanMs: r.latency.mean, p50Ms: r.latency.p50, opsPerSecond: r.throughput?.mean ?? 1000 / r.latency.mean, samples: r.latency.samplesCount ?? 0 };
    const b = bytes.get(t.name);
    if (b) m.bytes = b;
    res.push(m);
  }
  ctx.log(`micro: ${res.length} tasks`);
  return res;
}
