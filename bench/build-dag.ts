// Whole builds, drvbox vs Nix 2.8, side by side in one run, both unsandboxed:
//   wide   100 trivial leaves + 1 root that depends on all of them
//   chain  30 trivial derivations, each depending on the previous one
//   noop   the wide DAG again, everything valid (start-up + planning)
// Each run uses fresh stores; the order alternates (Nix first, then drvbox
// first) so that drift on a busy machine hits both. Derivations come from
// nix-instantiate with each tool's own store dir (drvbox gets them through
// `nix-store --export` | `drvbox store import`, not timed). Only the build
// command is timed. With --profile the drvbox no-op runs under
// `node --cpu-prof` and the profile is summarised by where the time goes.
//
//   node dist/bench/build-dag.js [--runs 5] [--jobs 2] [--wide 100] [--chain 30] [--profile] [--json FILE]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summariseProfileDir } from './lib/profile.js';
import { median } from './lib/stats.js';

const SELF = fileURLToPath(import.meta.url);
const REPO = join(SELF, '..', '..', '..');
const CLI = join(REPO, 'dist', 'src', 'cli', 'main.js');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const RUNS = arg('runs', 5);
const JOBS = arg('jobs', 2);
const WIDE = arg('wide', 100);
const CHAIN = arg('chain', 30);
const PROFILE = process.argv.includes('--profile');
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
  storeDir: string;
  nixConf: string;
  env: NodeJS.ProcessEnv;
}

function makeEnv(root: string, tag: string): Env {
  const dir = join(root, tag);
  const nixConf = join(dir, 'conf');
  mkdirSync(nixConf, { recursive: true });
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  writeFileSync(join(nixConf, 'nix.conf'), 'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command\n');
  const env: NodeJS.ProcessEnv = { ...process.env, NIX_CONF_DIR: nixConf, HOME: join(dir, 'home'), TMPDIR: join(dir, 'tmp'), XDG_CONFIG_HOME: join(dir, 'xdg'), DRVBOX_CONFIG: '', DRVBOX_STORE: '' };
  delete env.NIX_REMOTE;
  return { dir, storeDir: join(dir, 'store'), nixConf, env };
}

function nixStoreUri(e: Env, stateTag: string): string {
  return `local?store=${e.storeDir}&state=${join(e.dir, stateTag, 'nix')}&log=${join(e.dir, stateTag, 'log')}`;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, input?: Buffer): { ms: number; stdout: Buffer; stderr: string; status: number | null } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, input, maxBuffer: 1 << 30 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 4).join(' ')} failed (${r.status}): ${String(r.stderr).slice(-2000)}`);
  return { ms, stdout: r.stdout, stderr: String(r.stderr), status: r.status };
}

function instantiate(e: Env, uri: string, scenario: string): string {
  const file = join(e.dir, `${scenario}.nix`);
  writeFileSync(file, EXPR[scenario]!);
  return run('nix-instantiate', ['--store', uri, file], e.env).stdout.toString().trim();
}

/** One Nix build of `scenario` in a fresh store; returns [build ms, no-op ms]. */
function nixRun(root: string, scenario: string, i: number): [number, number] {
  const e = makeEnv(root, `nix-${scenario}-${i}`);
  const uri = nixStoreUri(e, 'state');
  const drv = instantiate(e, uri, scenario);
  const args = ['--store', uri, '--no-out-link', '-j', String(JOBS), '--option', 'sandbox', 'false', drv];
  const build = run('nix-build', args, e.env).ms;
  const noop = run('nix-build', args, e.env).ms;
  rmSync(e.dir, { recursive: true, force: true });
  return [build, noop];
}

/** One drvbox build; derivations come from nix-instantiate through an export. */
function drvboxRun(root: string, scenario: string, i: number, profileDir: string | null): [number, number] {
  const e = makeEnv(root, `drvbox-${scenario}-${i}`);
  const uri = nixStoreUri(e, 'nix-scratch');
  const drv = instantiate(e, uri, scenario);
  const closure = run('nix-store', ['--store', uri, '-qR', drv], e.env).stdout.toString().trim().split('\n');
  const exported = run('nix-store', ['--store', uri, '--export', ...closure], e.env).stdout;
  rmSync(e.storeDir, { recursive: true, force: true });
  run(process.execPath, [CLI, '--store-dir', e.storeDir, 'store', 'import'], e.env, exported);
  const args = [CLI, '--store-dir', e.storeDir, 'build', '-j', String(JOBS), '--sandbox', 'false', '--quiet', drv];
  const build = run(process.execPath, args, e.env).ms;
  const noop = run(process.execPath, args, e.env).ms;
  if (profileDir) run(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, ...args], e.env);
  rmSync(e.dir, { recursive: true, force: true });
  return [build, noop];
}

function main(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build'`);
  const root = mkdtempSync(join(tmpdir(), 'drvbox-bench-dag-'));
  const results: Record<string, { nix: number[]; drvbox: number[]; nixNoop: number[]; drvboxNoop: number[] }> = {};
  const profileDir = PROFILE ? join(root, 'profiles') : null;
  try {
    for (const scenario of ['wide', 'chain']) {
      const r = (results[scenario] = { nix: [] as number[], drvbox: [] as number[], nixNoop: [] as number[], drvboxNoop: [] as number[] });
      for (let i = 0; i < RUNS; i++) {
        const order = i % 2 === 0 ? (['nix', 'drvbox'] as const) : (['drvbox', 'nix'] as const);
        for (const who of order) {
          const [b, n] = who === 'nix' ? nixRun(root, scenario, i) : drvboxRun(root, scenario, i, scenario === 'wide' && i === 0 ? profileDir : null);
          r[who].push(b);
          r[who === 'nix' ? 'nixNoop' : 'drvboxNoop'].push(n);
        }
      }
    }
    const nodeBare = median(Array.from({ length: 5 }, () => run(process.execPath, ['-e', '0'], process.env).ms));
    const report = {
      host: { cpus: cpus().length, kernel: release(), node: process.version, loadavg: loadavg().map((x) => Math.round(x * 100) / 100) },
      settings: { runs: RUNS, jobs: JOBS, wide: WIDE, chain: CHAIN },
      wide: summary(results.wide!),
      chain: summary(results.chain!),
      noopWide: {
        nixMs: round(median(results.wide!.nixNoop)),
        drvboxMs: round(median(results.wide!.drvboxNoop)),
        ratio: round(median(results.wide!.drvboxNoop) / median(results.wide!.nixNoop)),
        nodeStartupMs: round(nodeBare),
        ...(profileDir && existsSync(profileDir)
          ? { cpuProfileMs: summariseProfileDir(profileDir) }
          : {}),
      },
    };
    const text = JSON.stringify(report, null, 2);
    console.log(text);
    if (JSON_OUT) writeFileSync(JSON_OUT, text + '\n');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

function summary(r: { nix: number[]; drvbox: number[] }) {
  return {
    nixMs: round(median(r.nix)),
    drvboxMs: round(median(r.drvbox)),
    ratio: round(median(r.drvbox) / median(r.nix)),
    nixRunsMs: r.nix.map(round),
    drvboxRunsMs: r.drvbox.map(round),
  };
}

main();
