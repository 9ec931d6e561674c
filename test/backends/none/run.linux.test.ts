// The unsandboxed backend on Linux, for real: the builder runs as init of its
// own PID namespace (launcher in minimal mode), or in a process group.
import { before, test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PlanHost } from '../../../backends/backend.js';
import { createNoneBackend, pidNamespaceProblem } from '../../../backends/none/index.js';
import { requireSandbox } from '../../helpers/sandbox.js';
import { requireLinux } from '../../helpers/host.js';
import { tempDir } from '../../helpers/tmp.js';
import { collect, request } from './fixture.js';

const host: PlanHost = { platform: 'linux', arch: process.arch, lstat: () => 'missing', realpath: (p) => p };

function alive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return st.slice(st.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !alive(pid);
}

for (const containment of ['pid-namespace', 'process-group'] as const) {
  describe(`none backend on Linux (${containment})`, () => {
    const be = createNoneBackend({ plan: { containment } });
    // The PID namespace needs (user) namespaces: fail here rather than pass through the process-group fallback.
    if (containment === 'pid-namespace') before(() => requireSandbox('builders in their own PID namespace'));

    test('exact argv and cwd; stdout and stderr in one stream; exit code', async (t) => {
      requireLinux('the PID namespace containment');
      const dir = tempDir(t);
      const spec = be.plan(
        request({ builder: '/bin/sh', args: ['-c', 'echo "argv0=$0 args=$*"; pwd; echo to-stderr >&2; exit 7', 'a b', 'c'], buildDirHost: dir }),
        host,
      );
      const r = await be.start(spec);
      const [text, status] = await Promise.all([collect(r), r.wait()]);
      if (containment === 'pid-namespace') assert.equal(pidNamespaceProblem(), null, 'fell back to process groups');
      assert.deepEqual(status, { code: 7, signal: null });
      assert.equal(text, `argv0=a b args=c\n${dir}\nto-stderr\n`);
    });

    test('the environment is exactly the prepared one, in byte order of the names', async (t) => {
      requireLinux('the PID namespace containment');
      const dir = tempDir(t);
      const env = { Z: 'last', A: 'first', M: 'mid with spaces', PATH: '/path-not-set', 'é': 'x', a: 'lower' };
      const r = await be.start(be.plan(request({ builder: '/usr/bin/busybox', args: ['cat', '/proc/self/environ'], env, buildDirHost: dir }), host));
      const [text, status] = await Promise.all([collect(r), r.wait()]);
      assert.deepEqual(status, { code: 0, signal: null });
      assert.equal(text, 'A=first\0M=mid with spaces\0PATH=/path-not-set\0Z=last\0a=lower\0é=x\0');
    });

    test('a builder that cannot be executed fails like Nix: the message in the log, exit code 1', async (t) => {
      requireLinux('the PID namespace containment');
      const dir = tempDir(t);
      // Twice: the second start does not wait for the exec to be confirmed.
      for (let i = 0; i < 2; i++) {
        const r = await be.start(be.plan(request({ builder: join(dir, 'nope'), args: [], buildDirHost: dir }), host));
        const [text, status] = await Promise.all([collect(r), r.wait()]);
        assert.deepEqual(status, { code: 1, signal: null });
        assert.equal(text, `error: executing '${join(dir, 'nope')}': No such file or directory\n`);
      }
      const r = await be.start(be.plan(request({ builder: '/etc/passwd', args: [], buildDirHost: dir }), host));
      const [text, status] = await Promise.all([collect(r), r.wait()]);
      assert.deepEqual(status, { code: 1, signal: null });
      assert.equal(text, `error: executing '/etc/passwd': ${containment === 'pid-namespace' ? 'Permission denied' : 'spawn /etc/passwd EACCES'}\n`);
    });

    test('kill() ends the whole build, including a grandchild that daemonised itself (setsid)', async (t) => {
      requireLinux('the PID namespace containment');
      const dir = tempDir(t);
      const pidFile = join(dir, 'daemon.pid');
      const script =
        `/usr/bin/busybox setsid /usr/bin/busybox sh -c 'echo $$ > ${pidFile}.tmp; ` +
        `/usr/bin/busybox mv ${pidFile}.tmp ${pidFile}; exec /usr/bin/busybox sleep 300' </dev/null >/dev/null 2>&1 & ` +
        'echo started; exec /usr/bin/busybox sleep 300';
      const r = await be.start(be.plan(request({ args: ['-c', script], buildDirHost: dir, env: { NIX_BUILD_TOP: dir, PATH: '/path-not-set' } }), host));
      const logDone = collect(r);
      const end = Date.now() + 5000;
      while (!existsSync(pidFile) && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
      assert.ok(existsSync(pidFile), 'the daemon did not start');
      // In a PID namespace the daemon records its pid inside it; find it on the host by its session.
      const inner = Number(readFileSync(pidFile, 'utf8'));
      await r.kill();
      const status = await r.wait();
      assert.equal(status.code, null);
      assert.equal(status.signal, 'SIGKILL');
      await logDone;
      if (containment === 'process-group') assert.ok(await waitGone(inner, 2000), `daemonised process ${inner} survived`);
      // Either way: no process with the build's NIX_BUILD_TOP is left.
      const left: number[] = [];
      for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number)) {
        try {
          if (readFileSync(`/proc/${p}/environ`).includes(Buffer.from(`NIX_BUILD_TOP=${dir}\0`)) && alive(p)) left.push(p);
        } catch {
          // gone
        }
      }
      assert.deepEqual(left, []);
    });

    test('the builder can kill itself (`kill -9 $$`), as without a PID namespace: it is not the namespace\'s init', async (t) => {
      requireLinux('the PID namespace containment');
      const dir = tempDir(t);
      for (const [sig, name] of [
        ['9', 'SIGKILL'],
        ['TERM', 'SIGTERM'],
      ] as const) {
        const r = await be.start(be.plan(request({ args: ['-c', `echo before; kill -${sig} $$; echo survived`], buildDirHost: dir }), host));
        const [text, status] = await Promise.all([collect(r), r.wait()]);
        assert.equal(text, 'before\n', sig);
        assert.deepEqual(status, { code: null, signal: name });
      }
    });

    test('the builder\'s own exit status is reported, not its init\'s; usage() has its CPU time', async (t) => {
      requireLinux('the PID namespace containment');
      const dir = tempDir(t);
      const r = await be.start(
        be.plan(request({ args: ['-c', 'i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; (exit 5) & wait; exit 42'], buildDirHost: dir }), host),
      );
      const [, status] = await Promise.all([collect(r), r.wait()]);
      assert.deepEqual(status, { code: 42, signal: null });
      if (containment === 'pid-namespace') {
        const u = r.usage();
        assert.ok(u && u.cpuUserMs + u.cpuSystemMs > 0, JSON.stringify(u));
      }
    });

    test('the builder exiting ends its background processes too (they would hold the log open)', async (t) => {
      requireLinux('the PID namespace containment');
      const dir = tempDir(t);
      const r = await be.start(
        be.plan(request({ args: ['-c', '/usr/bin/busybox sleep 300 & echo bye'], buildDirHost: dir, env: { NIX_BUILD_TOP: dir } }), host),
      );
      const started = Date.now();
      const [text, status] = await Promise.all([collect(r), r.wait()]);
      assert.equal(text, 'bye\n');
      assert.deepEqual(status, { code: 0, signal: null });
      assert.ok(Date.now() - started < 5000, 'the log stayed open');
    });
  });
}

