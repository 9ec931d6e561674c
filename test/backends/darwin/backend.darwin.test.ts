// Real sandboxed builds on macOS (the GitHub Actions macOS job): the Backend
// driven directly with hand-made BuildRequests and /bin/sh as the builder.
// Platform-only: test/run.mjs lists this file as not run on other systems.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import type { PlanHost, SandboxPathMapping } from '../../../backends/backend.js';
import { createDarwinBackend } from '../../../backends/darwin/darwin-backend.js';
import { chooseDarwinBuildDir } from '../../../backends/darwin/build-dir.js';
import { darwinDoctorFacts, hostDarwinFacts } from '../../../backends/darwin/doctor.js';
import type { DarwinBuildRequest, DarwinSandboxSpec } from '../../../backends/darwin/plan.js';
import { bindSysv, listSysvObjects } from '../../../backends/darwin/sysv-ipc.js';
import { tempDir } from '../../helpers/tmp.js';
import { HostPreconditionError } from '../../helpers/host.js';
import { SETTINGS, storePath } from './fixtures.js';

function requireDarwin(): void {
  if (process.platform !== 'darwin') throw new HostPreconditionError('cannot run on this host: needs macOS (sandbox-exec)');
}

const realHost: PlanHost = {
  platform: 'darwin',
  arch: process.arch,
  lstat(p) {
    try {
      const st = lstatSync(p);
      return st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
    } catch {
      return 'missing';
    }
  },
  realpath: (p) => realpathSync(p),
};

// What /bin/sh and the coreutils it runs need from the host.
const SYSTEM_PATHS: SandboxPathMapping[] = [
  ['/bin', false],
  ['/usr/bin', false],
  ['/usr/lib', false],
  ['/System/Library', false],
  ['/System/Volumes/Preboot/Cryptexes', true],
  ['/System/Cryptexes', true],
  ['/private/var/db/dyld', true],
  ['/private/var/db/timezone', true],
].map(([p, optional]) => ({ target: p as string, source: p as string, optional: optional as boolean }));

const NATIVE = process.arch === 'arm64' ? 'aarch64-darwin' : 'x86_64-darwin';

function setup(t: Parameters<typeof tempDir>[0], name: string, script: string, over: Partial<DarwinBuildRequest> = {}) {
  const root = realpathSync(tempDir(t));
  const storeDir = join(root, 'store');
  mkdirSync(storeDir);
  const out = storePath(`${name}-out`, name).replace('/nix/store', storeDir);
  const dir = chooseDarwinBuildDir({ parent: root, drvName: name, unique: 1 }).path;
  mkdirSync(dir, { mode: 0o700 });
  const req: DarwinBuildRequest = {
    drvPath: storePath(`${name}-drv`, `${name}.drv`).replace('/nix/store', storeDir),
    drvName: name,
    system: NATIVE,
    builder: '/bin/sh',
    args: ['-c', script],
    env: { out, PATH: '/bin:/usr/bin', HOME: '/homeless-shelter', TMPDIR: dir, NIX_BUILD_TOP: dir, REALHOME: process.env.HOME ?? '/Users' },
    storeDir,
    realStoreDir: storeDir,
    buildDirHost: dir,
    buildDirSandbox: dir,
    inputPaths: [],
    scratchOutputs: { out },
    fixedOutput: false,
    sandboxPaths: SYSTEM_PATHS,
    impureHostDeps: [],
    allowedImpureHostDeps: [],
    requiredSystemFeatures: [],
    additionalSandboxProfile: '',
    allowLocalNetworking: false,
    sandboxMode: 'true',
    settings: SETTINGS,
    buildUser: null,
    daemonSocketHost: null,
    globalTmpDir: '/tmp',
    ...over,
  };
  return { root, out, dir, req };
}

async function run(req: DarwinBuildRequest) {
  const b = createDarwinBackend();
  const spec = b.plan(req, realHost) as DarwinSandboxSpec;
  const running = await b.start(spec);
  const [log, status] = await Promise.all([text(running.log), running.wait()]);
  await b.cleanup(spec);
  return { log, status, spec };
}

