// The Linux backend end to end: hand-made BuildRequests (a diverted fake store
// under /tmp appearing at /nix/store inside, busybox as /bin/sh) built with
// the real launcher, checking what the builder saw and wrote.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AddPathFailed,
  killBuildUser,
  linuxBackend,
  localPlanHost,
  SandboxNulByte,
  SandboxSetupFailed,
  type LinuxSandboxSpec,
} from '../../../backends/linux/index.js';
import type { LinuxRunningBuild } from '../../../backends/linux/run.js';
import { requireLauncher } from '../../../backends/linux/launcher-path.js';
import { encodeRequest, Mode } from '../../../backends/linux/protocol.js';
import { spawnLauncher } from '../../../backends/linux/spawn.js';
import { REPO_ROOT, requireLinux, requireRoot } from '../../helpers/host.js';
import { escapeTools, processesMatching } from '../../security/harness.js';
import { BUSYBOX, BUSYBOX_PATHS, OUT, runBuild, STORE, testFixture, type Fixture } from './fixture.js';
import { requireSandbox } from '../../helpers/sandbox.js';

// Where the sandbox is unavailable every test here fails, saying why (never skips).
before(() => requireSandbox('the Linux backend end to end'));

const BB = BUSYBOX_PATHS;

const fixture = testFixture;

async function sh(fx: Fixture, script: string, over: Parameters<Fixture['request']>[1] = {}) {
  return runBuild(fx.request(`B=/bin/busybox; ${script}`, { sandboxPaths: BB, ...over }));
}

