// Reference scanning speed and memory: a big file of random bytes and a
// big text-like file (words, paths, store paths, some of them candidates),
// each scanned against 1,000 candidate hash parts in a child process that
// reads 1 MiB chunks into a reused buffer (so the figure includes reading
// from the page cache) and reports its peak RSS. Also tinybench micro
// numbers for the scanner, the rewriter and the CA hash-modulo sink on
// in-memory buffers. Test data goes under /tmp and is removed at the end.
//
//   node dist/bench/refscan.js [--size-mb 512] [--rounds 3] [--json FILE]
import { spawnSync } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { NIX32_ALPHABET } from '../src/format/nix32.js';
import { HashPartTable, RefScanner } from '../src/format/refscan.js';
import { HashModuloSink, HashRewriter } from '../src/format/rewrite.js';

const SELF = fileURLToPath(import.meta.url);
const CHUNK = 1 << 20;

function peakRssMB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

function randomHashParts(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const b = randomBytes(32);
    let s = '';
    for (const x of b) s += NIX32_ALPHABET[x & 31];
    out.push(s);
  }
  return out;
}

interface ScanResult {
  seconds: number;
  bytes: number;
  found: number;
  maxRssMB: number;
}

function childScan(file: string, partsFile: string): void {
  const parts = readFileSync(partsFile, 'utf8').trim().split('\n');
  const t0 = performance.now();
  const s = new RefScanner(parts);
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  let bytes = 0;
  for (;;) {
    const n = readSync(fd, buf, 0, CHUNK, bytes);
    if (n === 0) break;
    s.update(buf.subarray(0, n));
    bytes += n;
  }
  closeSync(fd);
  const out: ScanResult = { seconds: (performance.now() - t0) / 1000, bytes, found: s.found().size, maxRssMB: peakRssMB() };
  process.stdout.write(JSON.stringify(out) + '\n');
}

