// Importing a large export stream: `drvbox store import` must stream (temp
// names in the store, hashing on the way), so its peak RSS stays flat
// whatever the size of the stream. The stream is generated on the fly (never
// held in memory or written to disk) and piped into the CLI; the child
// reports its peak RSS (VmHWM) at exit. For comparison the same stream goes
// into `nix-store --import` (isolated, --store under the temp dir) when Nix
// is installed; Nix reads each NAR into memory, so its peak follows the
// largest path.
//
//   node dist/bench/store-import.js [--size-mb 1024] [--file-mb 128] [--small-files 2000] [--no-nix] [--json FILE]
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { exportEntryTrailer, exportPathStart, exportStreamEnd } from '../src/format/export-stream.js';
import type { NarEvent } from '../src/format/nar.js';
import { NarWriter } from '../src/format/nar-writer.js';
import { nix32Encode } from '../src/format/nix32.js';

const SELF = fileURLToPath(import.meta.url);
const REPO = join(SELF, '..', '..', '..');
const CLI = join(REPO, 'dist', 'src', 'cli', 'main.js');
const CHUNK = 1 << 20;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

function storePath(i: number, name: string): string {
  return `/nix/store/${nix32Encode(createHash('sha1').update(`bench-${i}`).digest())}-${name}`;
}

/** Deterministic, incompressible-looking bytes, produced a chunk at a time. */
function fill(buf: Buffer, seed: number): void {
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < buf.length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
}

interface Plan {
  bigFiles: number;
  fileBytes: number;
  smallFiles: number;
  totalBytes: number;
}

/** The export stream: `bigFiles` single-file paths (a chain of references) and one tree of small files. */
async function* generate(plan: Plan): AsyncGenerator<Uint8Array> {
  const buf = Buffer.allocUnsafe(CHUNK);
  let prev: string | null = null;
  for (let i = 0; i < plan.bigFiles; i++) {
    const path = storePath(i, `blob-${i}`);
    yield exportPathStart();
    const w = new NarWriter();
    yield w.write({ type: 'regular', executable: false, size: plan.fileBytes });
    for (let done = 0; done < plan.fileBytes; done += CHUNK) {
      const n = Math.min(CHUNK, plan.fileBytes - done);
      fill(buf, i * 100_003 + done / CHUNK);
      yield w.write({ type: 'contents', data: buf.subarray(0, n) });
    }
    yield w.write({ type: 'regularEnd' });
    w.end();
    yield exportEntryTrailer({ path, references: prev ? [prev] : [], deriver: null });
    prev = path;
  }
  const tree = storePath(plan.bigFiles, 'small-files');
  yield exportPathStart();
  const w = new NarWriter();
  const ev = (e: NarEvent) => w.write(e);
  yield ev({ type: 'directory' });
  const names = Array.from({ length: plan.smallFiles }, (_, k) => `f${k}`).sort();
  for (const name of names) {
    const data = Buffer.from(`small file ${name}\n`.repeat(8));
    yield ev({ type: 'entry', name });
    yield ev({ type: 'regular', executable: name.endsWith('7'), size: data.length });
    yield ev({ type: 'contents', data });
    yield ev({ type: 'regularEnd' });
    yield ev({ type: 'entryEnd' });
  }
  yield ev({ type: 'directoryEnd' });
  w.end();
  yield exportEntryTrailer({ path: tree, references: prev ? [prev] : [], deriver: null });
  yield exportStreamEnd();
}

interface RunResult {
  seconds: number;
  streamBytes: number;
  peakRssMB: number;
  imported: number;
  status: number | null;
  stderr: string;
}

/** Pipes the stream into `cmd`, tracking the child's VmHWM from /proc while it runs. */
async function runImport(cmd: string, args: string[], env: NodeJS.ProcessEnv, plan: Plan, rssFile: string | null): Promise<RunResult> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  let polled = 0;
  const poll = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) polled = Math.max(polled, Number(m[1]) / 1024);
    } catch {
      /* exited */
    }
  }, 20);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let streamBytes = 0;
  child.stdin.on('error', () => {});
  try {
    for await (const c of generate(plan)) {
      streamBytes += c.length;
      if (!child.stdin.write(c)) await new Promise((r) => child.stdin.once('drain', r));
    }
  } catch {
    /* the child died: its status tells */
  }
  child.stdin.end();
  const status = await exited;
  clearInterval(poll);
  let peak = polled;
  if (rssFile && existsSync(rssFile)) peak = Math.max(peak, (JSON.parse(readFileSync(rssFile, 'utf8')) as { peakRssMB: number }).peakRssMB);
  return {
    seconds: (performance.now() - t0) / 1000,
    streamBytes,
    peakRssMB: Math.round(peak * 10) / 10,
    imported: out.split('\n').filter(Boolean).length,
    status,
    stderr: err.slice(-2000),
  };
}

