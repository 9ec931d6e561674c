// The spawn executor and the running-build watcher, over recorded C calls.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { applySpawn, startSpawn } from '../../../backends/darwin/spawn-exec.js';
import { planDarwin } from '../../../backends/darwin/plan.js';
import { DarwinKillFailed, DarwinSpawnFailed } from '../../../backends/darwin/errors.js';
import { BASE_PATHS, BUILD_DIR, fakeHost, request } from './fixtures.js';
import { fakeLibc } from './fake-libc.js';

const spec = planDarwin(request(), fakeHost(BASE_PATHS));
const desc = spec.spawn;

/** A kill() stand-in: records signals; the group is empty once `aliveFor` probes have been answered. */
function fakeKill(aliveFor = 0) {
  const sent: Array<[number, string | number]> = [];
  let probes = 0;
  const kill = (pid: number, sig: NodeJS.Signals | 0) => {
    sent.push([pid, sig]);
    if (sig === 0 && probes++ >= aliveFor) throw Object.assign(new Error('kill ESRCH'), { code: 'ESRCH' });
  };
  return { sent, kill };
}

describe('applySpawn', () => {
  test('aarch64-darwin: sysctl, file actions, attributes, binpref, spawn, then both objects freed', () => {
    const libc = fakeLibc();
    const r = applySpawn(desc, libc, 11);
    assert.deepEqual(r, { pid: 4242, sysctlErrors: [] });
    assert.deepEqual(libc.calls, [
      ['sysctlSetInt', 'kern.curproc_arch_affinity', 0],
      ['fileActionsInit', 'fa#1'],
      ['addopen', 'fa#1', 0, '/dev/null', 0, 0],
      ['adddup2', 'fa#1', 11, 1],
      ['adddup2', 'fa#1', 11, 2],
      ['addchdir_np', 'fa#1', BUILD_DIR],
      ['attrInit', 'attr#2'],
      ['setflags', 'attr#2', 0x400e],
      ['setpgroup', 'attr#2', 0],
      ['setsigdefault', 'attr#2'],
      ['setsigmask', 'attr#2'],
      ['setbinpref_np', 'attr#2', [0x0100000c]],
      ['posix_spawn', '/usr/bin/sandbox-exec', 'fa#1', 'attr#2', desc.argv, desc.envp],
      ['attrDestroy', 'attr#2'],
      ['fileActionsDestroy', 'fa#1'],
    ]);
  });

  test('x86_64-darwin with a build user: X86_64 preference, credentials, no sysctl', () => {
    const d = planDarwin(request({ system: 'x86_64-darwin', buildUser: { uid: 30001, gid: 30000, uidCount: 1, supplementaryGids: [] } }), fakeHost(BASE_PATHS)).spawn;
    const libc = fakeLibc();
    applySpawn(d, libc, 11);
    const names = libc.calls.map((c) => c[0]);
    assert.ok(!names.includes('sysctlSetInt'));
    assert.deepEqual(libc.calls.find((c) => c[0] === 'setbinpref_np'), ['setbinpref_np', 'attr#2', [0x01000007]]);
    assert.deepEqual(libc.calls.find((c) => c[0] === 'setcredentials'), ['setcredentials', 'attr#2', { uid: 30001, gid: 30000, groups: [30000] }]);
    assert.ok(names.indexOf('setcredentials') < names.indexOf('posix_spawn'));
  });

  test('posix_spawn failure names the derivation and errno, and still frees', () => {
    const libc = fakeLibc({ spawnRc: 86 });
    assert.throws(
      () => applySpawn(desc, libc, 11),
      (e: unknown) =>
        e instanceof DarwinSpawnFailed &&
        e.message === `cannot start the builder of '${spec.request.drvPath}': posix_spawn of '/usr/bin/sandbox-exec' failed with EBADARCH (no slice of it runs on the preferred CPU type; x86_64 on Apple silicon needs Rosetta 2)`,
    );
    assert.deepEqual(libc.calls.slice(-2).map((c) => c[0]), ['attrDestroy', 'fileActionsDestroy']);
  });

  test('a binpref the kernel did not take is an error, not a silent fallback', () => {
    const libc = fakeLibc({ binprefTaken: 0 });
    assert.throws(() => applySpawn(desc, libc, 11), /posix_spawnattr_setbinpref_np\(0x100000c\) failed with EINVAL/);
    assert.ok(!libc.calls.some((c) => c[0] === 'posix_spawn'));
  });
});