function runChild(file: string, partsFile: string): ScanResult {
  const r = spawnSync(process.execPath, [SELF, '--child', file, partsFile], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ScanResult;
}

const WORDS = (
  'the of and to in is for on with that this from by are was be at as it an or not have ' +
  'lib bin share include usr local etc configure make install prefix export PATH LD_LIBRARY_PATH ' +
  'echo if then fi else do done for while case esac return function local readonly ' +
  'gcc glibc bash coreutils python3 perl openssl zlib libffi ncurses readline sqlite ' +
  '0.1 1.2.3 2024 x86_64-linux -O2 -Wall -fPIC .so .a .h .c .py .sh ' +
  'hello world error warning note build test check result value string number'
).split(' ');

/** Text like a build log or a script: words, paths, numbers, and /nix/store paths (a few of them candidates). */
function makeTextFile(path: string, bytes: number, candidates: string[], planted: number): number {
  const fd = openSync(path, 'w');
  const others = randomHashParts(200);
  let written = 0;
  let plantedCount = 0;
  let rnd = 12345;
  const next = (n: number): number => {
    rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0;
    return (rnd >>> 8) % n;
  };
  try {
    while (written < bytes) {
      let s = '';
      while (s.length < 1 << 20) {
        const k = next(100);
        if (k < 3) s += `/nix/store/${others[next(others.length)]}-${WORDS[next(WORDS.length)]}-1.0/lib `;
        else if (k < 4 && plantedCount < planted && next(50) === 0) {
          s += `/nix/store/${candidates[plantedCount++ * 7]}-dep/bin `;
        } else s += WORDS[next(WORDS.length)] + (k % 9 === 0 ? '\n' : ' ');
      }
      const b = Buffer.from(s, 'latin1').subarray(0, Math.min(1 << 20, bytes - written));
      writeSync(fd, b);
      written += b.length;
    }
  } finally {
    closeSync(fd);
  }
  return plantedCount;
}

function makeRandomFile(path: string, bytes: number, candidates: string[], planted: number): void {
  const fd = openSync(path, 'w');
  const block = Buffer.allocUnsafe(1 << 20);
  let n = 0;
  try {
    for (let done = 0; done < bytes; done += block.length) {
      randomFillSync(block);
      if (n < planted) Buffer.from(candidates[n++ * 5]!, 'latin1').copy(block, 1000);
      writeSync(fd, block, 0, Math.min(block.length, bytes - done));
    }
  } finally {
    closeSync(fd);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const gbs = (bps: number): string => `${(bps / 1e9).toFixed(2)} GB/s`;

function argValue(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

async function main(): Promise<void> {
  const sizeMB = argValue('--size-mb', 512);
  const rounds = argValue('--rounds', 3);
  const jsonIdx = process.argv.indexOf('--json');
  const tmp = mkdtempSync('/tmp/drvbox-bench-refscan-');
  const results: Record<string, unknown> = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, kernel: release(), node: process.version, loadavgAtStart: loadavg() },
  };
  const lines: string[] = [];
  try {
    const candidates = randomHashParts(1000);
    const partsFile = join(tmp, 'candidates');
    writeFileSync(partsFile, candidates.join('\n') + '\n');
    const randomFile = join(tmp, 'random');
    const textFile = join(tmp, 'text');
    console.error(`# writing two ${sizeMB} MiB files under ${tmp}`);
    makeRandomFile(randomFile, sizeMB << 20, candidates, 20);
    const plantedText = makeTextFile(textFile, sizeMB << 20, candidates, 100);
    lines.push(`## Reference scan of ${sizeMB} MiB against 1,000 candidate hash parts (${rounds} rounds, child process, 1 MiB reads)`, '');
    lines.push('| file | median | min – max | candidates found | peak RSS |', '|---|---|---|---|---|');
    const fileResults: Record<string, unknown> = {};
    for (const [name, file, planted] of [
      ['random bytes', randomFile, 20],
      ['text-like', textFile, plantedText],
    ] as const) {
      runChild(file, partsFile); // page cache
      const rs: ScanResult[] = [];
      for (let r = 0; r < rounds; r++) rs.push(runChild(file, partsFile));
      const bps = rs.map((r) => r.bytes / r.seconds);
      const found = rs[0]!.found;
      if (found !== planted) throw new Error(`${name}: found ${found} candidates, planted ${planted}`);
      fileResults[name] = { bytesPerSecond: bps, found, peakRssMB: rs.map((r) => r.maxRssMB) };
      lines.push(
        `| ${name} | ${gbs(median(bps))} | ${gbs(Math.min(...bps))} – ${gbs(Math.max(...bps))} | ${found} (all planted) | ${Math.max(...rs.map((r) => r.maxRssMB)).toFixed(0)} MB |`,
      );
    }
    results.files = fileResults;
    lines.push('', 'target: ≥ 1 GB/s, peak RSS < 100 MB', '');

    // Micro: in-memory buffers, no I/O.
    const n = 16 << 20;
    const rnd = randomBytes(n);
    const text = Buffer.alloc(n);
    {
      const fd = openSync(textFile, 'r');
      readSync(fd, text, 0, n, 0);
      closeSync(fd);
    }
    // Lines of random hash parts: every window is nix32, the case skip-ahead alone cannot skip.
    const nix32Dense = randomBytes(n);
    for (let i = 0; i < n; i++) nix32Dense[i] = i % 33 === 32 ? 0x0a : NIX32_ALPHABET.charCodeAt(nix32Dense[i]! & 31);
    const self = candidates[0]!;
    const withSelf = Buffer.from(text);
    for (let at = 4096; at + 32 < n; at += 65536) withSelf.write(self, at, 'latin1');
    const table = new HashPartTable(candidates);
    const rewrites = new Map(candidates.slice(0, 10).map((c, i) => [c, candidates[999 - i]!]));
    const bench = new Bench({ time: 1500 });
    const scan = (b: Buffer) => (): void => {
      const s = new RefScanner(table);
      for (let i = 0; i < b.length; i += CHUNK) s.update(b.subarray(i, i + CHUNK));
    };
    bench
      .add('RefScanner, 16 MiB random', scan(rnd))
      .add('RefScanner, 16 MiB text-like', scan(text))
      .add(`RefScanner, ${(nix32Dense.length / 2 ** 20).toFixed(0)} MiB of hash lines (worst realistic case)`, scan(nix32Dense))
      .add('HashRewriter (10 rewrites), 16 MiB text-like with 256 matches', () => {
        const r = new HashRewriter(rewrites);
        for (let i = 0; i < withSelf.length; i += CHUNK) r.update(withSelf.subarray(i, i + CHUNK));
        r.flush();
      })
      .add('HashModuloSink sha256, 16 MiB text-like with 256 self-references', () => {
        const s = new HashModuloSink('sha256', self);
        for (let i = 0; i < withSelf.length; i += CHUNK) s.update(withSelf.subarray(i, i + CHUNK));
        s.finish();
      })
      .add('HashPartTable: compile 1,000 candidates', () => {
        new HashPartTable(candidates);
      });
    await bench.run();
    lines.push('## Micro (tinybench, in memory)', '', '| task | mean | throughput |', '|---|---|---|');
    const micro: Record<string, unknown> = {};
    for (const t of bench.tasks) {
      const res = t.result as unknown as { latency?: { mean: number } };
      const mean = res.latency?.mean ?? NaN;
      const size = t.name.includes('hash lines') ? nix32Dense.length : t.name.includes('16 MiB') ? n : 0;
      micro[t.name] = { meanMs: mean, bytesPerSecond: size ? size / (mean / 1000) : undefined };
      lines.push(`| ${t.name} | ${mean.toFixed(2)} ms | ${size ? gbs(size / (mean / 1000)) : ''} |`);
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

if (process.argv[2] === '--child') childScan(process.argv[3]!, process.argv[4]!);
else await main();
