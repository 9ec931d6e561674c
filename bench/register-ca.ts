// Registering a big content-addressed (floating) output with self-references:
// drvbox hashes it modulo its scratch hash part, computes its final path and
// rewrites the self-references while copying it into place, all streamed;
// Nix 2.8 holds the whole NAR in memory (several times over) for the same.
//
// The derivation (CA floating, recursive sha256) writes one file of
// --size-mb MiB: lines of --pad (4000) 'x' followed by its own $out, so a
// self-reference every ~4 KiB (65,000 for 256 MiB), with busybox:
//   yes "$(head -c 4000 /dev/zero | tr '\0' x)$out" | head -c SIZE > $out/big
// --pad 0 makes it lines of $out alone: 5.3 million self-references.
// drvbox runs the same builder unsandboxed (busybox sh, the env desugar
// gives), then registerOutputs in a fresh child process that reports its
// time and peak RSS (VmHWM). Nix builds the same .drv (isolated, --store
// under the temp dir) under /usr/bin/time; both must end at the same path.
//
//   node dist/bench/register-ca.js [--size-mb 256] [--pad 4000] [--no-nix] [--keep] [--json FILE]
// DRVBOX_BENCH_PROFILE=DIR writes a CPU profile of the registration there.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const REPO = join(SELF, '..', '..', '..');
const DIST = join(REPO, 'dist');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

/** The builder: lines of `pad` 'x' then $out (pad 0: lines of $out alone, a self-reference every 50 bytes). */
function builderScript(sizeBytes: number, pad: number): string {
  const filler = pad > 0 ? `$(head -c ${pad} /dev/zero | tr '\\0' x)` : '';
  return `mkdir -p $out; yes "${filler}$out" | head -c ${sizeBytes} > $out/big; echo "$out" > $out/small`;
}

function expr(script: string): string {
  return `derivation {
    name = "big-ca"; system = "x86_64-linux"; builder = "/bin/sh";
    __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256";
    args = [ "-c" ${JSON.stringify(script)} ];
  }`;
}

interface ChildResult {
  ms: number;
  hwmMB: number;
  path: string;
  narSize: number;
  references: string[];
}

/** The registration, alone in a fresh process (argv: --child <dir> <drvPath>). */
async function child(dir: string, drvPath: string): Promise<void> {
  const { LocalStore, storeSettingsFrom } = await import('../src/store/local-store.js');
  const { chrootLocation } = await import('../src/config/store-location.js');
  const { parseDerivation } = await import('../src/format/aterm.js');
  const { planOutputs } = await import('../src/build/output-plan.js');
  const { registerOutputs } = await import('../src/build/register.js');
  const store = await LocalStore.open(
    chrootLocation(join(dir, 'root'), '/nix/store', 'bench') as Parameters<typeof LocalStore.open>[0],
    storeSettingsFrom(null),
  );
  const drv = parseDerivation(readFileSync(join(dir, 'drv')), 'big-ca');
  const plan = planOutputs({ storeDir: '/nix/store', drvPath, drv, needsHashRewrite: true, mode: 'normal', pathExists: () => false });
  const t0 = performance.now();
  const res = await registerOutputs({
    store,
    drvPath,
    drv,
    plan,
    mode: 'normal',
    realPathOf: (p) => store.toRealPath(p),
    inputClosure: new Set(),
    addedPaths: new Set(),
    structuredAttrs: null,
    settings: { autoOptimise: false, keepFailed: false, diffHook: '', runDiffHook: false },
    log() {},
  });
  const ms = performance.now() - t0;
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
  const o = res.get('out')!;
  const r: ChildResult = { ms, hwmMB: hwm, path: o.path, narSize: o.info.narSize, references: o.info.references };
  process.stdout.write(JSON.stringify(r) + '\n');
  store.close();
}

