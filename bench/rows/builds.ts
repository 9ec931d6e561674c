// Whole builds side by side with Nix 2.8, each run in fresh stores, the two
// tools alternating: (1) a wide DAG and (3) its no-op rebuild, (2) a chain,
// the same unsandboxed (issue 3), and (8) a 1,000-derivation DAG with
// drvbox's own CPU per derivation and where it goes.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshDir, missingPeer, type BenchContext } from '../lib/context.js';
import { bigOutput, chain, layeredDag, wideDag, type DrvSet, type ShapeOptions } from '../lib/derivations.js';
import { BUSYBOX, drvboxTool, nixAvailable, nixTool, realStoreDir, REPO } from '../lib/env.js';
import { summariseProfileDir } from '../lib/profile.js';
import { check, side, type RowResult } from '../lib/report.js';
import { alternate, median, summarize } from '../lib/stats.js';

const CPU_REPORT = join(fileURLToPath(import.meta.url), '..', '..', 'lib', 'cpu-report.js');

interface Sample {
  ms: number;
  rssMB: number | null;
  /** CPU of the whole process tree (tool, helpers, builders, daemons: its own cgroup), ms; null without cgroups. */
  treeCpuMs: number | null;
  out: string;
  noopMs?: number;
  noopRssMB?: number | null;
  /** drvbox's node process alone. */
  ownCpuMs?: number;
}

interface BuildOpts {
  sandbox: boolean;
  noop?: boolean;
  ownCpu?: boolean;
  profileDir?: string;
  /** Overrides ctx.jobs (both tools). */
  jobs?: number;
  /** drvbox only: extra arguments and environment (variants). */
  extraArgs?: string[];
  extraEnv?: NodeJS.ProcessEnv;
  /** Both tools build in this non-diverted store instead of a fresh diverted one (issue 3's unsandboxed rows). */
  realStore?: RealStore;
}

/**
 * A store whose logical dir is its physical one, ROOT/nix/store, so that
 * neither tool is forced into a sandbox. The derivations name ROOT, so every
 * build uses the same ROOT: it is moved into the build's fresh dir after
 * each build (a rename: nothing is freed before the end of the run).
 */
interface RealStore {
  root: string;
  /** Throws unless the target's output shows an unsandboxed build under `tmpDir`. */
  verify(who: string, outPath: string, tmpDir: string): void;
}

/** Moves the shared real store aside (see RealStore); the next build starts with none. */
function retireRealStore(rs: RealStore | undefined, dir: string): void {
  if (rs && existsSync(rs.root)) renameSync(rs.root, join(dir, 'real-store-used'));
}

function lastLine(b: Buffer): string {
  return b.toString().trim().split('\n').pop() ?? '';
}

