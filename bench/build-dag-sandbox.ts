// Whole SANDBOXED builds, drvbox vs Nix 2.8 (`nix-build -j2`, sandbox =
// true), side by side in one run (issue 4 §6):
//   wide   100 trivial leaves + 1 root that depends on all of them
//   chain  30 trivial derivations, each depending on the previous one
// Both build in fresh chroot-style stores (logical /nix/store; Nix isolated
// by its own NIX_CONF_DIR and --store ROOT, never the system's) with the
// same sandbox-paths (/bin/sh = busybox); the order alternates per run;
// medians and ratios are reported (target: drvbox <= 0.6x Nix). Then, for
// the performance work, where drvbox's time goes:
//   - variants of the wide build: one launcher process per build
//     (DRVBOX_LAUNCHER_ONESHOT=1), no seccomp (filter-syscalls = false);
//   - the CPU of drvbox's node process by area (--cpu-prof), and of the
//     whole process tree (user+sys of children, from getrusage);
//   - the serial cost per sandboxed derivation: the wide DAG at -j1.
//
//   node dist/bench/build-dag-sandbox.js [--runs 5] [--jobs 2] [--wide 100] [--chain 30] [--no-variants] [--json FILE]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summariseProfile } from './lib/profile.js';
import { median } from './lib/stats.js';

const SELF = fileURLToPath(import.meta.url);
const REPO = join(SELF, '..', '..', '..');
const CLI = join(REPO, 'dist', 'src', 'cli', 'main.js');
const BUSYBOX = '/usr/bin/busybox';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const RUNS = arg('runs', 5);
const JOBS = arg('jobs', 2);
const WIDE = arg('wide', 100);
const CHAIN = arg('chain', 30);
const VARIANTS = !process.argv.includes('--no-variants');
const jsonIdx = process.argv.indexOf('--json');
const JSON_OUT = jsonIdx >= 0 ? process.argv[jsonIdx + 1] : null;

const SYSTEM = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux`;

const EXPR: Record<string, string> = {
  wide: `let leaf = i: derivation { name = "wide-\${toString i}"; system = "${SYSTEM}"; builder = "/bin/sh"; args = [ "-c" "echo \${toString i} > $out" ]; };
    leaves = builtins.genList leaf ${WIDE};
in derivation { name = "wide-root"; system = "${SYSTEM}"; builder = "/bin/sh"; args = [ "-c" "echo \${toString leaves} > $out" ]; }`,
  chain: `let step = n: prev: derivation { name = "chain-\${toString n}"; system = "${SYSTEM}"; builder = "/bin/sh";
      args = [ "-c" "echo \${toString n} \${if prev == null then "" else prev} > $out" ]; };
    go = n: if n == 0 then null else step n (go (n - 1));
in go ${CHAIN}`,
};

interface Env {
  dir: string;
  root: string;
  env: NodeJS.ProcessEnv;
}

function makeEnv(base: string, tag: string): Env {
  const dir = join(base, tag);
  const conf = join(dir, 'conf');
  mkdirSync(conf, { recursive: true });
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  writeFileSync(
    join(conf, 'nix.conf'),
    ['build-users-group =', 'sandbox = true', 'sandbox-fallback = false', 'substituters =', `sandbox-paths = /bin/sh=${BUSYBOX}`, 'experimental-features = nix-command', ''].join('\n'),
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NIX_CONF_DIR: conf,
    HOME: join(dir, 'home'),
    TMPDIR: join(dir, 'tmp'),
    XDG_CONFIG_HOME: join(dir, 'xdg'),
    DRVBOX_CONFIG: '',
    DRVBOX_STORE: '',
  };
  delete env.NIX_REMOTE;
  return { dir, root: join(dir, 'root'), env };
}

interface Ran {
  ms: number;
  stdout: Buffer;
  stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, input?: Buffer): Ran {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, input, maxBuffer: 1 << 30 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 4).join(' ')} failed (${r.status}): ${String(r.stderr).slice(-2000)}`);
  return { ms, stdout: r.stdout, stderr: String(r.stderr) };
}

