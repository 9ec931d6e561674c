// Held sandboxes (Backend.startHeld): everything set up before the builder,
// store paths added and removed meanwhile, the builder run on release, and
// nothing left running when the sandbox is abandoned or drvbox dies.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from 'node:test';
import type { BuildRequest, RunningBuild } from '../../../backends/backend.js';
import {
  AddPathFailed,
  HeldBuildAbandoned,
  HeldBuildAlreadyReleased,
  HeldBuildNeedsServer,
  HeldBuildNotPlanned,
  LinuxHeldBuild,
  linuxBackend,
  localPlanHost,
  SandboxNulByte,
  SandboxSetupFailed,
  SandboxStorePathInvalid,
  type LinuxSandboxSpec,
} from '../../../backends/linux/index.js';
import { LinuxRunningBuild } from '../../../backends/linux/run.js';
import { requireLauncher } from '../../../backends/linux/launcher-path.js';
import { encodeRequest, Mode } from '../../../backends/linux/protocol.js';
import { launcherServer } from '../../../backends/linux/server.js';
import { REPO_ROOT } from '../../helpers/host.js';
import { requireSandbox } from '../../helpers/sandbox.js';
import { BUSYBOX_PATHS, DRV, HASH, STORE, testFixture, type Fixture } from './fixture.js';

before(() => requireSandbox('held builds in the Linux sandbox'));

const BB = BUSYBOX_PATHS;
const name = (c: string, n: string): string => `${HASH(c)}-${n}`;

const fixture = testFixture;

function request(fx: Fixture, script: string, over: Partial<BuildRequest> = {}): BuildRequest {
  return fx.request(`B=/bin/busybox; ${script}`, { sandboxPaths: BB, ...over });
}

function plan(req: BuildRequest): LinuxSandboxSpec {
  return linuxBackend.plan(req, localPlanHost()) as LinuxSandboxSpec;
}

async function held(t: TestContext, spec: LinuxSandboxSpec): Promise<LinuxHeldBuild> {
  const h = (await linuxBackend.startHeld!(spec)) as LinuxHeldBuild;
  t.after(async () => {
    await h.abandon();
    await linuxBackend.cleanup(spec);
  });
  return h;
}

async function finish(b: RunningBuild): Promise<{ code: number | null; log: string }> {
  const chunks: Buffer[] = [];
  b.log.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise((r) => b.log.once('close', r));
  const st = await b.wait();
  await closed;
  return { code: st.code, log: Buffer.concat(chunks).toString('utf8') };
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(20);
  return !alive(pid);
}

describe('held builds: release', () => {
  test('the builder runs once on release, with the env, argv and store of start(); nothing of it before', async (t) => {
    const fx = fixture(t);
    const dep = fx.addStoreDir(name('b', 'dep'));
    const script = 'echo ran >> /build/count; echo "$0 $#"; $B env; $B ls /nix/store; $B cat /proc/self/status | $B grep -E "^(Uid|NoNewPrivs|Seccomp):"';
    const plain = plan(request(fx, script, { inputPaths: [dep] }));
    const expected = await finish(await linuxBackend.start(plain));
    await linuxBackend.cleanup(plain);
    assert.equal(readFileSync(join(fx.buildDir, 'count'), 'utf8'), 'ran\n');
    writeFileSync(join(fx.buildDir, 'count'), '');

    const spec = plan(request(fx, script, { inputPaths: [dep], held: true }));
    assert.equal(spec.hold, true);
    assert.equal(spec.keepMountNamespace, true);
    const h = await held(t, spec);
    assert.deepEqual([...h.visible], [dep]);
    assert.ok(alive(h.sandboxPid), 'the init waits');
    await sleep(150);
    assert.equal(readFileSync(join(fx.buildDir, 'count'), 'utf8'), '', 'nothing of the builder ran while held');
    assert.match(readFileSync(`/proc/${h.sandboxPid}/cmdline`, 'utf8'), /drvbox-launcher/);
    const b = await h.release();
    assert.ok(b instanceof LinuxRunningBuild);
    assert.equal(b.sandboxPid, h.sandboxPid);
    assert.deepEqual([...b.visible], [dep]);
    const got = await finish(b);
    assert.deepEqual(got, expected);
    assert.equal(readFileSync(join(fx.buildDir, 'count'), 'utf8'), 'ran\n');
  });

  test('a builder that cannot be executed fails the build on release, as with start()', async (t) => {
    const fx = fixture(t);
    const h = await held(t, plan(request(fx, '', { builder: '/nope/builder', held: true })));
    const b = await h.release();
    assert.deepEqual(await finish(b), { code: 1, log: "error: executing '/nope/builder': No such file or directory\n" });
  });

  test('a sandbox that cannot be set up fails startHeld with the setup error', async (t) => {
    const fx = fixture(t);
    const spec = plan(request(fx, 'true', { held: true }));
    (spec as unknown as { cwd: string }).cwd = '/no/such/dir';
    t.after(() => linuxBackend.cleanup(spec));
    await assert.rejects(linuxBackend.startHeld!(spec), (e: unknown) => {
      assert.ok(e instanceof SandboxSetupFailed);
      assert.equal(e.message, `while setting up the build environment for '${DRV}': changing into '/no/such/dir': No such file or directory`);
      return true;
    });
  });

  test('explain says the sandbox is held', (t) => {
    const fx = fixture(t);
    assert.match(linuxBackend.explain(plan(request(fx, 'true', { held: true }))), /^held: the sandbox is set up ahead of its last inputs; the builder starts on release/m);
    assert.doesNotMatch(linuxBackend.explain(plan(request(fx, 'true'))), /^held/m);
  });
});