function drvboxBuild(ctx: BenchContext, stream: Buffer, target: string, o: BuildOpts): Sample {
  const dir = freshDir(ctx, 'drvbox');
  try {
    if (o.realStore && o.profileDir) throw new Error('internal: a profiled run needs a second store, which a real store dir cannot give');
    const t = drvboxTool(dir, { sandbox: o.sandbox, ...(o.realStore ? { realStoreRoot: o.realStore.root } : {}) }, o.ownCpu ? ['--import', CPU_REPORT] : []);
    t.run(['store', 'import'], { input: stream });
    const args = ['build', '-j', String(o.jobs ?? ctx.jobs), '--quiet', ...(o.extraArgs ?? []), target];
    const cpuFile = join(dir, 'cpu.json');
    const b = t.run(args, { usage: true, treeCpu: true, env: { ...t.env, ...o.extraEnv, DRVBOX_BENCH_CPU_OUT: cpuFile } });
    const s: Sample = { ms: b.ms, rssMB: b.peakRssMB, treeCpuMs: b.treeCpuMs, out: lastLine(b.stdout) };
    o.realStore?.verify('drvbox', s.out, dir);
    if (o.ownCpu && existsSync(cpuFile)) {
      const u = JSON.parse(readFileSync(cpuFile, 'utf8')) as { userMs: number; sysMs: number };
      s.ownCpuMs = u.userMs + u.sysMs;
    }
    if (o.noop) {
      const n = t.run(args, { usage: true });
      if (lastLine(n.stdout) !== s.out) throw new Error(`drvbox no-op printed ${lastLine(n.stdout)}, the build ${s.out}`);
      s.noopMs = n.ms;
      s.noopRssMB = n.peakRssMB;
    }
    if (o.profileDir) {
      // Where the CPU goes, from the unbundled build (samples name their source dir); not timed.
      // a second store for the profiled run (the first one is built already)
      const profRoot = join(dir, 'profiled');
      const unbundled = join(REPO, 'dist', 'src', 'cli', 'main.js');
      drvboxTool(profRoot, { sandbox: o.sandbox }).run(['store', 'import'], { input: stream });
      drvboxTool(profRoot, { sandbox: o.sandbox }, ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`], unbundled).run(args);
    }
    return s;
  } finally {
    retireRealStore(o.realStore, dir);
    keepUntilEnd(dir);
  }
}

function nixBuild(ctx: BenchContext, stream: Buffer, target: string, o: BuildOpts): Sample {
  const dir = freshDir(ctx, 'nix');
  try {
    const n = nixTool(dir, { sandbox: o.sandbox, ...(o.realStore ? { realStoreRoot: o.realStore.root } : {}) });
    n.cmd('nix-store', ['--import'], { input: stream });
    const args = ['-j', String(o.jobs ?? ctx.jobs), '--no-out-link', target];
    const b = n.run(args, { usage: true, treeCpu: true });
    const s: Sample = { ms: b.ms, rssMB: b.peakRssMB, treeCpuMs: b.treeCpuMs, out: lastLine(b.stdout) };
    o.realStore?.verify('Nix', s.out, dir);
    if (o.noop) {
      const r = n.run(args, { usage: true });
      s.noopMs = r.ms;
      s.noopRssMB = r.peakRssMB;
    }
    return s;
  } finally {
    retireRealStore(o.realStore, dir);
    keepUntilEnd(dir);
  }
}

/**
 * Stores are removed with the run's temp dir at the end, not between runs:
 * on a file system without a journal, ext4 skips inodes freed in the last
 * minute when it allocates new ones, so deleting one run's store would
 * slow down the file creation of the runs after it, whichever tool they are.
 */
function keepUntilEnd(_dir: string): void {}

const maxOf = (xs: Array<number | null | undefined>): number | null => {
  const v = xs.filter((x): x is number => typeof x === 'number');
  return v.length ? Math.max(...v) : null;
};

interface Pair {
  drvbox: Sample[];
  nix: Sample[];
}

async function pairRuns(ctx: BenchContext, what: string, set: DrvSet, target: string, rounds: number, o: BuildOpts, withNix: boolean): Promise<Pair> {
  const stream = set.exportStream();
  const res: Pair = { drvbox: [], nix: [] };
  // One unmeasured drvbox build first (small sets only): the page cache is not what the row is about.
  if (set.size <= 200) drvboxBuild(ctx, stream, target, { sandbox: o.sandbox, ...(o.realStore ? { realStore: o.realStore } : {}) });
  const { profileDir, ...plain } = o;
  const fns = [
    () => {
      // Only the first measured run is also profiled (after its timing).
      res.drvbox.push(drvboxBuild(ctx, stream, target, res.drvbox.length === 0 && profileDir ? o : plain));
    },
  ];
  if (withNix) fns.push(() => void res.nix.push(nixBuild(ctx, stream, target, plain)));
  await alternate(rounds, fns);
  ctx.log(`${what}: drvbox ${res.drvbox.map((s) => s.ms.toFixed(0)).join(' ')} ms; nix ${withNix ? res.nix.map((s) => s.ms.toFixed(0)).join(' ') + ' ms' : 'missing'}`);
  for (const n of res.nix) {
    if (n.out !== res.drvbox[0]!.out) throw new Error(`${what}: Nix built ${n.out}, drvbox ${res.drvbox[0]!.out}`);
  }
  return res;
}

function buildRow(id: string, n: string, title: string, p: Pair, target: number, withNix: boolean, nixName: string): RowResult {
  const d = p.drvbox.map((s) => s.ms);
  const x = p.nix.map((s) => s.ms);
  const sides = [side('drvbox', 'ms', d, summarize(d), maxOf(p.drvbox.map((s) => s.rssMB)))];
  if (withNix) sides.push(side(nixName, 'ms', x, summarize(x), maxOf(p.nix.map((s) => s.rssMB))));
  return {
    id,
    n,
    title,
    sides,
    checks: [check('time vs Nix', withNix ? median(d) / median(x) : null, '×', target)],
    missing: withNix ? [] : [missingPeer('nix')],
    notes: [],
  };
}

/**
 * Issue 3's store: ROOT/nix/store under the run's temp dir, logical and
 * physical, for both tools. Busybox sh is the builder: unsandboxed, /bin/sh
 * is the host's (dash here) and PATH is unset, so only busybox's applets make
 * `cat` work. The target appends its build dir and a host file outside its
 * closure; `verify` fails the row unless both show an unsandboxed build.
 */
function unsandboxedStore(ctx: BenchContext): { storeDir: string; realStore: RealStore; shape: ShapeOptions } {
  const root = join(ctx.tmp, 'u');
  const probe = join(ctx.tmp, 'host-file');
  const token = 'outside-the-closure';
  writeFileSync(probe, token + '\n');
  const verify = (who: string, outPath: string, tmpDir: string): void => {
    if (!outPath.startsWith(realStoreDir(root) + '/')) throw new Error(`${who} printed '${outPath}', not a path in ${realStoreDir(root)}`);
    const lines = readFileSync(outPath, 'utf8').split('\n');
    const top = lines.find((l) => l.startsWith('build-top='))?.slice('build-top='.length) ?? '(none)';
    const sawHost = lines.includes(token);
    if (!top.startsWith(join(tmpDir, 'nix-build-')) || !sawHost) {
      throw new Error(
        `${who} did not build unsandboxed: ${outPath} says NIX_BUILD_TOP was '${top}' (wanted ${tmpDir}/nix-build-…) and the builder ` +
          (sawHost ? 'read' : 'could not read') + ` the host file ${probe}`,
      );
    }
  };
  return {
    storeDir: realStoreDir(root),
    realStore: { root, verify },
    shape: {
      storeDir: realStoreDir(root),
      shell: [BUSYBOX, 'sh'],
      targetTail: `echo "build-top=$NIX_BUILD_TOP" >> $out; cat ${probe} >> $out 2>/dev/null || echo no-host-file >> $out`,
    },
  };
}

export async function buildRows(ctx: BenchContext, want: (id: string) => boolean): Promise<RowResult[]> {
  const withNix = nixAvailable();
  const rows: RowResult[] = [];
  const rounds = ctx.runs;
  const nixJ = `nix-build -j${ctx.jobs}`;

  if (want('wide') || want('noop')) {
    const leaves = ctx.quick ? 50 : 100;
    const { set, target } = wideDag(leaves);
    const p = await pairRuns(ctx, `wide DAG of ${leaves}`, set, target, rounds, { sandbox: true, noop: true }, withNix);
    if (want('wide')) rows.push(buildRow('wide', '1', `wide DAG of ${leaves} trivial sandboxed derivations + root, fresh stores, -j${ctx.jobs}`, p, 0.5, withNix, `${nixJ} (sandbox)`));
    if (want('noop')) {
      const d = p.drvbox.map((s) => s.noopMs!);
      const x = p.nix.map((s) => s.noopMs!);
      const sides = [side('drvbox', 'ms', d, summarize(d), maxOf(p.drvbox.map((s) => s.noopRssMB)))];
      if (withNix) sides.push(side(nixJ, 'ms', x, summarize(x), maxOf(p.nix.map((s) => s.noopRssMB))));
      rows.push({
        id: 'noop',
        n: '3a',
        title: `no-op rebuild of (1): everything valid`,
        sides,
        checks: [check('time vs Nix', withNix ? median(d) / median(x) : null, '×', 2)],
        missing: withNix ? [] : [missingPeer('nix')],
        notes: [],
      });
    }
  }
  if (want('chain')) {
    const len = ctx.quick ? 15 : 30;
    const { set, target } = chain(len);
    const p = await pairRuns(ctx, `chain of ${len}`, set, target, rounds, { sandbox: true }, withNix);
    rows.push(buildRow('chain', '2', `chain of ${len} sandboxed derivations, fresh stores`, p, 0.6, withNix, `${nixJ} (sandbox)`));
  }
  if (want('unsandboxed')) {
    // Issue 3: sandbox = false on both sides, in a store that does not force a sandbox.
    const u = unsandboxedStore(ctx);
    const leaves = ctx.quick ? 50 : 100;
    const w = wideDag(leaves, 'uwide', u.shape);
    const pw = await pairRuns(ctx, `unsandboxed wide DAG of ${leaves}`, w.set, w.target, rounds, { sandbox: false, realStore: u.realStore }, withNix);
    const where = `store dir ${u.storeDir} on both sides, busybox sh builder`;
    const rw = buildRow('unsandboxed-wide', 'i3', `wide DAG of ${leaves} trivial derivations + root, unsandboxed (sandbox = false), fresh stores, -j${ctx.jobs}`, pw, 0.7, withNix, `${nixJ} (sandbox = false)`);
    rw.notes.push(`${where}; every build's target checked: built in the host's TMPDIR, read a host file outside its closure`);
    rows.push(rw);
    const len = ctx.quick ? 15 : 30;
    const c = chain(len, 'uchain', u.shape);
    const pc = await pairRuns(ctx, `unsandboxed chain of ${len}`, c.set, c.target, rounds, { sandbox: false, realStore: u.realStore }, withNix);
    const rc = buildRow('unsandboxed-chain', 'i3', `chain of ${len} derivations, unsandboxed (sandbox = false), fresh stores`, pc, 0.7, withNix, `${nixJ} (sandbox = false)`);
    rc.notes.push(`${where}; every build's last link checked as above`);
    rows.push(rc);
  }
  for (const ca of [false, true]) {
    if (!want(ca ? 'ca' : 'big')) continue;
    const mb = ctx.quick ? 64 : 256;
    const { set, target } = bigOutput(mb << 20, 4000, ca);
    const what = ca
      ? `CA floating ${mb} MiB output, a self-reference every ~4 KiB (hash modulo, rewrite)`
      : `${mb} MiB output, a reference every ~4 KiB (scan, hash, register)`;
    const p = await pairRuns(ctx, what, set, target, Math.min(rounds, ctx.quick ? 2 : 3), { sandbox: true }, withNix);
    const row = buildRow(ca ? 'ca' : 'big', ca ? '5' : '4', `${what}, sandboxed`, p, ca ? 0.5 : 0.8, withNix, 'nix-build (sandbox)');
    if (ca) {
      const rss = maxOf(p.drvbox.map((s) => s.rssMB));
      row.checks.push(check('drvbox peak RSS', rss, 'MB', 150, '<'));
      if (withNix) row.notes.push(`peak RSS: drvbox ${rss?.toFixed(0)} MB, Nix ${maxOf(p.nix.map((s) => s.rssMB))?.toFixed(0)} MB (largest process of each tree)`);
    }
    rows.push(row);
  }
  if (want('variants')) {
    // What moves the wide DAG (bench/build-dag-sandbox.ts's variants): one
    // launcher process per build instead of the launcher server, no seccomp
    // filter, and each tool at -j1 (its serial cost per derivation).
    const leaves = ctx.quick ? 50 : 100;
    const { set, target } = wideDag(leaves, 'vwide');
    const r = Math.max(1, Math.min(rounds, 3));
    const variants: Array<[string, BuildOpts]> = [
      ['drvbox (launcher server, seccomp)', { sandbox: true }],
      ['drvbox, one launcher process per build', { sandbox: true, extraEnv: { DRVBOX_LAUNCHER_ONESHOT: '1' } }],
      ['drvbox, filter-syscalls = false', { sandbox: true, extraArgs: ['--option', 'filter-syscalls', 'false'] }],
      ['drvbox -j1', { sandbox: true, jobs: 1 }],
    ];
    const stream = set.exportStream();
    const got = new Map<string, number[]>();
    const fns = variants.map(([name, o]) => () => void (got.get(name) ?? got.set(name, []).get(name)!).push(drvboxBuild(ctx, stream, target, o).ms));
    if (withNix) fns.push(() => void (got.get('nix-build -j1') ?? got.set('nix-build -j1', []).get('nix-build -j1')!).push(nixBuild(ctx, stream, target, { sandbox: true, jobs: 1 }).ms));
    await alternate(r, fns);
    ctx.log(`wide DAG variants: ${[...got].map(([k, v]) => `${k} ${median(v).toFixed(0)} ms`).join('; ')}`);
    const n = leaves + 1;
    const j1 = median(got.get('drvbox -j1')!);
    const nixJ1 = withNix ? median(got.get('nix-build -j1')!) : NaN;
    rows.push({
      id: 'variants',
      n: '1v',
      title: `wide DAG of ${leaves}: what moves it (launcher server vs one launcher per build, seccomp, -j1)`,
      sides: [...got].map(([k, v]) => side(k, 'ms', v, summarize(v))),
      checks: [check('-j1: time vs nix-build -j1 (no target)', withNix ? j1 / nixJ1 : null, '×', null)],
      missing: withNix ? [] : [missingPeer('nix')],
      notes: [`serial cost per derivation (-j1): drvbox ${(j1 / n).toFixed(1)} ms` + (withNix ? `, Nix ${(nixJ1 / n).toFixed(1)} ms` : '')],
    });
  }
  if (want('dag1000')) {
    const total = ctx.quick ? 200 : 1000;
    const { set, target } = layeredDag(total, ctx.quick ? 40 : 111);
    const profileDir = ctx.profile ? join(ctx.tmp, 'profile-dag') : undefined;
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    const r = Math.max(1, Math.min(rounds, ctx.quick ? 1 : 3));
    const p = await pairRuns(ctx, `${total}-derivation DAG`, set, target, r, { sandbox: true, ownCpu: true, ...(profileDir ? { profileDir } : {}) }, withNix);
    const row = buildRow('dag1000', '8', `${total}-derivation DAG (layers, 2 inputs each), sandboxed, -j${ctx.jobs}`, p, Infinity, withNix, `${nixJ} (sandbox)`);
    row.checks = [];
    const own = median(p.drvbox.map((s) => s.ownCpuMs ?? NaN)) / total;
    const tree = median(p.drvbox.map((s) => s.treeCpuMs ?? NaN)) / total;
    const nixTree = withNix ? median(p.nix.map((s) => s.treeCpuMs ?? NaN)) / total : NaN;
    row.sides[0]!.extra = { ownCpuMsPerDrv: own, treeCpuMsPerDrv: tree };
    if (withNix) row.sides[1]!.extra = { treeCpuMsPerDrv: nixTree };
    row.checks.push(check("drvbox's own CPU per derivation (node process)", own, 'ms', 3, '<'));
    row.checks.push(check('time vs Nix (no target)', withNix ? median(p.drvbox.map((s) => s.ms)) / median(p.nix.map((s) => s.ms)) : null, '×', null));
    const f = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)} ms` : 'n/a (no writable cgroup hierarchy)');
    row.notes.push(
      `CPU per derivation: drvbox's node process ${f(own)}; drvbox's whole tree (node, launcher, sandbox set-up, builders) ${f(tree)}` +
        (withNix ? `; Nix's whole tree ${f(nixTree)}` : ''),
    );
    if (profileDir) {
      try {
        const buckets = summariseProfileDir(profileDir);
        row.sides[0]!.extra!.cpuProfileMs = buckets;
        row.notes.push(
          `where drvbox's CPU goes (one --cpu-prof run, ms for ${total} derivations): ` +
            Object.entries(buckets)
              .filter(([k]) => !k.startsWith('idle'))
              .map(([k, v]) => `${k} ${v}`)
              .join(', '),
        );
      } catch (e) {
        row.notes.push(`no CPU profile: ${(e as Error).message}`);
      }
    }
    rows.push(row);
  }
  return rows;
}