/** CPU (user+sys, ms) of reaped children so far: spawnSync children and everything they reaped. */
function childCpuMs(): number {
  // Children's times come from /proc/self/stat (cutime, cstime): reaped descendants, builders included
  // when their parents waited for them.
  const stat = readFileSync('/proc/self/stat', 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[13]) + Number(f[14]); // cutime, cstime (fields 16, 17)
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

function instantiate(e: Env, scenario: string): string {
  const file = join(e.dir, `${scenario}.nix`);
  writeFileSync(file, EXPR[scenario]!);
  return run('nix-instantiate', ['--store', e.root, file], e.env).stdout.toString().trim();
}

interface Sample {
  ms: number;
  cpuMs: number;
}

function nixRun(base: string, scenario: string, i: number): Sample {
  const e = makeEnv(base, `nix-${scenario}-${i}`);
  const drv = instantiate(e, scenario);
  const c0 = childCpuMs();
  const b = run('nix-build', ['--store', e.root, '--no-out-link', '-j', String(JOBS), drv], e.env);
  const cpuMs = childCpuMs() - c0;
  rmSync(e.dir, { recursive: true, force: true });
  return { ms: b.ms, cpuMs };
}

interface DrvboxOpts {
  oneShot?: boolean;
  noSeccomp?: boolean;
  jobs?: number;
  profileDir?: string;
}

function drvboxRun(base: string, scenario: string, tag: string, o: DrvboxOpts = {}): Sample {
  const e = makeEnv(base, `drvbox-${scenario}-${tag}`);
  const drv = instantiate(e, scenario);
  const closure = run('nix-store', ['--store', e.root, '-qR', drv], e.env).stdout.toString().trim().split('\n');
  const exported = run('nix-store', ['--store', e.root, '--export', ...closure], e.env).stdout;
  const dxRoot = join(e.dir, 'dx-root');
  run(process.execPath, [CLI, '--store', dxRoot, 'store', 'import'], e.env, exported);
  const env = { ...e.env, ...(o.oneShot ? { DRVBOX_LAUNCHER_ONESHOT: '1' } : {}) };
  const args = [
    ...(o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`] : []),
    CLI, '--store', dxRoot, 'build', '-j', String(o.jobs ?? JOBS), '--quiet',
    '--option', 'sandbox', 'true', '--option', 'sandbox-fallback', 'false', '--option', 'sandbox-paths', `/bin/sh=${BUSYBOX}`,
    ...(o.noSeccomp ? ['--option', 'filter-syscalls', 'false'] : []),
    drv,
  ];
  const c0 = childCpuMs();
  const b = run(process.execPath, args, env);
  const cpuMs = childCpuMs() - c0;
  rmSync(e.dir, { recursive: true, force: true });
  return { ms: b.ms, cpuMs };
}

const round = (x: number): number => Math.round(x * 10) / 10;

function main(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build'`);
  if (process.platform !== 'linux') throw new Error('the sandboxed DAG bench needs Linux');
  const base = mkdtempSync(join(tmpdir(), 'drvbox-bench-dag-sandbox-'));
  try {
    const results: Record<string, { nix: Sample[]; drvbox: Sample[] }> = {};
    for (const scenario of ['wide', 'chain']) {
      const r = (results[scenario] = { nix: [] as Sample[], drvbox: [] as Sample[] });
      for (let i = 0; i < RUNS; i++) {
        const order = i % 2 === 0 ? (['nix', 'drvbox'] as const) : (['drvbox', 'nix'] as const);
        for (const who of order) r[who].push(who === 'nix' ? nixRun(base, scenario, i) : drvboxRun(base, scenario, String(i)));
      }
    }
    const summary = (r: { nix: Sample[]; drvbox: Sample[] }) => ({
      nixMs: round(median(r.nix.map((s) => s.ms))),
      drvboxMs: round(median(r.drvbox.map((s) => s.ms))),
      ratio: Math.round((median(r.drvbox.map((s) => s.ms)) / median(r.nix.map((s) => s.ms))) * 100) / 100,
      nixTreeCpuMs: round(median(r.nix.map((s) => s.cpuMs))),
      drvboxTreeCpuMs: round(median(r.drvbox.map((s) => s.cpuMs))),
      nixRunsMs: r.nix.map((s) => round(s.ms)),
      drvboxRunsMs: r.drvbox.map((s) => round(s.ms)),
    });
    const report: Record<string, unknown> = {
      host: { cpus: cpus().length, kernel: release(), node: process.version, loadavg: loadavg().map((x) => Math.round(x * 100) / 100) },
      settings: { runs: RUNS, jobs: JOBS, wide: WIDE, chain: CHAIN, target: 'drvbox <= 0.6x Nix' },
      wide: summary(results.wide!),
      chain: summary(results.chain!),
    };
    if (VARIANTS) {
      const n = Math.max(3, Math.min(RUNS, 5));
      const variant = (o: DrvboxOpts) => round(median(Array.from({ length: n }, (_, i) => drvboxRun(base, 'wide', `v${i}-${JSON.stringify(o).length}`, o).ms)));
      const baseline = round(median(results.wide!.drvbox.map((s) => s.ms)));
      const serialDrvbox = variant({ jobs: 1 });
      const serialNix = round(median(Array.from({ length: n }, (_, i) => {
        const e = makeEnv(base, `nix-serial-${i}`);
        const drv = instantiate(e, 'wide');
        const ms = run('nix-build', ['--store', e.root, '--no-out-link', '-j', '1', drv], e.env).ms;
        rmSync(e.dir, { recursive: true, force: true });
        return ms;
      })));
      const nodeBare = round(median(Array.from({ length: 5 }, () => run(process.execPath, ['-e', '0'], process.env).ms)));
      const profileDir = join(base, 'profile');
      drvboxRun(base, 'wide', 'prof', { profileDir });
      const prof = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
      report.wideVariantsMs = {
        baseline,
        oneLauncherPerBuild: variant({ oneShot: true }),
        noSeccomp: variant({ noSeccomp: true }),
        drvboxJ1: serialDrvbox,
        nixJ1: serialNix,
        drvboxPerDerivationJ1: round(serialDrvbox / (WIDE + 1)),
        nixPerDerivationJ1: round(serialNix / (WIDE + 1)),
        nodeStartupMs: nodeBare,
      };
      if (prof) report.drvboxCpuProfileMs = summariseProfile(join(profileDir, prof), { byFile: true, top: 16 });
    }
    const text = JSON.stringify(report, null, 2);
    console.log(text);
    if (JSON_OUT) writeFileSync(JSON_OUT, text + '\n');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

main();