describe('held builds: paths added and removed while held', () => {
  test('addPaths: dirs, files and symlinks in one request are visible to the builder, read-only', async (t) => {
    const fx = fixture(t);
    const dir = fx.addStoreDir(name('b', 'late'), 'f', 'late dir\n');
    const file = fx.addStoreFile(name('c', 'latefile'), 'late file\n');
    symlinkSync('/nowhere', join(fx.realStoreDir, name('e', 'latelink')));
    const link = `${STORE}/${name('e', 'latelink')}`;
    const input = fx.addStoreDir(name('f', 'input'));
    const spec = plan(request(fx, `$B ls /nix/store; $B cat ${dir}/f ${file}; $B readlink ${link}; echo x >> ${file} || echo ro`, { inputPaths: [input], held: true }));
    const h = await held(t, spec);
    await h.addPaths([dir, file, link, input]); // the input: already visible, skipped
    assert.deepEqual([...h.visible].sort(), [dir, file, link, input].sort());
    await h.addPaths([dir]); // a no-op
    const r = await finish(await h.release());
    assert.equal(
      r.log,
      `${name('b', 'late')}\n${name('c', 'latefile')}\n${name('e', 'latelink')}\n${name('f', 'input')}\n` +
        `late dir\nlate file\n/nowhere\nsh: can't create ${file}: Read-only file system\nro\n`,
    );
  });

  test('removePaths: gone for the builder, not even a mount point, nor in its mount table', async (t) => {
    const fx = fixture(t);
    const dir = fx.addStoreDir(name('b', 'spec'));
    const file = fx.addStoreFile(name('c', 'specfile'), 'x\n');
    symlinkSync('/nowhere', join(fx.realStoreDir, name('e', 'speclink')));
    const link = `${STORE}/${name('e', 'speclink')}`;
    const kept = fx.addStoreDir(name('f', 'kept'), 'f', 'kept\n');
    const script =
      `for p in ${dir} ${file} ${link}; do if test -e $p || test -L $p; then echo "$p present"; else echo absent; fi; done; ` +
      `$B ls -a /nix/store; $B cat ${kept}/f; $B grep -c -E "${'b'.repeat(32)}|${'c'.repeat(32)}" /proc/self/mountinfo`;
    const spec = plan(request(fx, script, { inputPaths: [dir, file, link, kept], held: true }));
    const h = await held(t, spec);
    await h.removePaths([dir, file, link, `${STORE}/${name('a', 'never-there')}`]);
    assert.deepEqual([...h.visible], [kept]);
    assert.deepEqual(readdirSync(spec.chrootStoreDir), [name('f', 'kept')]);
    const r = await finish(await h.release());
    assert.equal(r.log, `absent\nabsent\nabsent\n.\n..\n${name('f', 'kept')}\nkept\n0\n`);
  });

  test('file mount points added while held are links to one empty file beside the store dir (no inode each), unseen inside', async (t) => {
    const fx = fixture(t);
    const f1 = fx.addStoreFile(name('b', 'one'), 'one\n');
    const f2 = fx.addStoreFile(name('c', 'two'), 'two\n');
    const spec = plan(request(fx, `$B cat ${f2}; $B ls -a / /nix/store`, { held: true }));
    const h = await held(t, spec);
    await h.addPaths([f1, f2]);
    const placeholder = join(dirname(spec.chrootStoreDir), '.mountpoint');
    const ph = statSync(placeholder);
    assert.deepEqual([ph.isFile(), ph.size, ph.nlink], [true, 0, 3]);
    for (const n of [name('b', 'one'), name('c', 'two')]) assert.equal(lstatSync(join(spec.chrootStoreDir, n)).ino, ph.ino);
    await h.removePaths([f1]);
    assert.equal(statSync(placeholder).nlink, 2);
    const r = await finish(await h.release());
    assert.equal(r.code, 0, r.log);
    assert.doesNotMatch(r.log, /mountpoint/);
    assert.match(r.log, new RegExp(`^two\n/:\n[^]*/nix/store:\n\.\n\.\.\n${name('c', 'two')}\n$`));
  });

  test('file inputs of the initial set-up get the same linked mount points, through the disk path under the bind', async (t) => {
    const fx = fixture(t);
    const f1 = fx.addStoreFile(name('b', 'one'), 'one\n');
    const f2 = fx.addStoreFile(name('c', 'two'), 'two\n');
    const dir = fx.addStoreDir(name('d', 'dir'), 'f', 'dir\n');
    const spec = plan(request(fx, `$B cat ${f1} ${f2} ${dir}/f; $B ls -a /nix/store`, { inputPaths: [f1, f2, dir], held: true }));
    const h = await held(t, spec);
    const ph = statSync(join(dirname(spec.chrootStoreDir), '.mountpoint'));
    assert.deepEqual([ph.isFile(), ph.size, ph.nlink], [true, 0, 3]);
    for (const n of [name('b', 'one'), name('c', 'two')]) assert.equal(lstatSync(join(spec.chrootStoreDir, n)).ino, ph.ino);
    assert.ok(lstatSync(join(spec.chrootStoreDir, name('d', 'dir'))).isDirectory());
    const r = await finish(await h.release());
    assert.equal(r.log, `one\ntwo\ndir\n.\n..\n${[name('b', 'one'), name('c', 'two'), name('d', 'dir')].sort().join('\n')}\n`);
  });

  test('a path removed and added again is visible again', async (t) => {
    const fx = fixture(t);
    const dir = fx.addStoreDir(name('b', 'again'), 'f', 'again\n');
    const h = await held(t, plan(request(fx, `$B cat ${dir}/f`, { inputPaths: [dir], held: true })));
    await h.removePaths([dir]);
    await h.addPaths([dir]);
    assert.deepEqual(await finish(await h.release()), { code: 0, log: 'again\n' });
  });

  test('additions that fail name the derivation and the path, and add nothing of the request', async (t) => {
    const fx = fixture(t);
    const good = fx.addStoreDir(name('b', 'good'));
    const missing = `${STORE}/${name('c', 'missing')}`;
    const spec = plan(request(fx, 'true', { held: true }));
    const h = await held(t, spec);
    await assert.rejects(h.addPaths([good, missing]), (e: unknown) => {
      assert.ok(e instanceof AddPathFailed);
      assert.equal(
        e.message,
        `derivation '${DRV}': could not add path '${missing}' to the sandbox: getting attributes of path '${fx.realStoreDir}/${name('c', 'missing')}': No such file or directory`,
      );
      return true;
    });
    assert.deepEqual([...h.visible], []);
    assert.deepEqual(readdirSync(spec.chrootStoreDir), []);
    // Something already there (only the builder could have put it): refused.
    const planted = fx.addStoreDir(name('e', 'planted'));
    writeFileSync(join(spec.chrootStoreDir, name('e', 'planted')), '');
    await assert.rejects(h.addPaths([planted]), {
      message: `derivation '${DRV}': could not add path '${planted}' to the sandbox: store path '${name('e', 'planted')}' already exists in the sandbox`,
    });
  });

  test('NUL bytes and names that are not one store path are refused, by node and by the launcher', async (t) => {
    const fx = fixture(t);
    const h = await held(t, plan(request(fx, 'true', { held: true })));
    await assert.rejects(h.addPaths([`${STORE}/a\0b`]), (e: unknown) => {
      assert.ok(e instanceof SandboxNulByte);
      assert.equal(e.message, `derivation '${DRV}': store path "${STORE}/a\\\\0b" contains a NUL byte`);
      return true;
    });
    for (const bad of [`${STORE}/a/b`, '/elsewhere/x', `${STORE}/..`, `${STORE}/`, STORE]) {
      for (const op of [(p: string[]) => h.addPaths(p), (p: string[]) => h.removePaths(p)]) {
        await assert.rejects(op([bad]), (e: unknown) => {
          assert.ok(e instanceof SandboxStorePathInvalid);
          assert.equal(e.message, `derivation '${DRV}': '${bad}' is not a store path in '${STORE}'`);
          return true;
        });
      }
    }
    // Hand-made requests past node's checks.
    const server = launcherServer(requireLauncher());
    const spec = (h as unknown as { spec: LinuxSandboxSpec }).spec;
    for (const [mode, names] of [
      [Mode.REMOVE_PATH, ['a/b']],
      [Mode.REMOVE_PATH, ['..']],
      [Mode.ADD_PATH, ['x/y']],
    ] as const) {
      const r = await server.job(
        encodeRequest({ mode, names: [...names], sources: ['/bin'], target: spec.chrootStoreDir, storeDir: spec.mountedStoreDir, targetPid: h.monitorPid }),
      );
      assert.deepEqual(r, { status: 127, lines: [{ kind: 'error', message: `request rejected: '${names[0]}' is not a store path name` }] });
    }
    const good = encodeRequest({ mode: Mode.REMOVE_PATH, names: ['aXb'], target: spec.chrootStoreDir });
    const bad = Buffer.from(good);
    bad[bad.lastIndexOf(Buffer.from('aXb')) + 1] = 0;
    assert.deepEqual(await server.job(bad), { status: 127, lines: [{ kind: 'error', message: 'request rejected: store path name contains a NUL byte' }] });
  });
});