async function main(): Promise<void> {
  const sizeMB = arg('size-mb', 256);
  const size = sizeMB * 1024 * 1024;
  const pad = arg('pad', 4000);
  const script = builderScript(size, pad);
  const useNix = !flag('no-nix') && spawnSync('sh', ['-c', 'command -v nix-build']).status === 0;
  const dir = mkdtempSync(join(tmpdir(), 'drvbox-bench-register-ca-'));
  const results: Record<string, unknown> = { sizeMB, selfReferenceEvery: pad + 50, node: process.version, kernel: release(), cpu: cpus()[0]?.model };
  try {
    // The .drv: from Nix when it is there (same path as Nix builds), else written by drvbox.
    const { parseDerivation, printDerivation } = await import('../src/format/aterm.js');
    const { completeDerivation } = await import('../src/format/hash-modulo.js');
    let drvPath: string;
    const nixRoot = join(dir, 'nix-root');
    const nixEnv = { ...process.env, NIX_CONF_DIR: join(dir, 'nix-conf'), HOME: join(dir, 'nix-home'), NIX_PATH: '' };
    if (useNix) {
      mkdirSync(nixEnv.NIX_CONF_DIR, { recursive: true });
      writeFileSync(
        join(nixEnv.NIX_CONF_DIR, 'nix.conf'),
        'build-users-group =\nsandbox = true\nsubstituters =\nsandbox-paths = /bin/sh=/usr/bin/busybox\nexperimental-features = nix-command ca-derivations\n',
      );
      writeFileSync(join(dir, 'big.nix'), expr(script));
      const r = spawnSync('nix-instantiate', ['--store', nixRoot, join(dir, 'big.nix')], { env: nixEnv, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`nix-instantiate failed: ${r.stderr}`);
      drvPath = r.stdout.trim();
      writeFileSync(join(dir, 'drv'), readFileSync(join(nixRoot, drvPath)));
    } else {
      const { hashPlaceholder } = await import('../src/format/store-path.js');
      const done = completeDerivation(
        {
          name: 'big-ca',
          outputs: new Map([['out', { kind: 'caFloating', method: 'recursive', hashAlgo: 'sha256' }]]),
          inputDrvs: new Map(),
          inputSrcs: new Set(),
          platform: 'x86_64-linux',
          builder: '/bin/sh',
          args: ['-c', script],
          env: new Map([
            ['__contentAddressed', '1'],
            ['builder', '/bin/sh'],
            ['name', 'big-ca'],
            ['out', hashPlaceholder('out')],
            ['outputHashAlgo', 'sha256'],
            ['outputHashMode', 'recursive'],
            ['system', 'x86_64-linux'],
          ]),
        },
        { storeDir: '/nix/store', resolve: () => undefined },
      );
      drvPath = done.drvPath;
      writeFileSync(join(dir, 'drv'), printDerivation(done.drv));
    }
    const drv = parseDerivation(readFileSync(join(dir, 'drv')), 'big-ca');

    // drvbox: the builder, unsandboxed, with the env desugar gives.
    const { LocalStore, storeSettingsFrom } = await import('../src/store/local-store.js');
    const { chrootLocation } = await import('../src/config/store-location.js');
    const { planOutputs } = await import('../src/build/output-plan.js');
    const { desugar } = await import('../src/build/desugar.js');
    const store = await LocalStore.open(
      chrootLocation(join(dir, 'root'), '/nix/store', 'bench') as Parameters<typeof LocalStore.open>[0],
      storeSettingsFrom(null),
    );
    const plan = planOutputs({ storeDir: '/nix/store', drvPath, drv, needsHashRewrite: true, mode: 'normal', pathExists: () => false });
    const buildDir = join(dir, 'build');
    mkdirSync(buildDir);
    const d = desugar({ storeDir: '/nix/store', drvPath, drv, plan, buildDirSandbox: buildDir, cores: 1, callerEnv: {}, closureInfos: () => [] });
    store.close();
    // The builder writes the logical scratch path; here it lives under the store root.
    const scratch = plan.outputs.get('out')!.scratchPath;
    const realScratch = join(dir, 'root') + scratch;
    const env = Object.fromEntries(d.env);
    const run = d.args[1]!.replace('mkdir -p $out;', `mkdir -p ${realScratch};`).replace('> $out/big', `> ${realScratch}/big`).replace('> $out/small', `> ${realScratch}/small`);
    let t0 = performance.now();
    const b = spawnSync('/usr/bin/busybox', ['sh', '-c', run], { env, cwd: buildDir, encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`builder failed: ${b.stderr}`);
    const builderMs = performance.now() - t0;
    const prof = process.env.DRVBOX_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.DRVBOX_BENCH_PROFILE}`] : [];
    const c = spawnSync(process.execPath, [...prof, SELF, '--child', dir, drvPath], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (c.status !== 0) throw new Error(`register child failed: ${c.stderr}`);
    const reg = JSON.parse(c.stdout.trim().split('\n').pop()!) as ChildResult;
    results.drvbox = { builderMs: Math.round(builderMs), registerMs: Math.round(reg.ms), totalMs: Math.round(builderMs + reg.ms), peakRssMB: +reg.hwmMB.toFixed(1), path: reg.path, narSize: reg.narSize, references: reg.references };
    console.log(`drvbox: builder ${builderMs.toFixed(0)} ms, registerOutputs ${reg.ms.toFixed(0)} ms, peak RSS ${reg.hwmMB.toFixed(1)} MiB -> ${reg.path}`);

    if (useNix) {
      t0 = performance.now();
      const n = spawnSync('/usr/bin/time', ['-f', 'TIME %e %M', 'nix-build', '--store', nixRoot, join(dir, 'big.nix'), '--no-out-link'], {
        env: nixEnv,
        encoding: 'utf8',
        maxBuffer: 1 << 24,
      });
      const wall = performance.now() - t0;
      if (n.status !== 0) throw new Error(`nix-build failed: ${n.stderr.slice(-2000)}`);
      const m = /TIME (\S+) (\d+)/.exec(n.stderr)!;
      const nixPath = n.stdout.trim();
      results.nix = { totalMs: Math.round(wall), peakRssMB: +(Number(m[2]) / 1024).toFixed(1), path: nixPath };
      console.log(`nix 2.8: nix-build ${wall.toFixed(0)} ms (builder included), peak RSS ${(Number(m[2]) / 1024).toFixed(1)} MiB -> ${nixPath}`);
      results.samePath = nixPath === reg.path;
      if (nixPath !== reg.path) console.log('WARNING: drvbox and Nix registered different paths');
    }
  } finally {
    if (!flag('keep')) {
      spawnSync('chmod', ['-R', 'u+w', dir]);
      rmSync(dir, { recursive: true, force: true });
    } else console.log(`kept ${dir}`);
  }
  const jsonAt = process.argv.indexOf('--json');
  if (jsonAt >= 0) writeFileSync(process.argv[jsonAt + 1]!, JSON.stringify(results, null, 2) + '\n');
  console.log(JSON.stringify(results));
}

if (process.argv[2] === '--child') await child(process.argv[3]!, process.argv[4]!);
else await main();