describe('startSpawn and the running build', () => {
  test('the log carries the output; wait() gives the exit code and CPU times; stragglers are killed', async () => {
    const libc = fakeLibc();
    libc.waits = [
      { pid: 0, status: 0, cpuUserMs: 0, cpuSystemMs: 0 },
      { pid: 0, status: 0, cpuUserMs: 0, cpuSystemMs: 0 },
      { pid: 4242, status: 3 << 8, cpuUserMs: 12, cpuSystemMs: 3 },
    ];
    const source = new PassThrough();
    const k = fakeKill();
    let after = 0;
    const b = startSpawn(desc, libc, { openLog: () => source, kill: k.kill, pollMinMs: 1, afterExit: () => void after++ });
    assert.equal(b.pid, 4242);
    // the write end is ours to close at once; the read end is the log
    assert.deepEqual(libc.calls.filter((c) => c[0] === 'pipe' || c[0] === 'close'), [['pipe'], ['close', 11]]);
    source.end('hello\nworld\n');
    assert.equal(await text(b.log), 'hello\nworld\n');
    assert.deepEqual(await b.wait(), { code: 3, signal: null });
    assert.deepEqual(b.usage(), { cpuUserMs: 12, cpuSystemMs: 3 });
    assert.deepEqual(k.sent, [
      [-4242, 'SIGKILL'],
      [-4242, 0],
    ]);
    assert.equal(after, 1);
    await b.kill(); // idempotent once finished
    assert.equal(k.sent.length, 2);
  });

  test('kill() kills the group and the build user, and resolves when none is left', async () => {
    const libc = fakeLibc();
    libc.uidPids = [5001, 5002];
    libc.waits = [{ pid: 0, status: 0, cpuUserMs: 0, cpuSystemMs: 0 }];
    const source = new PassThrough();
    const k = fakeKill(1);
    const b = startSpawn(desc, libc, { openLog: () => source, kill: k.kill, pollMinMs: 1, pollMaxMs: 2, uid: 30001, logGraceMs: 10 });
    source.write('partial');
    await new Promise((r) => setTimeout(r, 5));
    const killed = b.kill();
    libc.uidPids = [];
    libc.waits = [{ pid: 4242, status: 9, cpuUserMs: 1, cpuSystemMs: 1 }];
    await killed;
    assert.deepEqual(await b.wait(), { code: null, signal: 'SIGKILL' });
    assert.deepEqual(k.sent.slice(0, 3), [
      [-4242, 'SIGKILL'],
      [5001, 'SIGKILL'],
      [5002, 'SIGKILL'],
    ]);
    assert.ok(k.sent.filter(([p, s]) => p === -4242 && s === 0).length >= 2, 'the group was probed until empty');
    // the log never ended by itself (a process outside the group could hold
    // the pipe): it is ended after the grace period, with what came before
    assert.equal(await text(b.log), 'partial');
  });

  test('a slow log reader loses nothing when the log is cut after the build', async () => {
    const libc = fakeLibc();
    const source = new PassThrough();
    const big = Buffer.alloc(1 << 20, 'x');
    // in pipe-sized chunks, never ended: as if an escaped process held the pipe
    for (let i = 0; i < big.length; i += 16384) source.write(big.subarray(i, i + 16384));
    const k = fakeKill();
    const b = startSpawn(desc, libc, { openLog: () => source, kill: k.kill, pollMinMs: 1, logGraceMs: 20 });
    await new Promise((r) => setTimeout(r, 150)); // nobody reads yet
    assert.equal((await text(b.log)).length, big.length);
    assert.deepEqual(await b.wait(), { code: 0, signal: null });
  });

  test('a group that survives SIGKILL fails wait() and kill() with DarwinKillFailed', async () => {
    const libc = fakeLibc();
    const source = new PassThrough();
    source.end();
    const k = fakeKill(Infinity);
    const b = startSpawn(desc, libc, { openLog: () => source, kill: k.kill, pollMinMs: 1, killTimeoutMs: 30 });
    await assert.rejects(b.wait(), (e: unknown) => e instanceof DarwinKillFailed && e.code === 'E_DARWIN_KILL');
    await assert.rejects(b.kill(), DarwinKillFailed);
  });

  test('a failed spawn closes both pipe ends', () => {
    const libc = fakeLibc({ spawnRc: 2 });
    assert.throws(() => startSpawn(desc, libc), /failed with ENOENT/);
    assert.deepEqual(libc.calls.filter((c) => c[0] === 'pipe' || c[0] === 'close'), [['pipe'], ['close', 10], ['close', 11]]);
  });
});
