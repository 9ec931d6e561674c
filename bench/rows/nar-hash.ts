// (6) NAR hash of a big file against the hardware limit (`openssl speed
// -bytes 65536 sha256`: the same SHA-256 on 64 KiB blocks already in
// memory) and `nix-hash --type sha256`, alternately. drvbox is measured
// twice: hashPath itself, timed inside a process (bench/nar-hash.js
// --child), which is what compares with openssl's in-memory figure, and
// `drvbox hash path` as a whole process (Node's start-up included), which
// compares with nix-hash. And issue 2's tree of 10,000 small files against
// nix-hash. Hashes are compared with nix-hash's.
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshDir, missingPeer, removeTree, type BenchContext } from '../lib/context.js';
import { cleanEnv, drvboxEntry } from '../lib/env.js';
import { run } from '../lib/proc.js';
import { check, side, type RowResult } from '../lib/report.js';
import { alternate, median, summarize } from '../lib/stats.js';

const NAR_HASH_CHILD = join(fileURLToPath(import.meta.url), '..', '..', 'nar-hash.js');

function makeBigFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  const block = Buffer.allocUnsafe(4 << 20);
  try {
    for (let done = 0; done < bytes; done += block.length) {
      randomFillSync(block);
      writeSync(fd, block, 0, Math.min(block.length, bytes - done));
    }
    // On disk before any timing: the kernel's write-back of 512 MiB would
    // otherwise compete with the first rounds for the 2 cores.
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function makeSmallTree(root: string, files: number): void {
  for (let d = 0; d * 100 < files; d++) {
    const dir = join(root, `d${String(d).padStart(3, '0')}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 100 && d * 100 + f < files; f++) writeFileSync(join(dir, `file-${f}.txt`), `contents of ${d}/${f}\n`.repeat((f * 7) % 23));
  }
}

/** sha256 bytes/s of `openssl speed` on 64 KiB blocks. */
function opensslSpeed(seconds: number): number {
  const r = spawnSync('openssl', ['speed', '-bytes', '65536', '-seconds', String(seconds), 'sha256'], { encoding: 'utf8', env: cleanEnv() });
  const m = /^sha256\s+([\d.]+)k/m.exec(r.stdout);
  if (!m) throw new Error(`cannot parse openssl speed output: ${r.stdout}${r.stderr}`);
  return Number(m[1]) * 1000;
}

export async function narHashRows(ctx: BenchContext, want: (id: string) => boolean): Promise<RowResult[]> {
  const env = cleanEnv();
  const entry = drvboxEntry();
  const dir = freshDir(ctx, 'nar-hash');
  const rows: RowResult[] = [];
  const haveNix = ctx.peers['nix-hash'] !== null;
  const haveOpenssl = ctx.peers.openssl !== null;
  const drvboxHash = (p: string) => run(process.execPath, [entry, 'hash', 'path', '--type', 'sha256', '--base32', p], { env, usage: true });
  /** hashPath timed inside its process: { seconds, bytes, hash, maxRssMB }. */
  const inProcess = (p: string) =>
    JSON.parse(run(process.execPath, [NAR_HASH_CHILD, '--child', 'hash', p], { env }).stdout.toString()) as { seconds: number; bytes: number; hash: string; maxRssMB: number };
  const nixHash = (p: string) => run('nix-hash', ['--type', 'sha256', '--base32', p], { env, usage: true });
  try {
    if (want('narhash')) {
      const mb = ctx.quick ? 128 : 512;
      const big = join(dir, 'big');
      makeBigFile(big, mb << 20);
      const bytes = mb << 20;
      drvboxHash(big); // page cache
      const ours: number[] = [];
      const oursRss: number[] = [];
      const inproc: number[] = [];
      const ossl: number[] = [];
      const nix: number[] = [];
      let hash = '';
      const rounds = ctx.quick ? 2 : 5;
      const fns: Array<() => void> = [
        () => {
          const r = drvboxHash(big);
          hash = r.stdout.toString().trim();
          ours.push(bytes / (r.ms / 1000) / 1e6);
          oursRss.push(r.peakRssMB ?? NaN);
        },
        () => {
          const c = inProcess(big);
          if (hash && c.hash !== hash) throw new Error(`hashPath ${c.hash} != drvbox hash path ${hash}`);
          inproc.push(c.bytes / c.seconds / 1e6);
        },
      ];
      if (haveOpenssl) fns.push(() => void ossl.push(opensslSpeed(ctx.quick ? 1 : 3) / 1e6));
      if (haveNix) {
        fns.push(() => {
          const r = nixHash(big);
          if (r.stdout.toString().trim() !== hash && hash) throw new Error(`nix-hash ${r.stdout.toString().trim()} != drvbox ${hash}`);
          nix.push(bytes / (r.ms / 1000) / 1e6);
        });
      }
      await alternate(rounds, fns);
      ctx.log(
        `NAR hash ${mb} MiB: drvbox hashPath ${median(inproc).toFixed(0)} MB/s, drvbox hash path (process) ${median(ours).toFixed(0)} MB/s, openssl ${haveOpenssl ? median(ossl).toFixed(0) : '–'} MB/s, nix-hash ${haveNix ? median(nix).toFixed(0) : '–'} MB/s`,
      );
      const sides = [
        side('drvbox hashPath (in process)', 'MB/s', inproc, summarize(inproc)),
        side('drvbox hash path (whole process)', 'MB/s', ours, summarize(ours), Math.max(...oursRss)),
      ];
      if (haveOpenssl) sides.push(side('openssl speed -bytes 65536 sha256', 'MB/s', ossl, summarize(ossl)));
      if (haveNix) sides.push(side('nix-hash --type sha256 (whole process)', 'MB/s', nix, summarize(nix)));
      const frac = haveOpenssl ? median(inproc) / median(ossl) : null;
      rows.push({
        id: 'narhash',
        n: '6',
        title: `NAR hash of a ${mb} MiB file`,
        sides,
        checks: [
          check("hashPath: share of openssl's SHA-256 throughput", frac === null ? null : frac * 100, '%', 90, '>='),
          check('hashPath time vs openssl (limit)', frac === null ? null : 1 / frac, '×', Math.round((1 / 0.9) * 100) / 100),
          check('whole process: time vs nix-hash', haveNix ? median(nix) / median(ours) : null, '×', 1),
        ],
        missing: [...(haveOpenssl ? [] : [missingPeer('openssl')]), ...(haveNix ? [] : [missingPeer('nix')])],
        notes: [`whole process: drvbox hash path at ${frac === null ? '–' : ((median(ours) / median(ossl)) * 100).toFixed(0) + '%'} of openssl (Node's start-up included)`],
      });
      removeTree(big);
    }
    if (want('smallfiles')) {
      const files = ctx.quick ? 2000 : 10000;
      const tree = join(dir, 'tree');
      makeSmallTree(tree, files);
      // As for the big file: the tree (and the big file's removal) reach the
      // disk before any timing, not in kernel threads competing with it.
      spawnSync('sync', [], { stdio: 'ignore' });
      drvboxHash(tree);
      if (haveNix) nixHash(tree);
      const ours: number[] = [];
      const inproc: number[] = [];
      const nix: number[] = [];
      let hash = '';
      const fns: Array<() => void> = [
        () => {
          const r = drvboxHash(tree);
          hash = r.stdout.toString().trim();
          ours.push(r.ms);
        },
        () => void inproc.push(inProcess(tree).seconds * 1000),
      ];
      if (haveNix) {
        fns.push(() => {
          const r = nixHash(tree);
          if (hash && r.stdout.toString().trim() !== hash) throw new Error(`tree: nix-hash ${r.stdout.toString().trim()} != drvbox ${hash}`);
          nix.push(r.ms);
        });
      }
      await alternate(ctx.quick ? 3 : 7, fns);
      ctx.log(`NAR hash of ${files} small files: drvbox ${median(ours).toFixed(0)} ms, nix-hash ${haveNix ? median(nix).toFixed(0) : '–'} ms`);
      const sides = [side('drvbox hash path', 'ms', ours, summarize(ours)), side('… of which hashPath (in process)', 'ms', inproc, summarize(inproc))];
      if (haveNix) sides.push(side('nix-hash --type sha256', 'ms', nix, summarize(nix)));
      rows.push({
        id: 'smallfiles',
        n: 'i2',
        title: `NAR hash of a tree of ${files} small files (whole processes)`,
        sides,
        checks: [check('time vs nix-hash', haveNix ? median(ours) / median(nix) : null, '×', 1)],
        missing: haveNix ? [] : [missingPeer('nix')],
        notes: [],
      });
    }
  } finally {
    removeTree(dir);
  }
  return rows;
}
