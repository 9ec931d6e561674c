// The executor for real, through koffi and glibc's posix_spawn: the same code
// path as on macOS except binpref, the arch sysctl and CLOEXEC_DEFAULT (which
// glibc lacks). Linux-only by name; on macOS the *.darwin tests cover it.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { text } from 'node:stream/consumers';
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { hostLibc } from '../../../backends/darwin/libc.js';
import { startSpawn } from '../../../backends/darwin/spawn-exec.js';
import { describeSpawn } from '../../../backends/darwin/spawn-plan.js';
import { hostSignalNames } from '../../../backends/darwin/status.js';
import { tempDir } from '../../helpers/tmp.js';
import { requireLinux } from '../../helpers/host.js';

function shell(script: string, cwd: string, env: Record<string, string> = {}) {
  return describeSpawn({
    drvPath: '/nix/store/00000000000000000000000000000000-test.drv',
    system: 'x86_64-linux',
    builder: '/bin/sh',
    args: ['-c', script],
    env: { PATH: '/usr/bin:/bin', ...env },
    cwd,
    profilePath: null,
    params: [],
    credentials: null,
  });
}

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

describe('posix_spawn through koffi (Linux)', () => {
  const opts = { signalNames: hostSignalNames('linux'), logGraceMs: 500 };

  test('stdout and stderr in one log, exit code, cwd, exact env, stdin from /dev/null', async (t) => {
    requireLinux('glibc posix_spawn');
    const dir = realpathSync(tempDir(t));
    const libc = await hostLibc();
    const b = startSpawn(shell('echo out; echo err >&2; pwd; cat; printf "%s|%s\\n" "$FOO" "${HOME-unset}"; exit 3', dir, { FOO: 'bar baz' }), libc, opts);
    const [log, status] = await Promise.all([text(b.log), b.wait()]);
    assert.equal(log, `out\nerr\n${dir}\nbar baz|unset\n`);
    assert.deepEqual(status, { code: 3, signal: null });
    const u = b.usage();
    assert.ok(u && u.cpuUserMs >= 0 && u.cpuSystemMs >= 0);
  });

  test('own process group, default signal dispositions, only stdin/stdout/stderr', async (t) => {
    requireLinux('procfs');
    const dir = realpathSync(tempDir(t));
    const libc = await hostLibc();
    const b = startSpawn(shell('exec sleep 30', dir), libc, opts);
    try {
      // Looked at from outside once sleep runs: a shell holds descriptors of
      // its own and blocks every signal for an instant whenever it forks.
      for (let i = 0; i < 200 && readFileSync(`/proc/${b.pid}/comm`, 'utf8').trim() !== 'sleep'; i++) await new Promise((r) => setTimeout(r, 10));
      const stat = readFileSync(`/proc/${b.pid}/stat`, 'utf8');
      assert.equal(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2], String(b.pid), 'process group');
      const status = readFileSync(`/proc/${b.pid}/status`, 'utf8');
      // Node ignores SIGPIPE; the builder must not inherit that.
      assert.match(status, /^SigIgn:\t0000000000000000$/m);
      assert.match(status, /^SigBlk:\t0000000000000000$/m);
      assert.deepEqual(readdirSync(`/proc/${b.pid}/fd`).sort(), ['0', '1', '2']);
      assert.equal(readlinkSync(`/proc/${b.pid}/fd/0`), '/dev/null');
      assert.equal(readlinkSync(`/proc/${b.pid}/fd/1`), readlinkSync(`/proc/${b.pid}/fd/2`));
    } finally {
      await b.kill();
    }
  });

  test('kill() leaves nothing of the group running', async (t) => {
    requireLinux('posix_spawn');
    const dir = realpathSync(tempDir(t));
    const libc = await hostLibc();
    const b = startSpawn(shell('sleep 100 & echo $!; sleep 100 & echo $!; wait', dir), libc, opts);
    let seen = '';
    const pids = await new Promise<number[]>((resolve) => {
      b.log.on('data', (c: Buffer) => {
        seen += c.toString();
        const lines = seen.split('\n').filter(Boolean);
        if (lines.length >= 2) resolve(lines.map(Number));
      });
    });
    await b.kill();
    assert.deepEqual(await b.wait(), { code: null, signal: 'SIGKILL' });
    for (const p of [b.pid, ...pids]) assert.ok(gone(p), `process ${p} is still there`);
  });

  test('processes left behind by a builder that exited are killed before wait() resolves', async (t) => {
    requireLinux('posix_spawn');
    const dir = realpathSync(tempDir(t));
    const libc = await hostLibc();
    const b = startSpawn(shell('sleep 100 >/dev/null 2>&1 & echo $!; exit 0', dir), libc, opts);
    const [log, status] = await Promise.all([text(b.log), b.wait()]);
    assert.deepEqual(status, { code: 0, signal: null });
    assert.ok(gone(Number(log.trim())), 'the background sleep survived the build');
  });

  test('a missing builder is a clean spawn error', async (t) => {
    requireLinux('posix_spawn');
    const dir = realpathSync(tempDir(t));
    const libc = await hostLibc();
    const d = { ...shell('true', dir), path: '/nonexistent/builder' };
    assert.throws(() => startSpawn(d, libc, opts), /posix_spawn of '\/nonexistent\/builder' failed with ENOENT/);
  });
});
