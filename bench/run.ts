// `npm run bench`: drvbox side by side with Nix 2.8, bubblewrap and the
// hardware limit, in one run, on this machine.
//
//   npm run bench [-- --quick] [--rows 1,2,noop,micro] [--runs N] [--jobs N] [--no-profile] [--out DIR]
//
// Rows (issue 7 §1 numbers, ids for --rows):
//   1 wide        wide DAG of 100 trivial sandboxed derivations vs nix-build -j2
//     variants    the same: one launcher per build, no seccomp, -j1 against nix-build -j1
//                 (bench/build-dag-sandbox.ts's variants)
//   2 chain       chain of 30 sandboxed derivations vs Nix
//   3 noop        no-op rebuild of (1) vs Nix;  startup: drvbox --version vs node -e 0
//   4 big         a 256 MiB output (scan + hash + register) vs Nix
//   5 ca          CA floating 256 MiB output with self-references vs Nix, peak RSS
//   6 narhash     NAR hash of 512 MiB vs openssl speed and nix-hash; smallfiles: 10,000 files vs nix-hash (issue 2)
//   7 launch      sandbox launch vs bwrap and unshare
//   8 dag1000     1,000-derivation DAG with -j2: time, drvbox's own CPU per derivation, profile
//     unsandboxed issue 3's wide DAG and chain with sandboxing off on both sides
//     micro       tinybench: nix32, store paths, ATerm, NAR, refscan, rewrite, SQLite
//
// Peers that are missing are reported as missing; the suite installs nothing
// (see bench/README.md). Nix runs isolated: its own NIX_CONF_DIR, HOME and
// --store root under a temp dir. A full run writes bench/results/latest.{md,json,svg};
// a partial or --quick run writes bench/results/partial.*.
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { missingPeer, removeTree, type BenchContext } from './lib/context.js';
import { BUSYBOX, drvboxEntry, REPO } from './lib/env.js';
import { describeMachine } from './lib/machine.js';
import { removeLeftoverCgroups } from './lib/cgroup.js';
import { cleanupProcFiles, gnuTimeAvailable, which } from './lib/proc.js';
import { renderMarkdown, renderSvg, type RowResult, type SuiteResult } from './lib/report.js';
import { buildRows } from './rows/builds.js';
import { launchRow } from './rows/launch.js';
import { microRows } from './rows/micro.js';
import { narHashRows } from './rows/nar-hash.js';
import { startupRow } from './rows/startup.js';

const ALIASES: Record<string, string[]> = {
  '1': ['wide', 'variants'],
  '2': ['chain'],
  '3': ['noop', 'startup'],
  '4': ['big'],
  '5': ['ca'],
  '6': ['narhash', 'smallfiles'],
  '7': ['launch'],
  '8': ['dag1000'],
};
const ALL = ['wide', 'variants', 'noop', 'chain', 'startup', 'big', 'ca', 'narhash', 'launch', 'dag1000', 'smallfiles', 'unsandboxed', 'micro'];
const ORDER = ['1', '1v', '3a', '2', '3b', '4', '5', '6', '7', '8', 'i2', 'i3'];

interface Options {
  quick: boolean;
  rows: Set<string> | null;
  runs: number | null;
  jobs: number;
  profile: boolean;
  out: string;
}

function usage(): never {
  process.stdout.write(
    'usage: npm run bench -- [--quick] [--rows 1,2,noop,...] [--runs N] [--jobs N] [--no-profile] [--out DIR]\n' +
      `rows: ${Object.entries(ALIASES).map(([k, v]) => `${k}=${v.join('+')}`).join(' ')} unsandboxed micro\n`,
  );
  process.exit(0);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false, rows: null, runs: null, jobs: 2, profile: true, out: join(REPO, 'bench', 'results') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--rows') {
      o.rows = new Set();
      for (const r of val().split(',').map((x) => x.trim()).filter(Boolean)) {
        const ids = ALIASES[r] ?? [r];
        for (const id of ids) {
          if (!ALL.includes(id)) throw new Error(`unknown row '${r}' (known: ${[...Object.keys(ALIASES), ...ALL].join(', ')})`);
          o.rows.add(id);
        }
      }
    } else if (a === '--runs') o.runs = Number(val());
    else if (a === '--jobs') o.jobs = Number(val());
    else if (a === '--no-profile') o.profile = false;
    else if (a === '--out') o.out = val();
    else if (a === '--help' || a === '-h') usage();
    else throw new Error(`unknown option '${a}' (see --help)`);
  }
  return o;
}