describe('sandbox-exec builds (macOS)', () => {
  test('a trivial derivation builds its output', async (t) => {
    requireDarwin();
    const { out, req } = setup(t, 'trivial', 'echo hello; mkdir "$out"; echo hi > "$out/file"; pwd');
    const r = await run(req);
    assert.deepEqual(r.status, { code: 0, signal: null }, r.log);
    assert.equal(r.log, `hello\n${req.buildDirHost}\n`);
    assert.equal(readFileSync(join(out, 'file'), 'utf8'), 'hi\n');
  });

  test('a read outside the allowed paths fails, and so does a write', async (t) => {
    requireDarwin();
    const secretDir = realpathSync(tempDir(t));
    const secret = join(secretDir, 'secret');
    writeFileSync(secret, 'top secret\n');
    const { out, req } = setup(t, 'denied', `cat ${JSON.stringify(secret)} || echo "read denied"; echo x > ${JSON.stringify(join(secretDir, 'new'))} || echo "write denied"; ls "$REALHOME" >/dev/null 2>&1 || echo "home denied"; exit 7`);
    const r = await run(req);
    assert.deepEqual(r.status, { code: 7, signal: null });
    assert.ok(!r.log.includes('top secret'), r.log);
    assert.match(r.log, /Operation not permitted/);
    assert.match(r.log, /read denied\n/);
    assert.match(r.log, /write denied\n/);
    assert.match(r.log, /home denied\n/);
    assert.equal(existsSync(join(secretDir, 'new')), false);
    assert.equal(existsSync(out), false);
  });

  test('a fixed-output derivation may resolve names; an ordinary one may not', async (t) => {
    requireDarwin();
    const script = 'cat /etc/hosts > /dev/null && echo resolvable > "$out"';
    const fod = setup(t, 'fixed', script, { fixedOutput: true });
    const r1 = await run(fod.req);
    assert.deepEqual(r1.status, { code: 0, signal: null }, r1.log);
    assert.equal(readFileSync(fod.out, 'utf8'), 'resolvable\n');
    const plain = setup(t, 'unfixed', script);
    const r2 = await run(plain.req);
    assert.notEqual(r2.status.code, 0);
    assert.match(r2.log, /Operation not permitted/);
  });

  test('setuid bits cannot be set, even on outputs', async (t) => {
    requireDarwin();
    const { out, req } = setup(t, 'setuid', 'mkdir "$out"; cp /bin/echo "$out/e"; chmod u+s "$out/e" && echo set || echo refused');
    const r = await run(req);
    assert.match(r.log, /refused\n$/);
    assert.equal(lstatSync(join(out, 'e')).mode & 0o4000, 0);
  });

  test('a 5,000-path input closure is accepted by sandbox-exec (Nix issue 4119)', async (t) => {
    requireDarwin();
    const { root, out, req } = setup(t, 'big-closure', 'ls "$LAST" && echo ok > "$out"');
    const inputs = Array.from({ length: 5000 }, (_, i) => storePath(`dep-${i}`, `dependency-number-${i}-1.0`).replace('/nix/store', join(root, 'store')));
    for (const p of inputs) mkdirSync(p);
    writeFileSync(join(inputs[4999]!, 'marker'), '');
    const r = await run({ ...req, inputPaths: inputs, env: { ...req.env, LAST: inputs[4999]! } });
    assert.ok(!/pattern serialization length/.test(r.log), r.log);
    assert.deepEqual(r.status, { code: 0, signal: null }, r.log);
    assert.equal(r.log, 'marker\n');
    assert.equal(readFileSync(out, 'utf8'), 'ok\n');
    assert.ok(r.spec.groups.length > 20);
  });

  test('kill() stops the build and everything it started', async (t) => {
    requireDarwin();
    const { req } = setup(t, 'sleeper', 'sleep 100 & echo $!; sleep 100');
    const b = createDarwinBackend();
    const spec = b.plan(req, realHost);
    const running = await b.start(spec);
    const child = await new Promise<number>((resolve) => running.log.once('data', (c: Buffer) => resolve(Number(c.toString().trim()))));
    await running.kill();
    assert.deepEqual(await running.wait(), { code: null, signal: 'SIGKILL' });
    for (const pid of [running.pid, child]) assert.throws(() => process.kill(pid, 0), /ESRCH/);
    await b.cleanup(spec);
  });

  test('the builder runs with the architecture of its system', async (t) => {
    requireDarwin();
    const facts = darwinDoctorFacts(await hostDarwinFacts());
    const native = setup(t, 'arch-native', 'uname -m');
    const r = await run(native.req);
    assert.equal(r.log, NATIVE === 'aarch64-darwin' ? 'arm64\n' : 'x86_64\n');
    if (facts.hardware === 'arm64' && NATIVE === 'aarch64-darwin') {
      const x86 = setup(t, 'arch-x86', 'uname -m', { system: 'x86_64-darwin' });
      if (facts.rosettaInstalled) {
        const r2 = await run(x86.req);
        assert.equal(r2.log, 'x86_64\n');
      } else {
        await assert.rejects(run(x86.req), /EBADARCH|Rosetta/);
      }
    }
  });

  test('doctor reads the real SystemVersion.plist and finds sandbox-exec', async () => {
    requireDarwin();
    const f = darwinDoctorFacts(await hostDarwinFacts());
    assert.match(f.macos?.productVersion ?? '', /^\d+\.\d+/);
    assert.equal(f.sandboxExec, true);
    assert.ok(f.systems.includes(NATIVE));
  });

  test('System V objects are enumerated with the probed descriptor sizes', async () => {
    requireDarwin();
    const koffi = ((await import('koffi')) as unknown as { default: Parameters<typeof bindSysv>[0] & { load(p: string): { func(s: string): (...a: unknown[]) => unknown } } }).default;
    const lib = koffi.load('/usr/lib/libSystem.B.dylib');
    const shmget = lib.func('int shmget(int key, size_t size, int flag)');
    const msgget = lib.func('int msgget(int key, int flag)');
    const key = 0x4472000 + (process.pid & 0xfff);
    const IPC_CREAT = 0o1000;
    const shm = shmget(key, 4096, IPC_CREAT | 0o600) as number;
    const msg = msgget(key, IPC_CREAT | 0o600) as number;
    const sysv = bindSysv(koffi);
    try {
      assert.ok(shm >= 0 && msg >= 0, 'creating test objects failed');
      const mine = listSysvObjects(sysv).filter((o) => o.perm.key === key);
      assert.deepEqual(mine.map((o) => [o.kind, o.perm.uid]).sort(), [
        ['msg', process.getuid!()],
        ['shm', process.getuid!()],
      ]);
    } finally {
      if (shm >= 0) sysv.remove('shm', shm);
      if (msg >= 0) sysv.remove('msg', msg);
    }
  });
});
