// Launch cost of the Linux sandbox, side by side in one run:
//   drvbox       start() -> builder exec (status EOF) and -> exit, launcher server
//   drvbox-1shot the same with one launcher process spawned per build
//   bwrap        `bwrap --unshare-all ...` of an equivalent sandbox running `true`
//                (read-only inputs, build dir, busybox as /bin/sh, fresh /proc,
//                minimal /dev, tmpfs /tmp, uid 1000, hostname, seccomp program)
//   unshare      `unshare -Urmpiun --fork true`
// Everything is spawned from this node process, as drvbox would. Variants
// run interleaved so machine noise hits them alike; medians are reported.
//   node dist/bench/sandbox-launch.js [iterations]
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackendSettings, BuildRequest } from '../backends/backend.js';
import { compileSeccomp, linuxBackend, localPlanHost, type LinuxSandboxSpec } from '../backends/linux/index.js';

const BUSYBOX = '/usr/bin/busybox';

export interface LaunchResult {
  name: string;
  /** Median milliseconds from start to the builder's exec, when observable. */
  toExecMs: number | null;
  /** Median milliseconds from start to the builder's exit. */
  toExitMs: number;
  samples: number;
  /** Every start -> exit sample, ms. */
  exitSamples: number[];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function waitExit(child: ReturnType<typeof spawn>): Promise<number | null> {
  return new Promise((res) => child.once('exit', (code) => res(code)));
}

export async function benchSandboxLaunch(iterations = 100, warmup = 10): Promise<LaunchResult[]> {
  const unsharePath = which('unshare');
  const root = mkdtempSync(join(tmpdir(), 'drvbox-bench-'));
  const store = join(root, 'store');
  const build = join(root, 'build');
  mkdirSync(store);
  mkdirSync(build, { mode: 0o700 });
  const inputs: string[] = [];
  for (const c of ['b', 'c', 'e']) {
    const name = `${c.repeat(32)}-input`;
    mkdirSync(join(store, name));
    writeFileSync(join(store, name, 'f'), 'x');
    inputs.push(`/nix/store/${name}`);
  }
  const settings: BackendSettings = {
    sandboxBuildDir: '/build',
    sandboxDevShmSize: '50%',
    filterSyscalls: true,
    allowNewPrivileges: false,
    useCgroups: false,
    darwinLogSandboxViolations: false,
    sandboxFallback: false,
  };
  const out = `/nix/store/${'a'.repeat(32)}-bench`;
  const request: BuildRequest = {
    drvPath: `/nix/store/${'d'.repeat(32)}-bench.drv`,
    drvName: 'bench',
    system: 'x86_64-linux',
    builder: '/bin/sh',
    args: ['-c', 'exit 0'],
    env: { out, PATH: '/path-not-set', HOME: '/homeless-shelter', NIX_BUILD_TOP: '/build', TMPDIR: '/build', PWD: '/build' },
    storeDir: '/nix/store',
    realStoreDir: store,
    buildDirHost: build,
    buildDirSandbox: '/build',
    inputPaths: inputs,
    scratchOutputs: { out },
    fixedOutput: false,
    sandboxPaths: [{ target: '/bin/sh', source: BUSYBOX, optional: false }],
    impureHostDeps: [],
    allowedImpureHostDeps: [],
    requiredSystemFeatures: [],
    additionalSandboxProfile: '',
    allowLocalNetworking: false,
    sandboxMode: 'true',
    settings,
    buildUser: null,
    daemonSocketHost: null,
  };
  const host = localPlanHost();
  const bpf = compileSeccomp((linuxBackend.plan(request, host) as LinuxSandboxSpec).seccomp!).bpf;
  const bpfFile = join(root, 'seccomp.bpf');
  writeFileSync(bpfFile, bpf);

  const samples = new Map<string, { exec: number[]; exit: number[] }>();
  const add = (name: string, exec: number | null, exit: number): void => {
    const s = samples.get(name) ?? { exec: [], exit: [] };
    if (exec !== null) s.exec.push(exec);
    s.exit.push(exit);
    samples.set(name, s);
  };

  const drvbox = async (name: string, oneShot: boolean, record: boolean): Promise<void> => {
    process.env.DRVBOX_LAUNCHER_ONESHOT = oneShot ? '1' : '0';
    const spec = linuxBackend.plan(request, host);
    const t0 = performance.now();
    const b = await linuxBackend.start(spec);
    const t1 = performance.now();
    b.log.resume();
    const st = await b.wait();
    const t2 = performance.now();
    if (st.code !== 0) throw new Error(`${name}: builder failed ${JSON.stringify(st)}`);
    await linuxBackend.cleanup(spec);
    if (record) add(name, t1 - t0, t2 - t0);
  };

  const bwrapPath = which('bwrap');
  const bwrapArgs = [
    '--unshare-all',
    '--die-with-parent',
    '--new-session',
    '--uid', '1000',
    '--gid', '100',
    '--hostname', 'localhost',
    '--tmpfs', '/',
    ...inputs.flatMap((p) => ['--ro-bind', join(store, p.slice('/nix/store/'.length)), p]),
    '--bind', build, '/build',
    '--ro-bind', BUSYBOX, '/bin/sh',
    '--proc', '/proc',
    '--dev', '/dev',
    '--tmpfs', '/tmp',
    '--remount-ro', '/',
    '--chdir', '/build',
    '--clearenv',
    '--setenv', 'out', out,
    '--seccomp', '3',
    '/bin/sh', '-c', 'exit 0',
  ];
  const bwrap = async (record: boolean): Promise<void> => {
    const fd = openSync(bpfFile, 'r');
    const t0 = performance.now();
    const c = spawn(bwrapPath!, bwrapArgs, { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let err = '';
    c.stderr!.on('data', (d) => (err += d));
    const code = await waitExit(c);
    const t1 = performance.now();
    closeSync(fd);
    if (code !== 0) throw new Error(`bwrap failed (${code}): ${err}`);
    if (record) add('bwrap --unshare-all (equivalent sandbox)', null, t1 - t0);
  };
  const unshare = async (record: boolean): Promise<void> => {
    const t0 = performance.now();
    const c = spawn('unshare', ['-Urmpiun', '--fork', 'true'], { stdio: 'ignore' });
    const code = await waitExit(c);
    const t1 = performance.now();
    if (code !== 0) throw new Error(`unshare failed (${code})`);
    if (record) add('unshare -Urmpiun --fork true', null, t1 - t0);
  };

  try {
    for (let i = 0; i < warmup + iterations; i++) {
      const record = i >= warmup;
      await drvbox('drvbox (launcher server)', false, record);
      await drvbox('drvbox (one launcher per build)', true, record);
      if (bwrapPath) await bwrap(record);
      if (unsharePath) await unshare(record);
    }
  } finally {
    delete process.env.DRVBOX_LAUNCHER_ONESHOT;
    rmSync(root, { recursive: true, force: true });
  }
  return [...samples].map(([name, s]) => ({
    name,
    toExecMs: s.exec.length ? median(s.exec) : null,
    toExitMs: median(s.exit),
    samples: s.exit.length,
    exitSamples: s.exit,
  }));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const n = Number(process.argv[2] ?? 100);
  const results = await benchSandboxLaunch(n);
  console.log(`sandbox launch, ${n} iterations each, uid ${process.getuid?.()}, medians:`);
  for (const r of results) {
    console.log(`  ${r.name.padEnd(42)} start->exec ${r.toExecMs === null ? '   n/a' : r.toExecMs.toFixed(2).padStart(6)} ms   start->exit ${r.toExitMs.toFixed(2).padStart(6)} ms`);
  }
}