async function main(): Promise<void> {
  const sizeMB = arg('size-mb', 1024);
  const fileMB = arg('file-mb', 128);
  const smallFiles = arg('small-files', 2000);
  const plan: Plan = {
    bigFiles: Math.max(1, Math.round(sizeMB / fileMB)),
    fileBytes: fileMB * 1024 * 1024,
    smallFiles,
    totalBytes: 0,
  };
  const dir = mkdtempSync('/tmp/drvbox-bench-import-');
  const results: Record<string, unknown> = {
    host: { cpus: cpus().length, model: cpus()[0]?.model, kernel: release(), node: process.version },
    plan: { paths: plan.bigFiles + 1, bigFileMB: fileMB, smallFiles },
  };
  try {
    // The CLI, wrapped so that it reports its own peak RSS at exit.
    const wrapper = join(dir, 'wrapper.mjs');
    const rssFile = join(dir, 'rss.json');
    writeFileSync(
      wrapper,
      `import { readFileSync, writeFileSync } from 'node:fs';
process.on('exit', () => {
  const m = /VmHWM:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  const peakRssMB = m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
  writeFileSync(${JSON.stringify(rssFile)}, JSON.stringify({ peakRssMB }));
});
await import(${JSON.stringify(pathToFileURL(CLI).href)});
`,
    );
    const root = join(dir, 'drvbox-root');
    const ours = await runImport(process.execPath, [wrapper, 'store', 'import'], { ...process.env, DRVBOX_STORE: root }, plan, rssFile);
    results.drvbox = { ...ours, MBps: Math.round(ours.streamBytes / 1048576 / ours.seconds) };
    console.log(
      `drvbox store import: ${(ours.streamBytes / 1048576).toFixed(0)} MiB, ${ours.imported} paths in ${ours.seconds.toFixed(1)} s ` +
        `(${(ours.streamBytes / 1048576 / ours.seconds).toFixed(0)} MiB/s), peak RSS ${ours.peakRssMB} MB, exit ${ours.status}`,
    );
    if (ours.status !== 0) console.log(ours.stderr);
    rmSync(root, { recursive: true, force: true });

    if (!process.argv.includes('--no-nix') && existsSync('/usr/bin/nix-store')) {
      const conf = join(dir, 'nix-conf');
      mkdirSync(conf);
      writeFileSync(join(conf, 'nix.conf'), 'build-users-group =\nsubstituters =\n');
      const env = { ...process.env, NIX_CONF_DIR: conf, HOME: join(dir, 'home'), NIX_REMOTE: '' };
      const theirs = await runImport('nix-store', ['--store', join(dir, 'nix-root'), '--import'], env, plan, null);
      results.nix = { ...theirs, MBps: Math.round(theirs.streamBytes / 1048576 / theirs.seconds) };
      console.log(
        `nix-store --import:  ${(theirs.streamBytes / 1048576).toFixed(0)} MiB, ${theirs.imported} paths in ${theirs.seconds.toFixed(1)} s ` +
          `(${(theirs.streamBytes / 1048576 / theirs.seconds).toFixed(0)} MiB/s), peak RSS ${theirs.peakRssMB} MB (polled), exit ${theirs.status}`,
      );
    }
    const ok = ours.status === 0 && ours.peakRssMB < 100 && ours.imported === plan.bigFiles + 1;
    console.log(ok ? 'OK: streamed import under 100 MB peak RSS' : 'FAIL: import failed or peak RSS >= 100 MB');
    const ji = process.argv.indexOf('--json');
    if (ji >= 0) writeFileSync(process.argv[ji + 1]!, JSON.stringify(results, null, 2));
    if (!ok) process.exitCode = 1;
  } finally {
    try {
      const { execFileSync } = await import('node:child_process');
      execFileSync('chmod', ['-R', 'u+w', dir]);
    } catch {
      /* ignore */
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
