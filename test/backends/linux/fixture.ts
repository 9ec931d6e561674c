// Hand-made BuildRequests for the Linux backend tests: a fake store dir with
// store-path-named entries, busybox as /bin/sh, a build dir, and helpers to
// run a shell script in the sandbox and collect what it printed.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackendSettings, BuildRequest } from '../../../backends/backend.js';
import { linuxBackend, localPlanHost, type LinuxSandboxSpec } from '../../../backends/linux/index.js';
import type { LinuxRunningBuild } from '../../../backends/linux/run.js';
import type { TestContext } from 'node:test';
import { requireLinux } from '../../helpers/host.js';
import { requireSandbox } from '../../helpers/sandbox.js';
import { removeTree } from '../../helpers/tmp.js';

export const BUSYBOX = '/usr/bin/busybox';
/** busybox as /bin/sh and as /bin/busybox: the sandbox-paths of most tests. */
export const BUSYBOX_PATHS = [
  { target: '/bin/sh', source: BUSYBOX, optional: false },
  { target: '/bin/busybox', source: BUSYBOX, optional: false },
];
export const STORE = '/nix/store';
export const HASH = (c: string): string => c.repeat(32);
export const OUT = `${STORE}/${HASH('a')}-probe`;
export const DRV = `${STORE}/${HASH('d')}-probe.drv`;

export const defaultSettings: BackendSettings = {
  sandboxBuildDir: '/build',
  sandboxDevShmSize: '50%',
  filterSyscalls: true,
  allowNewPrivileges: false,
  useCgroups: false,
  darwinLogSandboxViolations: false,
  sandboxFallback: false,
};

export interface Fixture {
  root: string;
  realStoreDir: string;
  buildDir: string;
  /** Creates a store path directory with one file; returns its logical path. */
  addStoreDir(name: string, file?: string, content?: string): string;
  addStoreFile(name: string, content: string): string;
  request(script: string, over?: Partial<BuildRequest>): BuildRequest;
}

/** A fixture in a fresh dir; `owner` makes everything belong to that uid (unprivileged runs). */
/** makeFixture() for one test, removed when it ends. */
export function testFixture(t: TestContext): Fixture {
  requireLinux('namespace sandbox');
  const fx = makeFixture();
  t.after(() => removeTree(fx.root));
  return fx;
}

export function makeFixture(base?: string, owner?: { uid: number; gid: number }): Fixture {
  const root = mkdtempSync(join(base ?? tmpdir(), 'drvbox-linux-'));
  chmodSync(root, 0o755);
  const realStoreDir = join(root, 'store');
  const buildDir = join(root, 'build');
  mkdirSync(realStoreDir);
  mkdirSync(buildDir, { mode: 0o700 });
  if (owner) {
    for (const d of [root, realStoreDir, buildDir]) chownSync(d, owner.uid, owner.gid);
  }
  const own = (p: string): void => {
    if (owner) chownSync(p, owner.uid, owner.gid);
  };
  return {
    root,
    realStoreDir,
    buildDir,
    addStoreDir(name, file = 'content', content = 'hello\n') {
      const p = join(realStoreDir, name);
      mkdirSync(p);
      writeFileSync(join(p, file), content);
      own(p);
      own(join(p, file));
      return `${STORE}/${name}`;
    },
    addStoreFile(name, content) {
      const p = join(realStoreDir, name);
      writeFileSync(p, content);
      own(p);
      return `${STORE}/${name}`;
    },
    request(script, over = {}) {
      const env = {
        PATH: '/path-not-set',
        HOME: '/homeless-shelter',
        NIX_STORE: STORE,
        NIX_BUILD_CORES: '1',
        NIX_BUILD_TOP: '/build',
        TMPDIR: '/build',
        TEMPDIR: '/build',
        TMP: '/build',
        TEMP: '/build',
        PWD: '/build',
        NIX_LOG_FD: '2',
        TERM: 'xterm-256color',
        out: OUT,
        ...(over.env ?? {}),
      };
      return {
        drvPath: DRV,
        drvName: 'probe',
        system: 'x86_64-linux',
        builder: '/bin/sh',
        args: ['-c', script],
        storeDir: STORE,
        realStoreDir,
        buildDirHost: buildDir,
        buildDirSandbox: '/build',
        inputPaths: [],
        scratchOutputs: { out: OUT },
        fixedOutput: false,
        sandboxPaths: [{ target: '/bin/sh', source: BUSYBOX, optional: false }],
        impureHostDeps: [],
        allowedImpureHostDeps: [],
        requiredSystemFeatures: [],
        additionalSandboxProfile: '',
        allowLocalNetworking: false,
        sandboxMode: 'true',
        settings: { ...defaultSettings },
        buildUser: null,
        daemonSocketHost: null,
        ...over,
        env,
      };
    },
  };
}

export interface RunResult {
  code: number | null;
  signal: string | null;
  log: string;
  spec: LinuxSandboxSpec;
  outPath: string;
}

/** Plans, starts and waits for one build; leaves the chroot for inspection. */
export async function runBuild(req: BuildRequest, onStart?: (b: LinuxRunningBuild) => void | Promise<void>): Promise<RunResult> {
  await requireSandbox('a build in the Linux sandbox');
  const spec = linuxBackend.plan(req, localPlanHost()) as LinuxSandboxSpec;
  const b = (await linuxBackend.start(spec)) as LinuxRunningBuild;
  const chunks: Buffer[] = [];
  b.log.on('data', (c: Buffer) => chunks.push(c));
  const logDone = new Promise<void>((r) => b.log.once('close', () => r()));
  if (onStart) await onStart(b);
  const st = await b.wait();
  await logDone;
  return {
    code: st.code,
    signal: st.signal,
    log: Buffer.concat(chunks).toString('utf8'),
    spec,
    outPath: linuxBackend.realPathOfScratchOutput(spec, OUT),
  };
}
