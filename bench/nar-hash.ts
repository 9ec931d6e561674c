// NAR hashing and dumping speed and memory, side by side with the limits:
//   - a big file: hashPath vs `openssl speed -bytes 65536 sha256` (the
//     hardware limit of the hash) and `nix-hash --type sha256`, run
//     alternately in one run; dumpPath throughput;
//   - a tree of 10,000 small files: hashPath vs `nix-hash --type sha256`,
//     both as whole processes;
//   - peak RSS of each of our runs (a child process per run);
//   - tinybench micro numbers for the in-process hot paths.
// Test data goes under /tmp and is removed at the end.
//
//   node dist/bench/nar-hash.js [--size-mb 512] [--files 10000] [--rounds 3] [--json FILE]
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg, cpus, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import type { NarEvent } from '../src/format/nar.js';
import { NarParser } from '../src/format/nar-reader.js';
import { NarWriter } from '../src/format/nar-writer.js';
import { nix32Encode } from '../src/format/nix32.js';
import { dumpPath, hashPath, restoreNar } from '../src/store/nar-fs.js';

const SELF = fileURLToPath(import.meta.url);

interface ChildResult {
  seconds: number;
  bytes: number;
  hash?: string;
  maxRssMB: number;
}

function peakRssMB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux: fall through
  }
  return process.resourceUsage().maxRSS / 1024;
}

async function child(mode: string, path: string, extra?: string): Promise<void> {
  const t0 = performance.now();
  let bytes = 0;
  let hash: string | undefined;
  if (mode === 'hash') {
    const r = await hashPath(path);
    bytes = r.narSize;
    hash = nix32Encode(r.hash.digest);
  } else if (mode === 'dump') {
    for await (const c of dumpPath(path)) bytes += c.length;
  } else if (mode === 'restore') {
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for await (const c of dumpPath(path)) {
        bytes += c.length;
        yield c;
      }
    }
    await restoreNar(extra!, chunks());
  } else throw new Error(`unknown child mode ${mode}`);
  const out: ChildResult = { seconds: (performance.now() - t0) / 1000, bytes, maxRssMB: peakRssMB() };
  if (hash) out.hash = hash;
  process.stdout.write(JSON.stringify(out) + '\n');
}

function runChild(mode: string, path: string, extra?: string): ChildResult & { wall: number } {
  const t0 = performance.now();
  const args = [SELF, '--child', mode, path];
  if (extra) args.push(extra);
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`child ${mode} failed: ${r.stderr}`);
  return { ...(JSON.parse(r.stdout) as ChildResult), wall };
}

function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function timed(cmd: string, args: string[]): { wall: number; stdout: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return { wall, stdout: r.stdout };
}

/** sha256 throughput of `openssl speed` on 64 KiB blocks, bytes/s. */
function opensslSpeed(seconds: number): number {
  const r = spawnSync('openssl', ['speed', '-bytes', '65536', '-seconds', String(seconds), 'sha256'], { encoding: 'utf8' });
  const m = /^sha256\s+([\d.]+)k/m.exec(r.stdout);
  if (!m) throw new Error(`cannot parse openssl speed output: ${r.stdout}${r.stderr}`);
  return Number(m[1]) * 1000;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};
const mbs = (bps: number): string => `${(bps / 1e6).toFixed(0)} MB/s`;
const range = (xs: number[], f: (x: number) => string): string => `${f(Math.min(...xs))} – ${f(Math.max(...xs))}`;

function makeBigFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  const block = Buffer.allocUnsafe(4 << 20);
  try {
    for (let done = 0; done < bytes; ) {
      randomFillSync(block);
      const n = Math.min(block.length, bytes - done);
      writeSync(fd, block, 0, n);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

function makeSmallTree(root: string, files: number): void {
  const perDir = 100;
  for (let d = 0; d * perDir < files; d++) {
    const dir = join(root, `d${String(d).padStart(3, '0')}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < perDir && d * perDir + f < files; f++) {
      writeFileSync(join(dir, `file-${f}.txt`), `contents of ${d}/${f}\n`.repeat((f * 7) % 23));
    }
  }
}

function argValue(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

async function main(): Promise<void> {
  const sizeMB = argValue('--size-mb', 512);
  const files = argValue('--files', 10000);
  const rounds = argValue('--rounds', 3);
  const jsonIdx = process.argv.indexOf('--json');
  const haveNix = which('nix-hash');
  const haveOpenssl = which('openssl');
  const tmp = mkdtempSync('/tmp/drvbox-bench-nar-');
  const results: Record<string, unknown> = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, kernel: release(), node: process.version, loadavgAtStart: loadavg() },
  };
  const lines: string[] = [];
  try {
    const big = join(tmp, 'big');
    console.error(`# writing a ${sizeMB} MiB file under ${tmp}`);
    makeBigFile(big, sizeMB << 20);
    const tree = join(tmp, 'tree');
    console.error(`# writing a tree of ${files} small files`);
    makeSmallTree(tree, files);
    runChild('hash', big); // warm the page cache and the JIT of the child path

    // 1. Big file: openssl | ours | nix-hash, alternately.
    const ossl: number[] = [];
    const ours: number[] = [];
    const oursRss: number[] = [];
    const nix: number[] = [];
    const pairRatios: number[] = [];
    let ourHash = '';
    for (let r = 0; r < rounds; r++) {
      const o = haveOpenssl ? opensslSpeed(3) : NaN;
      const c = runChild('hash', big);
      ourHash = c.hash!;
      const t = c.bytes / c.seconds;
      ossl.push(o);
      ours.push(t);
      oursRss.push(c.maxRssMB);
      pairRatios.push(t / o);
      if (haveNix) {
        const n = timed('nix-hash', ['--type', 'sha256', '--base32', big]);
        if (n.stdout.trim() !== ourHash) throw new Error(`hash mismatch: nix-hash ${n.stdout.trim()} vs ours ${ourHash}`);
        nix.push(c.bytes / n.wall);
      }
      console.error(`# round ${r + 1}: openssl ${mbs(o)}, hashPath ${mbs(t)} (${((t / o) * 100).toFixed(1)}%), nix-hash ${haveNix ? mbs(nix.at(-1)!) : 'missing'}`);
    }
    const dump = runChild('dump', big);
    const restore = runChild('restore', big, join(tmp, 'restored'));
    rmSync(join(tmp, 'restored'), { force: true });
    results.bigFile = { sizeMB, opensslBps: ossl, hashPathBps: ours, nixHashBps: nix, pairRatios, hashPathPeakRssMB: oursRss, dump, restore };
    lines.push(`## NAR hash of a ${sizeMB} MiB file (${rounds} alternating rounds)`, '');
    lines.push('| | median | min – max | peak RSS |', '|---|---|---|---|');
    lines.push(`| openssl speed -bytes 65536 sha256 | ${mbs(median(ossl))} | ${range(ossl, mbs)} | |`);
    lines.push(`| drvbox hashPath | ${mbs(median(ours))} | ${range(ours, mbs)} | ${Math.max(...oursRss).toFixed(0)} MB |`);
    lines.push(`| nix-hash --type sha256 | ${haveNix ? mbs(median(nix)) : 'missing'} | ${haveNix ? range(nix, mbs) : ''} | |`);
    lines.push(`| drvbox dumpPath (NAR bytes out) | ${mbs(dump.bytes / dump.seconds)} | | ${dump.maxRssMB.toFixed(0)} MB |`);
    lines.push(`| drvbox dumpPath → restoreNar | ${mbs(restore.bytes / restore.seconds)} | | ${restore.maxRssMB.toFixed(0)} MB |`);
    lines.push('');
    lines.push(
      `hashPath / openssl, per round: ${pairRatios.map((x) => (x * 100).toFixed(1) + '%').join(', ')}; median ${(median(pairRatios) * 100).toFixed(1)}%, best ${(Math.max(...pairRatios) * 100).toFixed(1)}% (target ≥ 90%)`,
      '',
    );

    // 2. Tree of small files: nix-hash | ours, as whole processes.
    const nixTree: number[] = [];
    const oursTree: number[] = [];
    const oursTreeIn: number[] = [];
    const oursTreeRss: number[] = [];
    if (haveNix) timed('nix-hash', ['--type', 'sha256', tree]);
    for (let r = 0; r < rounds + 2; r++) {
      let nixOut = '';
      if (haveNix) {
        const n = timed('nix-hash', ['--type', 'sha256', '--base32', tree]);
        nixTree.push(n.wall);
        nixOut = n.stdout.trim();
      }
      const c = runChild('hash', tree);
      if (haveNix && c.hash !== nixOut) throw new Error(`tree hash mismatch: ${nixOut} vs ${c.hash}`);
      oursTree.push(c.wall);
      oursTreeIn.push(c.seconds);
      oursTreeRss.push(c.maxRssMB);
    }
    const nodeStart: number[] = [];
    for (let r = 0; r < rounds; r++) nodeStart.push(timed(process.execPath, ['-e', '0']).wall);
    results.smallTree = { files, nixHashSeconds: nixTree, hashPathProcessSeconds: oursTree, hashPathInProcessSeconds: oursTreeIn, peakRssMB: oursTreeRss, nodeStartSeconds: nodeStart };
    const ms = (s: number): string => `${(s * 1000).toFixed(0)} ms`;
    lines.push(`## NAR hash of a tree of ${files} small files (${rounds + 2} alternating rounds, whole processes)`, '');
    lines.push('| | median | min – max |', '|---|---|---|');
    lines.push(`| nix-hash --type sha256 | ${haveNix ? ms(median(nixTree)) : 'missing'} | ${haveNix ? range(nixTree, ms) : ''} |`);
    lines.push(`| node dist/bench/nar-hash.js --child hash (whole process) | ${ms(median(oursTree))} | ${range(oursTree, ms)} |`);
    lines.push(`| … of which hashPath itself | ${ms(median(oursTreeIn))} | ${range(oursTreeIn, ms)} |`);
    lines.push(`| node -e 0 (start-up floor) | ${ms(median(nodeStart))} | ${range(nodeStart, ms)} |`);
    lines.push('');
    if (haveNix) {
      lines.push(
        `whole process / nix-hash: ${(median(oursTree) / median(nixTree)).toFixed(2)}×; hashPath alone / nix-hash: ${(median(oursTreeIn) / median(nixTree)).toFixed(2)}× (target ≤ 1); peak RSS ${Math.max(...oursTreeRss).toFixed(0)} MB`,
        '',
      );
    }

    // 3. Micro numbers.
    const dirEvents: NarEvent[] = [{ type: 'directory' }];
    const payload = Buffer.from('a small file\n');
    for (let i = 0; i < 1000; i++) {
      dirEvents.push(
        { type: 'entry', name: `file-${String(i).padStart(4, '0')}` },
        { type: 'regular', executable: i % 10 === 0, size: payload.length },
        { type: 'contents', data: payload },
        { type: 'regularEnd' },
        { type: 'entryEnd' },
      );
    }
    dirEvents.push({ type: 'directoryEnd' });
    const dirNar = NarWriter.encodeAll(dirEvents);
    const microTree = join(tree, 'd000');
    const bench = new Bench({ time: 1000 });
    bench
      .add('NarWriter: 1,000-file directory', () => {
        NarWriter.encodeAll(dirEvents);
      })
      .add(`NarParser: the same NAR (${(dirNar.length / 1024).toFixed(0)} KiB), one chunk`, () => {
        new NarParser({ onEvent: () => {} }).push(dirNar);
      })
      .add('NarParser: the same NAR in 4 KiB chunks', () => {
        const p = new NarParser({ onEvent: () => {} });
        for (let i = 0; i < dirNar.length; i += 4096) p.push(dirNar.subarray(i, i + 4096));
      })
      .add('hashPath: directory of 100 small files', async () => {
        await hashPath(microTree);
      });
    await bench.run();
    lines.push('## Micro (tinybench, in process)', '', '| task | mean | ops/s |', '|---|---|---|');
    const micro: Record<string, unknown> = {};
    for (const t of bench.tasks) {
      const res = t.result as unknown as { latency?: { mean: number }; throughput?: { mean: number } };
      const mean = res.latency?.mean ?? NaN;
      micro[t.name] = { meanMs: mean, opsPerSecond: res.throughput?.mean };
      lines.push(`| ${t.name} | ${mean < 1 ? (mean * 1000).toFixed(1) + ' µs' : mean.toFixed(2) + ' ms'} | ${(res.throughput?.mean ?? NaN).toFixed(0)} |`);
    }
    results.micro = micro;
    results.loadavgAtEnd = loadavg();
    lines.push('', `load average at start ${(results.machine as { loadavgAtStart: number[] }).loadavgAtStart.map((x) => x.toFixed(2)).join(' ')}, at end ${loadavg().map((x) => x.toFixed(2)).join(' ')} (${cpus().length} CPUs, ${cpus()[0]?.model}, Linux ${release()}, Node ${process.version})`);
    console.log(lines.join('\n'));
    if (jsonIdx >= 0) writeFileSync(process.argv[jsonIdx + 1]!, JSON.stringify(results, null, 2) + '\n');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') await child(process.argv[3]!, process.argv[4]!, process.argv[5]);
else await main();