describe('held builds: abandon, misuse, drvbox gone', () => {
  test('abandon kills the held init and its monitor; the chroot is cleaned up; later calls are typed errors', async (t) => {
    const fx = fixture(t);
    const spec = plan(request(fx, 'echo ran > /build/ran', { held: true }));
    const h = (await linuxBackend.startHeld!(spec)) as LinuxHeldBuild;
    assert.ok(alive(h.sandboxPid) && alive(h.monitorPid));
    await Promise.all([h.abandon(), h.abandon()]);
    assert.equal(await gone(h.sandboxPid), true, 'init gone');
    assert.equal(await gone(h.monitorPid), true, 'monitor gone');
    assert.equal(existsSync(join(fx.buildDir, 'ran')), false);
    await linuxBackend.cleanup(spec);
    assert.equal(existsSync(spec.chrootDir), false);
    const abandoned = { name: 'HeldBuildAbandoned' };
    await assert.rejects(h.release(), (e: unknown) => {
      assert.ok(e instanceof HeldBuildAbandoned);
      assert.equal(e.message, `derivation '${DRV}': cannot release the builder: the held sandbox was abandoned`);
      return true;
    });
    await assert.rejects(h.addPaths([`${STORE}/${name('b', 'x')}`]), abandoned);
    await assert.rejects(h.removePaths([`${STORE}/${name('b', 'x')}`]), abandoned);
    await h.abandon();
  });

  test('release twice, or paths changed after release, are typed errors; abandon after release leaves the build alone', async (t) => {
    const fx = fixture(t);
    const h = await held(t, plan(request(fx, 'echo done', { held: true })));
    const b = await h.release();
    await assert.rejects(h.release(), (e: unknown) => {
      assert.ok(e instanceof HeldBuildAlreadyReleased);
      assert.equal(e.message, `derivation '${DRV}': cannot release the builder: the held sandbox was already released`);
      return true;
    });
    await assert.rejects(h.addPaths([`${STORE}/${name('b', 'x')}`]), { name: 'HeldBuildAlreadyReleased' });
    await h.abandon();
    assert.deepEqual(await finish(b), { code: 0, log: 'done\n' });
  });

  test('startHeld needs a held plan and the launcher server', async (t) => {
    const fx = fixture(t);
    await assert.rejects(linuxBackend.startHeld!(plan(request(fx, 'true'))), (e: unknown) => {
      assert.ok(e instanceof HeldBuildNotPlanned);
      assert.equal(e.message, `derivation '${DRV}': startHeld() needs a sandbox planned with 'held' (BuildRequest.held)`);
      return true;
    });
    const before = process.env.DRVBOX_LAUNCHER_ONESHOT;
    process.env.DRVBOX_LAUNCHER_ONESHOT = '1';
    try {
      await assert.rejects(linuxBackend.startHeld!(plan(request(fx, 'true', { held: true }))), (e: unknown) => {
        assert.ok(e instanceof HeldBuildNeedsServer);
        assert.equal(e.message, `derivation '${DRV}': a held sandbox needs the launcher server, which DRVBOX_LAUNCHER_ONESHOT=1 turns off`);
        return true;
      });
    } finally {
      if (before === undefined) delete process.env.DRVBOX_LAUNCHER_ONESHOT;
      else process.env.DRVBOX_LAUNCHER_ONESHOT = before;
    }
  });

  test('drvbox killed while a sandbox is held: its launcher server, monitor and init are gone', async (t) => {
    const fx = fixture(t);
    const req = request(fx, 'echo ran > /build/ran', { held: true });
    const script = `
      const m = await import(${JSON.stringify(join(REPO_ROOT, 'dist', 'backends', 'linux', 'index.js'))});
      const req = JSON.parse(process.env.HELD_REQUEST);
      const h = await m.linuxBackend.startHeld(m.linuxBackend.plan(req, m.localPlanHost()));
      console.log(JSON.stringify({ init: h.sandboxPid, monitor: h.monitorPid }));
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, HELD_REQUEST: JSON.stringify(req) }, stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    for (let i = 0; i < 250 && !out.includes('\n'); i++) await sleep(20);
    const pids = JSON.parse(out) as { init: number; monitor: number };
    assert.ok(alive(pids.init) && alive(pids.monitor));
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    assert.equal(await gone(pids.init), true, 'init gone');
    assert.equal(await gone(pids.monitor), true, 'monitor gone');
    assert.equal(existsSync(join(fx.buildDir, 'ran')), false);
    const spec = plan({ ...req, held: true });
    await linuxBackend.cleanup(spec);
    assert.equal(existsSync(spec.chrootDir), false);
  });
});

describe('recursive builds: addPath through the launcher server or a one-shot launcher', () => {
  for (const oneShot of [false, true]) {
    test(`addPath while running${oneShot ? ' (DRVBOX_LAUNCHER_ONESHOT=1)' : ''}, and its error for a path already there`, async (t) => {
      const fx = fixture(t);
      const before = process.env.DRVBOX_LAUNCHER_ONESHOT;
      if (oneShot) process.env.DRVBOX_LAUNCHER_ONESHOT = '1';
      t.after(() => {
        if (before === undefined) delete process.env.DRVBOX_LAUNCHER_ONESHOT;
        else process.env.DRVBOX_LAUNCHER_ONESHOT = before;
      });
      const dir = fx.addStoreDir(name('b', 'rec'), 'f', 'rec\n');
      const other = fx.addStoreDir(name('c', 'other'));
      const spec = plan(
        request(fx, `: > /build/started; while [ ! -e /build/go ]; do $B sleep 0.02; done; $B cat ${dir}/f`, { requiredSystemFeatures: ['recursive-nix'] }),
      );
      t.after(() => linuxBackend.cleanup(spec));
      const b = (await linuxBackend.start(spec)) as LinuxRunningBuild;
      while (!existsSync(join(fx.buildDir, 'started'))) await sleep(10);
      await b.addPath(dir);
      writeFileSync(join(spec.chrootStoreDir, name('c', 'other')), '');
      await assert.rejects(b.addPath(other), {
        name: 'AddPathFailed',
        message: `derivation '${DRV}': could not add path '${other}' to the sandbox: store path '${name('c', 'other')}' already exists in the sandbox`,
      });
      writeFileSync(join(fx.buildDir, 'go'), '');
      assert.deepEqual(await finish(b), { code: 0, log: 'rec\n' });
      assert.deepEqual([...b.visible], [dir]);
    });
  }
});
