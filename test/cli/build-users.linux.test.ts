// Build users through `drvbox build`, as root, with a temporary group and
// users created here (and deleted afterwards): each build locks its own user
// (Nix's userpool files), runs as it (mapped to uid 1000 in the sandbox; as
// itself without one), leftovers of that uid are killed before and after —
// unless the build has a cgroup, in which case nothing outside the build is
// touched (Nix issue 9142) — and auto-allocate-uids hands out 65536-id
// ranges, all of them with the uid-range feature. --json reports CPU times.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from 'node:test';
import { CLI, requireRoot, requireTool } from '../helpers/host.js';
import { requireSandbox } from '../helpers/sandbox.js';
import { tempDir } from '../helpers/tmp.js';
import { processesMatching } from '../security/harness.js';

const SYSTEM = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux`;
const BUSYBOX = '/usr/bin/busybox';
const tag = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
const GROUP = `dxbg${tag}`;
const USERS = [`dxbu${tag}a`, `dxbu${tag}b`];
/** Another group of the first build user (as an admin would add build users to `kvm`). */
const EXTRA = `dxbx${tag}`;

function id(flag: string, name: string): number {
  const r = spawnSync('id', [flag, name], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`id ${flag} ${name}: ${r.stderr}`);
  return Number(r.stdout.trim());
}

interface Env {
  dir: string;
  root: string;
  run(args: string[]): { status: number | null; stdout: string; stderr: string };
  drv(name: string, script: string, extra?: Record<string, unknown>): string;
}

function env(t: TestContext, storeArgs: (dir: string) => string[]): Env {
  const dir = tempDir(t);
  // Build users must reach the store and build dirs below it.
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'tmp'), { mode: 0o755 });
  const e = { ...process.env, TMPDIR: join(dir, 'tmp'), XDG_CONFIG_HOME: dir, DRVBOX_CONFIG: '', DRVBOX_STORE: '' };
  return {
    dir,
    root: join(dir, 'root'),
    run: (args) => {
      const r = spawnSync(process.execPath, [CLI, ...storeArgs(dir), ...args], { env: e, encoding: 'utf8', cwd: dir });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    },
    drv(name, script, extra = {}) {
      const file = join(dir, `${name}.json`);
      writeFileSync(file, JSON.stringify({ name, system: SYSTEM, builder: '/bin/sh', args: ['-c', script], ...extra }));
      return file;
    },
  };
}

// busybox inside, besides the default /bin/sh.
const sandboxed = (t: TestContext) => env(t, (dir) => ['--store', join(dir, 'root'), '--option', 'extra-sandbox-paths', BUSYBOX]);
const UIDMAP = 'read -r m < /proc/self/uid_map; echo $m > $out';

describe('build users (root)', () => {
  let uids: number[] = [];
  let gid = 0;
  let extraGid = 0;

  before(async () => {
    requireRoot('creates a group and users, and builds as them');
    requireTool('useradd', 'apt-get install passwd');
    requireTool('setpriv', 'apt-get install util-linux');
    await requireSandbox('builds as build users in the sandbox');
    const g = spawnSync('groupadd', ['--system', GROUP], { encoding: 'utf8' });
    if (g.status !== 0) throw new Error(`groupadd: ${g.stderr}`);
    for (const u of USERS) {
      const r = spawnSync('useradd', ['--system', '--no-create-home', '--no-user-group', '--shell', '/usr/sbin/nologin', '--groups', GROUP, u], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`useradd ${u}: ${r.stderr}`);
    }
    uids = USERS.map((u) => id('-u', u));
    gid = Number(spawnSync('getent', ['group', GROUP], { encoding: 'utf8' }).stdout.split(':')[2]);
    const x = spawnSync('groupadd', ['--system', '--users', USERS[0]!, EXTRA], { encoding: 'utf8' });
    if (x.status !== 0) throw new Error(`groupadd ${EXTRA}: ${x.stderr}`);
    extraGid = Number(spawnSync('getent', ['group', EXTRA], { encoding: 'utf8' }).stdout.split(':')[2]);
  });

  after(() => {
    for (const u of USERS) spawnSync('userdel', [u]);
    spawnSync('groupdel', [GROUP]);
    spawnSync('groupdel', [EXTRA]);
  });

  test('a sandboxed build runs as the first free build user (uid 1000 inside), locked in userpool/; outputs are root\'s; --json has CPU times', (t) => {
    const e = sandboxed(t);
    const r = e.run(['build', '--json', '--option', 'build-users-group', GROUP, e.drv('as-user', `${UIDMAP}; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done`)]);
    assert.equal(r.status, 0, r.stderr);
    const [res] = JSON.parse(r.stdout) as Array<{ outputs: { out: string }; cpuUser: number; cpuSystem: number }>;
    const out = join(e.root, res!.outputs.out);
    assert.equal(readFileSync(out, 'utf8'), `1000 ${uids[0]} 1\n`);
    const st = statSync(out);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [0, 0, 0o444]);
    assert.ok(existsSync(join(e.root, 'nix', 'var', 'nix', 'userpool', String(uids[0]))));
    assert.equal(typeof res!.cpuUser, 'number');
    assert.equal(typeof res!.cpuSystem, 'number');
    assert.ok(res!.cpuUser + res!.cpuSystem > 0, JSON.stringify(res));
  });

  test('concurrent builds get different build users', (t) => {
    const e = sandboxed(t);
    const a = e.drv('first', `${UIDMAP}; ${BUSYBOX} sleep 0.5`);
    const b = e.drv('second', `${UIDMAP}; ${BUSYBOX} sleep 0.5`);
    const r = e.run(['build', '-j', '2', '--option', 'build-users-group', GROUP, a, b]);
    assert.equal(r.status, 0, r.stderr);
    const maps = r.stdout.trim().split('\n').map((p) => readFileSync(join(e.root, p), 'utf8').trim()).sort();
    assert.deepEqual(maps, uids.map((u) => `1000 ${u} 1`).sort());
  });

  test('without cgroups, leftovers of the build user are killed (by uid), nobody else\'s', async (t) => {
    const e = sandboxed(t);
    const n = 700000 + Math.floor(Math.random() * 99999);
    // A process left behind by an earlier build of the first build user, and a bystander.
    const leftover = spawn('setpriv', [`--reuid=${uids[0]}`, `--regid=${gid}`, '--clear-groups', BUSYBOX, 'sleep', String(n)], { stdio: 'ignore' });
    const bystander = spawn(BUSYBOX, ['sleep', String(n + 1)], { stdio: 'ignore' });
    t.after(() => {
      leftover.kill('SIGKILL');
      bystander.kill('SIGKILL');
    });
    await sleep(100);
    assert.equal(processesMatching(`sleep ${n}`).length, 1);
    const r = e.run(['build', '--option', 'build-users-group', GROUP, e.drv('kills-leftovers', UIDMAP)]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(e.root, r.stdout.trim()), 'utf8'), `1000 ${uids[0]} 1\n`);
    assert.deepEqual(processesMatching(`sleep ${n}`), []);
    assert.equal(processesMatching(`sleep ${n + 1}`).length, 1);
  });

  test('with use-cgroups, the build\'s cgroup is killed and nothing outside it: a process of the same uid survives (Nix 9142)', async (t) => {
    const e = sandboxed(t);
    const n = 800000 + Math.floor(Math.random() * 99999);
    const outsider = spawn('setpriv', [`--reuid=${uids[0]}`, `--regid=${gid}`, '--clear-groups', BUSYBOX, 'sleep', String(n)], { stdio: 'ignore' });
    t.after(() => outsider.kill('SIGKILL'));
    await sleep(100);
    const script = `${BUSYBOX} ln -s ${BUSYBOX} /tmp/sleep; (${BUSYBOX} setsid /tmp/sleep ${n + 1} &); ${UIDMAP}`;
    const r = e.run(['build', '--json', '--option', 'build-users-group', GROUP, '--option', 'use-cgroups', 'true', e.drv('cgroup', script)]);
    assert.equal(r.status, 0, r.stderr);
    const [res] = JSON.parse(r.stdout) as Array<{ outputs: { out: string }; cpuUser: number; cpuSystem: number }>;
    assert.equal(readFileSync(join(e.root, res!.outputs.out), 'utf8'), `1000 ${uids[0]} 1\n`);
    assert.equal(processesMatching(`sleep ${n}`).length, 1, 'the process outside the build was killed');
    assert.deepEqual(processesMatching(`sleep ${n + 1}`), []);
    assert.equal(typeof res!.cpuUser, 'number');
  });

  test("unsandboxed builds run as the build user too, with its own supplementary groups (none of root's), as in Nix; the store dir becomes root:group 1775; outputs are canonicalised to root", (t) => {
    const e = env(t, (dir) => ['--store-dir', join(dir, 'store')]);
    const r = e.run(['build', '--sandbox', 'false', '--option', 'build-users-group', GROUP, e.drv('unsandboxed', 'echo "$(/usr/bin/id -u) $(/usr/bin/id -g) $(/usr/bin/id -G)" > $out')]);
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout.trim();
    // Its primary group (useradd's default) and EXTRA; not the build group twice, none of root's (0).
    const groups = [...new Set([id('-g', USERS[0]!), extraGid])].filter((g) => g !== gid).sort((a, b) => a - b);
    assert.equal(readFileSync(out, 'utf8'), `${uids[0]} ${gid} ${[gid, ...groups].join(' ')}\n`);
    assert.ok(groups.includes(extraGid) && !groups.includes(0), groups.join(' '));
    assert.deepEqual([statSync(out).uid, statSync(out).gid], [0, 0]);
    const store = statSync(join(e.dir, 'store'));
    assert.deepEqual([store.uid, store.gid, store.mode & 0o7777], [0, gid, 0o1775]);
  });

  test('auto-allocate-uids: one id of a 65536-id slot; with uid-range (and use-cgroups) the whole slot, root inside', (t) => {
    const e = sandboxed(t);
    const r = e.run(['build', '--option', 'auto-allocate-uids', 'true', e.drv('auto', UIDMAP)]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(e.root, r.stdout.trim()), 'utf8'), '1000 872415232 1\n');
    assert.ok(existsSync(join(e.root, 'nix', 'var', 'nix', 'userpool2', 'slot-0')));

    const ranged = e.drv('ranged', `${UIDMAP}; echo "$(${BUSYBOX} id -u) $(test -d /sys/kernel && echo sys)" >> $out`, { env: { requiredSystemFeatures: 'uid-range' } });
    const opts = ['--option', 'auto-allocate-uids', 'true', '--option', 'extra-system-features', 'uid-range'];
    const noCgroup = e.run(['build', ...opts, ranged]);
    assert.equal(noCgroup.status, 1, noCgroup.stderr);
    assert.match(noCgroup.stderr, /error: the 'uid-range' feature needs 'use-cgroups = true'/);
    const ok = e.run(['build', ...opts, '--option', 'use-cgroups', 'true', ranged]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(readFileSync(join(e.root, ok.stdout.trim()), 'utf8'), '0 872415232 65536\n0 sys\n');
  });

  test('a build-users-group that does not exist fails the build with Nix\'s message', (t) => {
    const e = sandboxed(t);
    const r = e.run(['build', '--option', 'build-users-group', `${GROUP}-nope`, e.drv('no-group', 'echo > $out')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`error: the group '${GROUP}-nope' specified in 'build-users-group' does not exist`));
  });
});