function findPeers(): Record<string, string | null> {
  return {
    nix: which('nix-build') && which('nix-store') ? which('nix-build') : null,
    'nix-build': which('nix-build'),
    'nix-hash': which('nix-hash'),
    bwrap: which('bwrap'),
    unshare: which('unshare'),
    openssl: which('openssl'),
    busybox: existsSync(BUSYBOX) ? BUSYBOX : null,
    time: gnuTimeAvailable() ? '/usr/bin/time' : null,
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const entry = drvboxEntry();
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run 'npm run build' first`);
  const started = performance.now();
  const peers = findPeers();
  const machine = describeMachine(peers);
  const tmp = mkdtempSync(join(tmpdir(), 'drvbox-bench-'));
  const ctx: BenchContext = {
    quick: o.quick,
    runs: o.runs ?? (o.quick ? 2 : 5),
    jobs: o.jobs,
    tmp,
    profile: o.profile,
    peers,
    log: (m) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${m}\n`),
  };
  const want = (id: string): boolean => o.rows === null || o.rows.has(id);
  const rows: RowResult[] = [];
  const result: SuiteResult = { machine, options: { argv: process.argv.slice(2), quick: o.quick, runs: ctx.runs, jobs: o.jobs }, rows, micro: [] };
  ctx.log(`drvbox ${entry}, ${machine.cpus} CPUs, temp dir ${tmp}`);
  try {
    const buildIds = ['wide', 'variants', 'noop', 'chain', 'big', 'ca', 'dag1000', 'unsandboxed'];
    if (buildIds.some(want)) {
      if (peers.busybox) rows.push(...(await buildRows(ctx, want)));
      else {
        for (const id of buildIds.filter(want)) {
          rows.push({ id, n: id, title: `${id}: the derivations run busybox as /bin/sh`, sides: [], checks: [], missing: [missingPeer('busybox')], notes: [] });
        }
      }
    }
    if (want('startup')) rows.push(await startupRow(ctx));
    if (want('narhash') || want('smallfiles')) rows.push(...(await narHashRows(ctx, want)));
    if (want('launch')) {
      if (process.platform === 'linux') rows.push(await launchRow(ctx));
      else rows.push({ id: 'launch', n: '7', title: 'sandbox launch', sides: [], checks: [], missing: ['the Linux backend (this is not Linux)'], notes: [] });
    }
    if (want('micro')) result.micro = await microRows(ctx);
  } finally {
    removeTree(tmp);
    cleanupProcFiles();
    removeLeftoverCgroups();
  }
  rows.sort((a, b) => ORDER.indexOf(a.n) - ORDER.indexOf(b.n));
  machine.loadavgEnd = loadavg();
  result.durationS = (performance.now() - started) / 1000;
  const name = o.rows === null && !o.quick ? 'latest' : 'partial';
  mkdirSync(o.out, { recursive: true });
  const md = renderMarkdown(result).replace('latest.svg', `${name}.svg`);
  writeFileSync(join(o.out, `${name}.json`), JSON.stringify(result, null, 2) + '\n');
  writeFileSync(join(o.out, `${name}.md`), md);
  writeFileSync(join(o.out, `${name}.svg`), renderSvg(result));
  process.stdout.write(md);
  ctx.log(`wrote ${join(o.out, `${name}.{md,json,svg}`)}`);
  const unmet = rows.flatMap((r) => r.checks.filter((c) => c.met === false).map((c) => `(${r.n}) ${c.label}`));
  if (unmet.length) ctx.log(`short of target: ${unmet.join('; ')}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