describe('linux backend: what the builder sees', () => {
  test('the output is written where realPathOfScratchOutput says', async (t) => {
    const fx = fixture(t);
    const r = await sh(fx, '$B mkdir $out; echo built > $out/result');
    assert.equal(r.code, 0);
    assert.equal(r.outPath, join(fx.realStoreDir, 'dddddddddddddddddddddddddddddddd-probe.drv.chroot', 'store', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-probe'));
    assert.equal(readFileSync(join(r.outPath, 'result'), 'utf8'), 'built\n');
    await linuxBackend.cleanup(r.spec);
    assert.equal(existsSync(r.spec.chrootDir), false);
  });

  test('the environment is exactly the one given, in order', async (t) => {
    const fx = fixture(t);
    const req = fx.request('', { sandboxPaths: BB, builder: '/bin/busybox', args: ['env'], env: { zzz: 'last one', A_B: 'x=y', empty: '' } });
    const r = await runBuild(req);
    assert.equal(r.log, Object.entries(req.env).map(([k, v]) => `${k}=${v}\n`).join(''));
  });

  test('ls /, /dev, modes of /tmp and the store', async (t) => {
    const fx = fixture(t);
    const r = await sh(fx, '$B ls /; $B ls /dev; $B stat -c "%a %n" /tmp /nix/store /etc /build');
    assert.equal(
      r.log,
      'bin\nbuild\ndev\netc\nnix\nproc\ntmp\n' +
        `fd\nfull\n${existsSync('/dev/kvm') ? 'kvm\n' : ''}null\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n` +
        '1777 /tmp\n1775 /nix/store\n555 /etc\n700 /build\n',
    );
  });

  test('hostname, domainname, id, passwd and group with a custom sandbox-build-dir', async (t) => {
    const fx = fixture(t);
    const r = await sh(fx, '$B hostname; $B cat /proc/sys/kernel/domainname; $B id -u; $B id -g; $B id -un; $B id -gn; $B pwd; $B cat /etc/passwd /etc/group', {
      buildDirSandbox: '/build-tmp',
    });
    assert.equal(
      r.log,
      'localhost\n(none)\n1000\n100\nnixbld\nnixbld\n/build-tmp\n' +
        'root:x:0:0:Nix build user:/build-tmp:/noshell\n' +
        'nixbld:x:1000:100:Nix build user:/build-tmp:/noshell\n' +
        'nobody:x:65534:65534:Nobody:/:/noshell\n' +
        'root:x:0:\nnixbld:!:100:\nnogroup:x:65534:\n',
    );
  });

  test('capabilities, no_new_privs and seccomp in /proc/self/status', async (t) => {
    const fx = fixture(t);
    // A new user namespace starts with the full bounding set of this kernel.
    const last = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
    const bnd = `CapBnd:\t${((1n << BigInt(last + 1)) - 1n).toString(16).padStart(16, '0')}`;
    const r = await sh(fx, '$B grep -E "^(Cap|NoNewPrivs|Seccomp:)" /proc/self/status');
    assert.equal(
      r.log,
      `CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n${bnd}\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n`,
    );
  });

  test('filter-syscalls = false and allow-new-privileges turn those off', async (t) => {
    const fx = fixture(t);
    const settings = { ...fx.request('').settings, filterSyscalls: false, allowNewPrivileges: true };
    const r = await sh(fx, '$B grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status; $B mkdir $out; echo > $out/f; $B chmod u+s $out/f && echo setuid-allowed', { settings });
    assert.equal(r.log, 'NoNewPrivs:\t0\nSeccomp:\t0\nsetuid-allowed\n');
  });

  test('stdout and stderr are one log, stdin is empty', async (t) => {
    const fx = fixture(t);
    const r = await sh(fx, 'echo a; echo b >&2; echo c; $B cat; echo "stdin-eof"');
    assert.equal(r.log, 'a\nb\nc\nstdin-eof\n');
  });

  test('exit codes are reported', async (t) => {
    const fx = fixture(t);
    for (const code of [0, 1, 3, 100, 255]) {
      const r = await sh(fx, `exit ${code}`);
      assert.deepEqual([r.code, r.signal], [code, null]);
    }
  });

  test('a builder killed by a signal is reported with the signal', async (t) => {
    const fx = fixture(t);
    const tools = escapeTools();
    const r = await runBuild(
      fx.request('', { sandboxPaths: [{ target: '/bin/tools', source: tools, optional: false }], builder: '/bin/tools', args: ['segv'] }),
    );
    assert.deepEqual([r.code, r.signal], [null, 'SIGSEGV']);
  });

  test('inputs: directories and files read-only, symlinks as symlinks, at the logical store path', async (t) => {
    const fx = fixture(t);
    const dir = fx.addStoreDir('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-dir', 'f', 'in-dir\n');
    const file = fx.addStoreFile('cccccccccccccccccccccccccccccccc-file', 'a file\n');
    symlinkSync(`${dir}/f`, join(fx.realStoreDir, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-link'));
    const link = `${STORE}/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-link`;
    const r = await sh(fx, `$B cat ${dir}/f ${file}; $B readlink ${link}; $B cat ${link}; echo x >> ${file} || echo file-ro; $B ls /nix/store`, {
      inputPaths: [dir, file, link],
    });
    assert.equal(
      r.log,
      `in-dir\na file\n${dir}/f\nin-dir\nsh: can't create ${file}: Read-only file system\nfile-ro\n` +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-dir\ncccccccccccccccccccccccccccccccc-file\neeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-link\n',
    );
  });

  test('outputs are never pre-populated, even when listed as inputs or sandbox paths', async (t) => {
    const fx = fixture(t);
    fx.addStoreDir('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-probe');
    const r = await sh(fx, '$B ls /nix/store; test -e $out || echo absent', {
      inputPaths: [OUT],
      sandboxPaths: [...BB, { target: OUT, source: BUSYBOX, optional: false }],
    });
    assert.equal(r.log, 'absent\n');
  });

  test('i686-linux runs with the 32-bit personality; all builds without ASLR', async (t) => {
    const fx = fixture(t);
    const r64 = await sh(fx, '$B cat /proc/self/personality; $B uname -m');
    assert.equal(r64.log, '00040000\nx86_64\n');
    const r32 = await sh(fx, '$B cat /proc/self/personality; $B uname -m', { system: 'i686-linux' });
    assert.equal(r32.log, '00040008\ni686\n');
  });

  test('fixed-output builds get the host network and name resolution files', async (t) => {
    const fx = fixture(t);
    const r = await sh(fx, '$B cat /etc/nsswitch.conf; test -e /etc/resolv.conf && echo resolv; $B ip -o link | $B wc -l', { fixedOutput: true });
    const hostIfaces = String(readdirSync('/sys/class/net').length);
    assert.equal(r.log, `hosts: files dns\nservices: files\n${existsSync('/etc/resolv.conf') ? 'resolv\n' : ''}${hostIfaces}\n`);
    const n = await sh(fx, '$B cat /etc/hosts; test -e /etc/nsswitch.conf || echo no-nsswitch; $B ip -o link | $B cut -d: -f2');
    assert.equal(n.log, '127.0.0.1 localhost\n::1 localhost\nno-nsswitch\n lo\n');
  });

  test('/dev/shm has the configured size', async (t) => {
    const fx = fixture(t);
    const settings = { ...fx.request('').settings, sandboxDevShmSize: '1m' };
    const r = await sh(fx, '$B df -k /dev/shm | $B tail -1 | $B tr -s " " | $B cut -d" " -f2', { settings });
    assert.equal(r.log, '1024\n');
  });

  test('usage() reports CPU time after the build', async (t) => {
    const fx = fixture(t);
    const spec = linuxBackend.plan(fx.request('i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done', { sandboxPaths: BB }), localPlanHost());
    const b = await linuxBackend.start(spec);
    b.log.resume();
    assert.equal(b.usage(), null);
    await b.wait();
    const u = b.usage();
    assert.ok(u && u.cpuUserMs + u.cpuSystemMs > 0, JSON.stringify(u));
  });
});

describe('linux backend: killing', () => {
  test('kill() (the timeout path) ends the build and every process in it', async (t) => {
    const fx = fixture(t);
    const n = 800000 + Math.floor(Math.random() * 99999);
    const spec = linuxBackend.plan(
      fx.request(`B=/bin/busybox; $B ln -s $B /tmp/sleep; ($B setsid /tmp/sleep ${n} &); /tmp/sleep ${n + 1}`, { sandboxPaths: BB }),
      localPlanHost(),
    );
    const b = await linuxBackend.start(spec);
    b.log.resume();
    await sleep(300);
    assert.equal(processesMatching(`sleep ${n}`).length, 1);
    const t0 = Date.now();
    await Promise.all([b.kill(), b.kill()]); // idempotent
    assert.ok(Date.now() - t0 < 2000);
    assert.deepEqual(await b.wait(), { code: null, signal: 'SIGKILL' });
    assert.deepEqual(processesMatching(`sleep ${n}`), []);
    assert.deepEqual(processesMatching(`sleep ${n + 1}`), []);
    await b.kill(); // after the end: nothing to do
  });

  test('killing the launcher (as if drvbox died) takes the sandbox with it', async (t) => {
    const fx = fixture(t);
    const n = 700000 + Math.floor(Math.random() * 99999);
    const spec = linuxBackend.plan(fx.request(`B=/bin/busybox; $B ln -s $B /tmp/sleep; ($B setsid /tmp/sleep ${n} &); /tmp/sleep ${n}`, { sandboxPaths: BB }), localPlanHost());
    const b = (await linuxBackend.start(spec)) as LinuxRunningBuild;
    b.log.resume();
    await sleep(200);
    assert.equal(processesMatching(`sleep ${n}`).length, 2);
    process.kill(b.pid, 'SIGKILL');
    assert.deepEqual(await b.wait(), { code: null, signal: 'SIGKILL' });
    for (let i = 0; i < 50 && processesMatching(`sleep ${n}`).length > 0; i++) await sleep(20);
    assert.deepEqual(processesMatching(`sleep ${n}`), []);
  });
});

describe('linux backend: drvbox itself dies', () => {
  test('SIGKILL of the node process leaves no sandbox process behind', async (t) => {
    const fx = fixture(t);
    const n = 400000 + Math.floor(Math.random() * 99999);
    const request = fx.request(`B=/bin/busybox; $B ln -s $B /tmp/sleep; ($B setsid /tmp/sleep ${n} &); /tmp/sleep ${n}`, { sandboxPaths: BB });
    const runner = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'test', 'security', 'runner.js')], { stdio: ['pipe', 'ignore', 'ignore'] });
    const gone = new Promise((r) => runner.once('exit', r));
    runner.stdin.end(JSON.stringify({ request }));
    for (let i = 0; i < 200 && processesMatching(`sleep ${n}`).length < 2; i++) await sleep(20);
    assert.equal(processesMatching(`sleep ${n}`).length, 2);
    runner.kill('SIGKILL');
    await gone;
    for (let i = 0; i < 100 && processesMatching(`sleep ${n}`).length > 0; i++) await sleep(20);
    assert.deepEqual(processesMatching(`sleep ${n}`), []);
  });
});

describe('linux backend: paths added while running (recursive builds)', () => {
  test('addPath makes dirs, files and symlinks visible at once; repeats are no-ops', async (t) => {
    const fx = fixture(t);
    const dir = fx.addStoreDir('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-late', 'f', 'late dir\n');
    const file = fx.addStoreFile('cccccccccccccccccccccccccccccccc-latefile', 'late file\n');
    symlinkSync('/nowhere', join(fx.realStoreDir, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-latelink'));
    const link = `${STORE}/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-latelink`;
    const input = fx.addStoreDir('ffffffffffffffffffffffffffffffff-input');
    const r = await runBuild(
      fx.request(`B=/bin/busybox; $B ls /nix/store; : > /build/listed; while [ ! -e /build/go ]; do $B sleep 0.02; done; $B ls /nix/store; $B cat ${dir}/f ${file}; $B readlink ${link}; echo x >> ${file} || echo ro`, {
        sandboxPaths: BB,
        inputPaths: [input],
        requiredSystemFeatures: ['recursive-nix'],
      }),
      async (b) => {
        // Only once the builder has listed the store as it was at the start.
        while (!existsSync(join(fx.buildDir, 'listed'))) await sleep(10);
        await b.addPath(dir);
        await b.addPath(file);
        await b.addPath(link);
        await b.addPath(dir); // already visible
        await linuxBackend.addPath(b, (b as unknown as { spec: LinuxSandboxSpec }).spec, input); // an input: visible from the start
        writeFileSync(join(fx.buildDir, 'go'), '');
      },
    );
    assert.equal(
      r.log,
      'ffffffffffffffffffffffffffffffff-input\n' +
        'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-late\ncccccccccccccccccccccccccccccccc-latefile\neeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-latelink\nffffffffffffffffffffffffffffffff-input\n' +
        `late dir\nlate file\n/nowhere\nsh: can't create ${file}: Read-only file system\nro\n`,
    );
  });

  test('addPath on a build started without recursive-nix is a clear error', async (t) => {
    const fx = fixture(t);
    const dir = fx.addStoreDir('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-late');
    const spec = linuxBackend.plan(fx.request('/bin/busybox sleep 5', { sandboxPaths: BB }), localPlanHost());
    const b = await linuxBackend.start(spec);
    b.log.resume();
    await assert.rejects(linuxBackend.addPath(b, spec, dir), (e: unknown) => {
      assert.ok(e instanceof AddPathFailed);
      assert.equal(e.message, `derivation '${spec.request.drvPath}': cannot add '${dir}' to the sandbox: the build was not started with recursive-nix (no mount namespace kept)`);
      return true;
    });
    await b.kill();
  });
});

describe('linux backend: failures before the builder runs', () => {
  test('a builder that cannot be executed fails the build as in Nix (exit code 1, the errno in the log), not the setup', async (t) => {
    const fx = fixture(t);
    for (const [builder, why] of [
      ['/nope/builder', 'No such file or directory'],
      ['/etc/passwd', 'Permission denied'],
    ] as const) {
      const spec = linuxBackend.plan(fx.request('', { sandboxPaths: BB, builder }), localPlanHost());
      const b = await linuxBackend.start(spec);
      const chunks: Buffer[] = [];
      b.log.on('data', (c: Buffer) => chunks.push(c));
      await new Promise((r) => b.log.once('end', r));
      assert.deepEqual(await b.wait(), { code: 1, signal: null });
      assert.equal(Buffer.concat(chunks).toString(), `error: executing '${builder}': ${why}\n`);
    }
  });

  test('a sandbox that cannot be set up is a setup error', async (t) => {
    const fx = fixture(t);
    const spec = linuxBackend.plan(fx.request('true', { sandboxPaths: BB }), localPlanHost());
    (spec as unknown as { cwd: string }).cwd = '/no/such/dir';
    await assert.rejects(linuxBackend.start(spec), (e: unknown) => {
      assert.ok(e instanceof SandboxSetupFailed);
      assert.equal(e.message, `while setting up the build environment for '${spec.request.drvPath}': changing into '/no/such/dir': No such file or directory`);
      return true;
    });
  });

  test('a sandbox path removed between plan and start fails setup, naming it', async (t) => {
    const fx = fixture(t);
    const extra = join(fx.root, 'extra');
    writeFileSync(extra, 'x');
    const spec = linuxBackend.plan(fx.request('true', { sandboxPaths: [...BB, { target: '/extra', source: extra, optional: false }] }), localPlanHost());
    unlinkSync(extra);
    await assert.rejects(linuxBackend.start(spec), /getting attributes of path '.*\/extra': No such file or directory/);
  });

  test('NUL bytes are rejected before sending, and by the launcher itself', async (t) => {
    const fx = fixture(t);
    const spec = linuxBackend.plan(fx.request('true', { sandboxPaths: BB, args: ['-c', 'a\0b'] }), localPlanHost());
    await assert.rejects(linuxBackend.start(spec), (e: unknown) => {
      assert.ok(e instanceof SandboxNulByte);
      assert.equal(e.message, `derivation '${spec.request.drvPath}': argument "a\\\\0b" contains a NUL byte`);
      return true;
    });
    const env = linuxBackend.plan(fx.request('true', { sandboxPaths: BB, env: { X: 'a\0b' } }), localPlanHost());
    await assert.rejects(linuxBackend.start(env), /value of environment variable 'X' "a\\\\0b" contains a NUL byte/);
    // Hand-made request with a NUL inside an argument record.
    const good = encodeRequest({ mode: Mode.RUN, builder: '/bin/sh', argv: ['sh', 'aXb'] });
    const bad = Buffer.from(good);
    bad[bad.lastIndexOf(Buffer.from('aXb')) + 1] = 0;
    const p = spawnLauncher(requireLauncher(), bad, false);
    const [lines] = await Promise.all([p.status, p.exited]);
    assert.deepEqual(lines, [{ kind: 'error', message: 'request rejected: argument contains a NUL byte' }]);
  });
});

describe('linux backend: the chroot dir', () => {
  test('the launcher creates it; an existing one, or none named, is an error before anything runs', async (t) => {
    const fx = fixture(t);
    const r = await runBuild(fx.request('echo hi > $out', { sandboxPaths: BB }));
    assert.equal(r.code, 0, r.log);
    const run = async (req: Parameters<typeof encodeRequest>[0]) => {
      const p = spawnLauncher(requireLauncher(), encodeRequest(req), false);
      const [lines] = await Promise.all([p.status, p.exited]);
      return lines;
    };
    const dir = join(fx.root, 'exists.chroot');
    mkdirSync(dir);
    assert.deepEqual(await run({ mode: Mode.RUN, builder: '/bin/true', argv: ['true'], chroot: dir, makeChroot: true }), [
      { kind: 'error', message: `creating the sandbox directory '${dir}': File exists` },
    ]);
    assert.deepEqual(await run({ mode: Mode.RUN, builder: '/bin/true', argv: ['true'], makeChroot: true }), [
      { kind: 'error', message: 'request rejected: a chroot dir to create, but no chroot path' },
    ]);
  });
});

describe('linux backend: build users (root)', () => {
  test('a build user is uid 1000 inside; its outputs are handed back to the caller', async (t) => {
    requireRoot('maps a build user');
    const fx = fixture(t);
    chownSync(fx.buildDir, 30001, 30000);
    const buildUser = { uid: 30001, gid: 30000, uidCount: 1, supplementaryGids: [] };
    const r = await sh(fx, '$B id -u; $B id -g; $B cat /proc/self/uid_map /proc/self/gid_map | $B tr -s " "; $B mkdir $out; echo x > $out/f; $B stat -c %u $out/f', { buildUser });
    assert.equal(r.log, '1000\n100\n 1000 30001 1\n 100 30000 1\n1000\n');
    assert.deepEqual([lstatSync(r.outPath).uid, lstatSync(join(r.outPath, 'f')).uid], [0, 0]);
  });

  test('uid-range: 65536 ids with root inside and /sys mounted', async (t) => {
    requireRoot('maps a uid range');
    const fx = fixture(t);
    const base = 872415232;
    chownSync(fx.buildDir, base, base);
    const buildUser = { uid: base, gid: base, uidCount: 65536, supplementaryGids: [] };
    const r = await sh(fx, '$B id -u; $B cat /proc/self/uid_map | $B tr -s " "; test -d /sys/kernel && echo sys; $B head -2 /etc/passwd', { buildUser });
    assert.equal(r.log, `0\n 0 ${base} 65536\nsys\nroot:x:0:0:Nix build user:/build:/noshell\nnixbld:x:0:0:Nix build user:/build:/noshell\n`);
  });

  test('killBuildUser kills exactly that uid\'s processes', async (t) => {
    const t_after = (f: () => void): void => t.after(f);
    requireRoot('switches uid');
    const n = 500000 + Math.floor(Math.random() * 99999);
    const victim = spawn('setpriv', ['--reuid=30002', '--regid=30002', '--clear-groups', BUSYBOX, 'sleep', String(n)], { stdio: 'ignore' });
    const victimGone = new Promise((r) => victim.once('exit', r));
    const bystander = spawn(BUSYBOX, ['sleep', String(n + 1)], { stdio: 'ignore' });
    t_after(() => bystander.kill('SIGKILL'));
    await sleep(100);
    assert.equal(processesMatching(`sleep ${n}`).length, 1);
    await killBuildUser(30002);
    await victimGone;
    assert.deepEqual(processesMatching(`sleep ${n}`), []);
    assert.equal(processesMatching(`sleep ${n + 1}`).length, 1);
    await assert.rejects(killBuildUser(0), /refusing to kill all processes of uid 0/);
  });
});

describe('linux backend: use-cgroups', () => {
  test('the build runs in its own cgroup (namespaced), reports its CPU time, and the cgroup is removed', async (t) => {
    requireRoot('creates cgroups');
    const fx = fixture(t);
    const settings = { ...fx.request('').settings, useCgroups: true };
    let cgroup: string | null = null;
    const r = await runBuild(fx.request('B=/bin/busybox; $B grep "^0::" /proc/self/cgroup; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done', { sandboxPaths: BB, settings }), (b) => {
      cgroup = b.cgroup;
      assert.ok(cgroup && existsSync(`${cgroup}/cgroup.procs`), `cgroup ${cgroup}`);
      assert.equal(readFileSync(`${cgroup}/cgroup.procs`, 'utf8').trim().split('\n').includes(String(b.sandboxPid)), true);
    });
    assert.equal(r.log, '0::/\n');
    assert.match(cgroup!, /\/drvbox-build-\d+-\d+$/);
    assert.equal(existsSync(cgroup!), false);
  });

  test('kill() with a cgroup leaves nothing, and usage() comes from cpu.stat', async (t) => {
    requireRoot('creates cgroups');
    const fx = fixture(t);
    const n = 600000 + Math.floor(Math.random() * 99999);
    const settings = { ...fx.request('').settings, useCgroups: true };
    const spec = linuxBackend.plan(fx.request(`B=/bin/busybox; $B ln -s $B /tmp/sleep; ($B setsid /tmp/sleep ${n} &); /tmp/sleep ${n}`, { sandboxPaths: BB, settings }), localPlanHost());
    const b = (await linuxBackend.start(spec)) as LinuxRunningBuild;
    b.log.resume();
    await sleep(200);
    await b.kill();
    assert.deepEqual(await b.wait(), { code: null, signal: 'SIGKILL' });
    assert.deepEqual(processesMatching(`sleep ${n}`), []);
    assert.equal(existsSync(b.cgroup!), false);
    assert.notEqual(b.usage(), null);
  });
});

describe('linux backend: probe and explain', () => {
  test('without the compiled launcher, probe and start say so and how to fix it', () => {
    const script = `
      const m = await import(${JSON.stringify(join(REPO_ROOT, 'dist', 'backends', 'linux', 'index.js'))});
      const r = await m.linuxBackend.probe();
      const l = r.checks.find((c) => c.name === 'launcher');
      let err = '';
      try { (await import(${JSON.stringify(join(REPO_ROOT, 'dist', 'backends', 'linux', 'launcher-path.js'))})).requireLauncher(); } catch (e) { err = e.code + ': ' + e.message; }
      console.log(JSON.stringify({ usable: r.usable, ok: l.ok, detail: l.detail, fix: l.fix, err }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, DRVBOX_LAUNCHER: '/nonexistent/drvbox-launcher' }, encoding: 'utf8' });
    const out = JSON.parse(r.stdout) as { usable: boolean; ok: boolean; detail: string; fix: string; err: string };
    assert.deepEqual(out, {
      usable: false,
      ok: false,
      detail: "the sandbox launcher is not built: '/nonexistent/drvbox-launcher' does not exist",
      fix: "install a C compiler (e.g. 'apt-get install gcc') and run 'npm run build'; until then build with '--sandbox false'",
      err:
        "E_LAUNCHER_MISSING: the Linux sandbox launcher is not built: '/nonexistent/drvbox-launcher' does not exist; " +
        "install a C compiler (e.g. 'apt-get install gcc') and run 'npm run build', or build with '--sandbox false'",
    });
  });

  test('probe reports every step working on this host', async () => {
    requireLinux('probe');
    const r = await linuxBackend.probe();
    assert.equal(r.backend, 'linux');
    const byName = Object.fromEntries(r.checks.map((c) => [c.name, c]));
    assert.equal(byName.launcher?.ok, true);
    assert.equal(byName.libseccomp?.ok, true, byName.libseccomp?.detail);
    assert.equal(byName.namespaces?.ok, true, byName.namespaces?.detail);
    assert.match(byName.namespaces!.detail, /clone, uid_map, mount, proc, loopback, seccomp work/);
    assert.equal(r.usable, true);
  });

  test('explain prints namespaces, identity, mounts and seccomp rules', (t) => {
    const fx = fixture(t);
    const spec = linuxBackend.plan(fx.request('true', { sandboxPaths: BB }), localPlanHost());
    const text = linuxBackend.explain(spec);
    assert.match(text, /^namespaces: user, mount, pid, ipc, uts, net$/m);
    assert.match(text, /^identity: uid 1000 gid 100 inside; uid_map "1000 \d+ 1", gid_map "100 \d+ 1", setgroups deny$/m);
    assert.match(text, /^  bind     \/bin\/sh <- \/usr\/bin\/busybox \[ro,nosuid\] sandbox-paths$/m);
    assert.match(text, /^  mount    \/proc proc$/m);
    assert.match(text, /^  readonly \/$/m);
    assert.match(text, /^  chmod when mode has S_ISUID \(arg1 & 0o4000 == 0o4000\) -> EPERM$/m);
    assert.match(text, /^  fchmodat2 when mode has S_ISGID \(arg2 & 0o2000 == 0o2000\) -> EPERM \(if the kernel and libseccomp know it\)$/m);
    assert.match(text, /^  setxattr -> ENOTSUP$/m);
    assert.match(text, /^  io_uring_setup -> ENOSYS/m);
  });
});

