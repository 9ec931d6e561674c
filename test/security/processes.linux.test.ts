// Security battery, process half: network, processes, signals, ptrace, the
// terminal, leftovers. Each attempt runs as root and as an unprivileged user.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processesMatching, sandbox, WHO } from './harness.js';
import { requireSandbox } from '../helpers/sandbox.js';

// Where the sandbox is unavailable every attempt fails, saying why (never skips).
before(() => requireSandbox('the security battery'));

async function listener(t: { after(fn: () => void): void }): Promise<{ port: number; received: () => string; connections: () => number }> {
  let data = '';
  let connections = 0;
  const server = createServer((sock: Socket) => {
    connections++;
    sock.on('data', (c) => (data += c.toString()));
    sock.on('end', () => sock.end());
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  t.after(() => server.close());
  return { port: (server.address() as AddressInfo).port, received: () => data, connections: () => connections };
}

const unique = (): number => 900000 + Math.floor(Math.random() * 99999);

for (const who of WHO) {
  describe(`process and network escapes (${who})`, () => {
    test('a listener on the host 127.0.0.1 is unreachable from a normal build', async (t) => {
      const s = sandbox(t, who);
      const l = await listener(t);
      const r = await s.run(`echo hello | $B nc 127.0.0.1 ${l.port}; echo "rc=$?"`);
      assert.match(r.log, /nc: can't connect to remote host \(127\.0\.0\.1\): Connection refused\nrc=1\n/);
      assert.equal(l.connections(), 0);
    });

    test('a fixed-output build can reach the host 127.0.0.1 listener', async (t) => {
      const s = sandbox(t, who);
      const l = await listener(t);
      const r = await s.run(`echo hello-from-fod | $B nc 127.0.0.1 ${l.port}; echo "rc=$?"`, { fixedOutput: true });
      assert.equal(r.log, 'rc=0\n');
      assert.equal(l.received(), 'hello-from-fod\n');
    });

    test('host processes are invisible', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run(`$B ps -o pid,args | $B grep -c '[n]ode'; $T kill ${process.pid} 0; $T list /proc | $B tr ' ' '\\n' | $B grep -c '^[0-9][0-9]*$'`);
      const [nodeCount, kill, pidCount] = r.log.trim().split('\n');
      assert.equal(nodeCount, '0');
      assert.equal(kill, 'kill: ESRCH');
      // Only the build's own few processes (sh, the pipeline) exist.
      assert.ok(Number(pidCount) >= 1 && Number(pidCount) <= 5, `pids visible: ${pidCount}`);
    });

    test('the parent cannot be signalled', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run(`$T kill ${process.pid} 9; $T kill ${process.ppid} 9; echo "ppid=$PPID"; $B kill -9 -1; echo survived`);
      // kill -1 reaches only the sandbox's processes, and spares its init.
      assert.equal(r.log, `kill: ESRCH\nkill: ESRCH\nppid=0\nkill: can't kill pid -1: No such process\nsurvived\n`);
      assert.equal(r.code, 0);
      assert.ok(r.monitorPid > 0);
    });

    test('an outside process cannot be ptraced', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run(`$T ptrace ${process.pid}; $T ptrace ${process.ppid}`);
      assert.equal(r.log, 'ptrace: ESRCH\nptrace: ESRCH\n');
    });

    test('no controlling terminal and no TIOCSTI injection', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run('$T opentty; $T tiocsti 0; $T tiocsti 1; $T tiocsti 2; $T tiocsti-high 1');
      assert.equal(r.log, 'opentty: ENXIO\ntiocsti: EPERM\ntiocsti: EPERM\ntiocsti: EPERM\ntiocsti-high: EPERM\n');
    });

    test('io_uring is unavailable (ENOSYS)', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run('$T io_uring');
      assert.equal(r.log, 'io_uring: ENOSYS\n');
    });

    test('a daemonised grandchild is gone after the build', async (t) => {
      const s = sandbox(t, who);
      const n = unique();
      const r = await s.run(
        `$B ln -s /bin/busybox /tmp/sleep; ` +
          `($B setsid /tmp/sleep ${n} </dev/null >/dev/null 2>&1 &); ` +
          `($B setsid $B sh -c '/tmp/sleep 1; echo late > /build/late' </dev/null >/dev/null 2>&1 &); ` +
          `$B sleep 0.2; $B pidof sleep | $B wc -w`,
      );
      assert.equal(r.code, 0);
      assert.equal(r.log, '2\n'); // both were running during the build
      assert.deepEqual(processesMatching(`sleep ${n}`), []);
      await sleep(1300);
      assert.equal(existsSync(join(s.fx.buildDir, 'late')), false);
    });

    test('kill() (the timeout path) leaves no process behind', async (t) => {
      const s = sandbox(t, who);
      const n = unique();
      const started = Date.now();
      const r = await s.run(`($B setsid $B sleep ${n} &); $B sleep ${n + 1}`, {}, { killAfterMs: 300 });
      assert.equal(r.signal, 'SIGKILL');
      assert.equal(r.code, null);
      assert.ok(Date.now() - started < 10000);
      assert.deepEqual(processesMatching(`sleep ${n}`), []);
      assert.deepEqual(processesMatching(`sleep ${n + 1}`), []);
      assert.equal(processesMatching('drvbox-launcher').includes(r.monitorPid), false);
    });
  });
}
