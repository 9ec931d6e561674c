// `drvbox daemon`: --stdio and --socket against a temp store, driven by our
// own worker-protocol client and by the drvbox CLI itself (`--store
// unix://PATH`); clean shutdown; 20 concurrent clients; service files.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { CLI, drvbox, requireTool } from '../helpers/host.js';
import { nixSystem } from '../../src/config/settings.js';
import { connectDaemon, DaemonError, type WorkerClient } from '../../src/daemon/client.js';
import { hashBytes } from '../../src/format/hash.js';
import { makeTextPath } from '../../src/format/store-path.js';
import { parseSystemdUnit, splitSystemdWords } from '../../src/daemon/service-files.js';
import { processesMentioning, startDaemon, tempRootFiles } from './daemon-util.js';

const FOO = '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo'; // text "bar" named foo

describe('drvbox daemon --stdio', () => {
  test('serves one trusted client on stdin/stdout and exits 0 when it hangs up', async (t) => {
    const dir = tempDir(t);
    const root = join(dir, 'root');
    const child = spawn(process.execPath, [CLI, '--store', root, 'daemon', '--stdio'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    t.after(() => child.kill('SIGKILL'));
    const c = await connectDaemon({ input: child.stdout, output: child.stdin });
    assert.match(c.daemonNixVersion ?? '', /^drvbox \d+\.\d+\.\d+/);
    assert.equal(await c.addTextToStore('foo', 'bar'), FOO);
    const info = (await c.queryPathInfo(FOO))!;
    assert.equal(info.narSize, 120);
    const parts: Buffer[] = [];
    await c.narFromPath(FOO, (b) => void parts.push(Buffer.from(b)));
    assert.equal(Buffer.concat(parts).length, 120);
    // trusted: signatures may be added
    await c.addSignatures(FOO, ['test:sig']);
    await c.close();
    assert.equal(await exited, 0, err);
    assert.equal(err, '');
    assert.deepEqual(tempRootFiles(root), [], 'the connection released its temp roots');
    // the store is the one the CLI reads
    const r = drvbox(['--store', root, 'path-info', '--json', FOO]);
    assert.equal(JSON.parse(r.stdout)[0].signatures[0], 'test:sig');
  });

  test('connectDaemon with {command, args} starts and stops it', async (t) => {
    const root = join(tempDir(t), 'root');
    const c = await connectDaemon({ command: process.execPath, args: [CLI, '--store', root, 'daemon', '--stdio'] });
    assert.equal(await c.isValidPath(FOO), false);
    assert.equal(await c.addTextToStore('foo', 'bar'), FOO);
    await c.close();
    assert.equal(processesMentioning(root).length, 0);
  });
});

describe('drvbox daemon --socket', () => {
  test('the CLI drives it with --store unix://PATH (path-info, store add), and it stops cleanly on SIGTERM', async (t) => {
    const dir = tempDir(t);
    const root = join(dir, 'root');
    const socket = join(dir, 'run', 'sock');
    const d = await startDaemon(t, { root, socket });
    assert.equal(existsSync(socket), true);
    const uri = `unix://${socket}`;
    writeFileSync(join(dir, 'foo'), 'bar');
    const added = drvbox(['--store', uri, 'store', 'add', '--mode', 'text', join(dir, 'foo')]);
    assert.equal(added.status, 0, added.stderr);
    assert.equal(added.stdout, FOO + '\n');
    mkdirSync(join(dir, 'tree'));
    writeFileSync(join(dir, 'tree', 'x'), 'x');
    const viaDaemon = drvbox(['--store', uri, 'store', 'add', '--name', 'tree', join(dir, 'tree')]);
    assert.equal(viaDaemon.status, 0, viaDaemon.stderr);
    const local = drvbox(['--store', join(dir, 'other-root'), 'store', 'add', '--name', 'tree', join(dir, 'tree')]);
    assert.equal(viaDaemon.stdout, local.stdout, 'the same path as a local add');
    writeFileSync(join(dir, 'user'), `uses ${FOO}`);
    const user = drvbox(['--store', uri, 'store', 'add', '--mode', 'text', '--reference', FOO, join(dir, 'user')]).stdout.trim();
    assert.equal(user, makeTextPath('/nix/store', hashBytes('sha256', `uses ${FOO}`), 'user', [FOO]));

    // path-info through the daemon is byte for byte what the local store prints
    symlinkSync(user, join(dir, 'result'));
    const remote = drvbox(['--store', uri, 'path-info', '--json', '-r', '--closure-size', join(dir, 'result')]);
    assert.equal(remote.status, 0, remote.stderr);
    const direct = drvbox(['--store', root, 'path-info', '--json', '-r', '--closure-size', user]);
    assert.equal(remote.stdout, direct.stdout);
    assert.deepEqual(JSON.parse(remote.stdout).map((o: { path: string }) => o.path), [user, FOO].sort());
    const sizes = drvbox(['--store', uri, 'path-info', '-s', FOO]);
    assert.equal(sizes.stdout, `${FOO}\t${String(120).padStart(11)}\n`);
    const bad = drvbox(['--store', uri, 'path-info', '/nix/store/00000000000000000000000000000000-x']);
    assert.equal(bad.status, 1);
    assert.equal(bad.stderr, "error: path '/nix/store/00000000000000000000000000000000-x' is not valid\n");
    const missing = drvbox(['--store', uri, 'store', 'add', join(dir, 'nope')]);
    assert.equal(missing.status, 1);
    assert.equal(missing.stderr, `error: cannot add '${join(dir, 'nope')}' to the store: it does not exist\n`);

    assert.equal(await d.stop('SIGTERM'), 0, d.stderr());
    assert.equal(existsSync(socket), false, 'socket removed');
    assert.deepEqual(tempRootFiles(root), []);
    assert.deepEqual(processesMentioning(socket), []);
    const gone = drvbox(['--store', uri, 'path-info', FOO]);
    assert.equal(gone.status, 1);
    assert.match(gone.stderr, new RegExp(`^error: cannot connect to daemon at '${socket}': connect ENOENT`));
  });

  test('20 concurrent clients are all served (pool of 4, the rest wait); SIGINT stops it mid-connection', async (t) => {
    const dir = tempDir(t);
    const root = join(dir, 'root');
    const socket = join(dir, 'sock');
    const d = await startDaemon(t, { root, socket, args: ['--option', 'daemon-max-connections', '4'] });
    // each client holds its connection for the whole session: with 4 handlers
    // the other 16 wait unread in the queue until one ends
    let maxActive = 0;
    let active = 0;
    const paths = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const c = await connectDaemon({ socketPath: socket });
        active++;
        maxActive = Math.max(maxActive, active);
        try {
          const p = await c.addTextToStore(`c${i}`, `client ${i}\n`);
          assert.equal((await c.queryPathInfo(p))!.narSize > 0, true);
          assert.equal(await c.isValidPath(p), true);
          await new Promise((r) => setTimeout(r, 20));
          return p;
        } finally {
          active--;
          await c.close();
        }
      }),
    );
    assert.ok(maxActive <= 4, `at most 4 sessions at once (saw ${maxActive})`);
    for (let i = 0; i < 20; i++) assert.equal(paths[i], makeTextPath('/nix/store', hashBytes('sha256', `client ${i}\n`), `c${i}`, []));
    // one connection stays open while the daemon is told to stop
    const last: WorkerClient = await connectDaemon({ socketPath: socket });
    await last.addTempRoot(FOO);
    assert.equal(await d.stop('SIGINT'), 0, d.stderr());
    await assert.rejects(last.isValidPath(FOO));
    await last.close();
    assert.equal(existsSync(socket), false);
    assert.deepEqual(tempRootFiles(root), []);
    assert.deepEqual(processesMentioning(socket), []);
    const all = drvbox(['--store', root, 'path-info', ...paths]);
    assert.equal(all.stdout.trim().split('\n').length, 20);
  });

  test('a stale socket is replaced; a live one or a non-socket is refused', async (t) => {
    const dir = tempDir(t);
    const root = join(dir, 'root');
    const socket = join(dir, 'sock');
    // a daemon killed with SIGKILL leaves its socket behind
    const killed = await startDaemon(t, { root, socket });
    assert.equal(await killed.stop('SIGKILL'), 137);
    assert.equal(existsSync(socket), true);
    const d = await startDaemon(t, { root, socket });
    const second = drvbox(['--store', root, 'daemon', '--socket', socket]);
    assert.equal(second.status, 1);
    assert.equal(second.stderr, `error: cannot listen on '${socket}': a daemon is already listening there\n`);
    assert.equal(await d.stop(), 0);
    writeFileSync(join(dir, 'file'), '');
    const notSock = drvbox(['--store', root, 'daemon', '--socket', join(dir, 'file')]);
    assert.equal(notSock.stderr, `error: cannot listen on '${join(dir, 'file')}': it exists and is not a socket\n`);
    const long = drvbox(['--store', root, 'daemon', '--socket', join(dir, 'x'.repeat(120))]);
    assert.match(long.stderr, /^error: socket path '.*' is \d+ bytes, longer than the 107-byte limit of unix sockets on linux\n$/);
  });

  test('building a derivation through the daemon needs a valid .drv; errors come back as daemon errors', async (t) => {
    const dir = tempDir(t);
    const root = join(dir, 'root');
    const socket = join(dir, 'sock');
    const d = await startDaemon(t, { root, socket });
    const c = await connectDaemon({ socketPath: socket });
    t.after(() => c.close());
    const drv = '/nix/store/00000000000000000000000000000000-x.drv';
    await assert.rejects(c.buildPaths([{ kind: 'built', drvPath: drv, outputs: [] }]), (e: unknown) => e instanceof DaemonError && e.message.includes(drv));
    assert.equal(await c.isValidPath(drv), false, 'the connection is still usable');
    await c.close();
    assert.equal(await d.stop(), 0);
  });
});

describe('drvbox daemon: builds', () => {
  test('a client that hangs up mid-build: the builder is killed, its temp roots go, the daemon serves on', async (t) => {
    requireTool('busybox', 'apt-get install -y busybox-static');
    const dir = tempDir(t);
    const root = join(dir, 'root');
    const marker = `drvbox-hangup-${process.pid}-${Date.now()}`;
    writeFileSync(
      join(dir, 'slow.json'),
      JSON.stringify({ name: 'slow', system: nixSystem(process.platform, process.arch), builder: '/bin/sh', args: ['-c', `echo started; sleep 1000; : ${marker}`], env: {} }),
    );
    const added = drvbox(['--store', root, 'derivation', 'add', join(dir, 'slow.json')]);
    assert.equal(added.status, 0, added.stderr);
    const drv = added.stdout.trim();
    const d = await startDaemon(t, { root, socket: join(dir, 'sock'), args: ['--option', 'sandbox-paths', '/bin/sh=/usr/bin/busybox'] });
    const lines: string[] = [];
    // our own socket, so the test can hang up with a call in flight (close() would wait for it)
    const sock = createConnection(d.socket);
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    sock.on('error', () => undefined);
    const c = await connectDaemon({ input: sock, output: sock }, { onLog: (e) => void (e.type === 'result' && lines.push(String(e.fields[0]))) });
    const build = c.buildPaths([{ kind: 'built', drvPath: drv, outputs: [] }]);
    build.catch(() => undefined);
    const until = async (cond: () => boolean, what: string) => {
      const end = Date.now() + 15_000;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}; daemon said: ${d.stderr()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until(() => processesMentioning(marker).length > 0, 'the builder to run');
    await until(() => lines.includes('started'), "the builder's log line to reach the client");
    sock.destroy();
    await assert.rejects(build);
    await c.close();
    await until(() => processesMentioning(marker).length === 0, 'the builder to be killed');
    await until(() => tempRootFiles(root).length === 0, 'the connection to drop its temp roots');
    const again = await connectDaemon({ socketPath: d.socket });
    assert.equal(await again.isValidPath(drv), true);
    await again.close();
    assert.equal(await d.stop(), 0, d.stderr());
    assert.deepEqual(processesMentioning(marker), []);
  });
});

describe('drvbox build through a daemon (buildViaDaemon)', () => {
  /** A CliContext stand-in that records what would be printed. */
  function recorder(socket: string, cwd: string) {
    const closers: Array<() => void | Promise<void>> = [];
    const io = {
      location: { kind: 'daemon' as const, socket, origin: '--store' },
      flags: { verbose: true, quiet: false },
      cwd,
      out: [] as string[],
      info: [] as string[],
    };
    return {
      io: { ...io, onClose: (f: () => void | Promise<void>) => void closers.push(f), out: (l: string) => void io.out.push(l), info: (m: string) => void io.info.push(m) },
      rec: io,
      close: async () => {
        for (const f of closers.reverse()) await f();
      },
    };
  }

  test('.json targets are added, built with their inputs, printed; --json, --out-link (rooted in the daemon store), failures', async (t) => {
    requireTool('busybox', 'apt-get install -y busybox-static');
    const { buildViaDaemon } = await import('../../src/cli/daemon.js');
    const dir = tempDir(t);
    const root = join(dir, 'root');
    const system = nixSystem(process.platform, process.arch);
    const d = await startDaemon(t, { root, socket: join(dir, 'sock'), args: ['--option', 'sandbox-paths', '/bin/sh=/usr/bin/busybox'] });
    writeFileSync(join(dir, 'greeting.json'), JSON.stringify({ name: 'greeting', system, builder: '/bin/sh', args: ['-c', "echo 'Hello from a dependency' > $out"], env: {} }));

    const a = recorder(d.socket, dir);
    t.after(a.close);
    assert.equal(await buildViaDaemon(a.io, ['greeting.json'], { json: true }), 0);
    const [g] = JSON.parse(a.rec.out[0]!) as Array<{ drvPath: string; outputs: { out: string }; status: string }>;
    assert.equal(g!.status, 'built');
    assert.equal(readFileSync(join(root, g!.outputs.out), 'utf8'), 'Hello from a dependency\n');
    // the same .drv and output paths as a local `derivation add`
    const local = drvbox(['--store', join(dir, 'local'), 'derivation', 'add', join(dir, 'greeting.json')]);
    assert.equal(local.stdout.trim(), g!.drvPath);

    writeFileSync(
      join(dir, 'use.json'),
      JSON.stringify({
        name: 'use-greeting',
        system,
        builder: '/bin/sh',
        inputDrvs: { [g!.drvPath]: ['out'] },
        args: ['-c', 'read line < $greeting; echo "$line, read by $name" > $out'],
        env: { name: 'use-greeting', greeting: g!.outputs.out },
      }),
    );
    const b = recorder(d.socket, dir);
    t.after(b.close);
    assert.equal(await buildViaDaemon(b.io, ['use.json'], { outLink: 'result' }), 0);
    assert.equal(b.rec.out.length, 1);
    const useOut = b.rec.out[0]!;
    assert.equal(readFileSync(join(root, useOut), 'utf8'), 'Hello from a dependency, read by use-greeting\n');
    assert.ok(b.rec.info.some((l) => /^building '\/nix\/store\/[a-z0-9]{32}-use-greeting\.drv'\.\.\.$/.test(l)), b.rec.info.join('\n'));
    const { readlinkSync } = await import('node:fs');
    assert.equal(readlinkSync(join(dir, 'result')), useOut);
    const roots = drvbox(['--store', root, 'store', 'gc', '--dry-run']);
    assert.equal(roots.stdout.includes(useOut), false, 'the out-link is a root of the daemon store');

    // valid already: printed again, nothing built; a store path target with ^out
    const c = recorder(d.socket, dir);
    t.after(c.close);
    assert.equal(await buildViaDaemon(c.io, [`${g!.drvPath}^out`], {}), 0);
    assert.deepEqual(c.rec.out, [g!.outputs.out]);

    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ name: 'bad', system, builder: '/bin/sh', args: ['-c', 'echo oops; exit 3'], env: {} }));
    const e = recorder(d.socket, dir);
    t.after(e.close);
    assert.equal(await buildViaDaemon(e.io, ['bad.json'], { json: true }), 100);
    const [bad] = JSON.parse(e.rec.out[0]!) as Array<{ status: string; error: string; outputs: object }>;
    assert.equal(bad!.status, 'failed');
    assert.deepEqual(bad!.outputs, {});
    assert.match(bad!.error, /^builder for '\/nix\/store\/[a-z0-9]{32}-bad\.drv' failed with exit code 3;\nlast 1 log lines:\n> oops$/);
    await assert.rejects(buildViaDaemon(e.io, ['/nix/store/00000000000000000000000000000000-x.drv'], {}), /path '\/nix\/store\/00000000000000000000000000000000-x\.drv' is not valid/);
    await assert.rejects(buildViaDaemon(e.io, [`${g!.drvPath}^dev`], {}), /does not have wanted outputs 'dev'/);
    await a.close();
    await b.close();
    await c.close();
    await e.close();
    assert.equal(await d.stop(), 0, d.stderr());
  });
});

describe('drvbox daemon --install / --print', () => {
  test('--print writes a systemd unit whose ExecStart runs this daemon on the store and socket', (t) => {
    const dir = tempDir(t);
    const root = join(dir, 'root');
    const r = drvbox(['--store', root, '--option', 'trusted-users', 'root alice', 'daemon', '--print', '--platform', 'linux', '--socket', join(dir, 's')]);
    assert.equal(r.status, 0, r.stderr);
    const unit = parseSystemdUnit(r.stdout);
    const exec = unit.get('Service')!.find(([k]) => k === 'ExecStart')![1];
    assert.deepEqual(splitSystemdWords(exec, true), [process.execPath, CLI, '--store', root, '--option', 'trusted-users', 'root alice', 'daemon', '--socket', join(dir, 's')]);
    assert.deepEqual(unit.get('Install'), [['WantedBy', 'multi-user.target']]);
    assert.match(r.stderr, /# systemd system service; install it as '\/etc\/systemd\/system\/drvbox-daemon\.service'/);
  });

  test('--print --platform darwin writes a launchd property list', (t) => {
    const dir = tempDir(t);
    const r = drvbox(['--store', join(dir, 'root'), 'daemon', '--print', '--platform', 'darwin', '--socket', '/var/run/drvbox.sock']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /<key>Label<\/key>\s*<string>org\.drvbox\.daemon<\/string>/);
    assert.match(r.stdout, /<string>--socket<\/string>\s*<string>\/var\/run\/drvbox\.sock<\/string>/);
    assert.match(r.stderr, /install it as '\/Library\/LaunchDaemons\/org\.drvbox\.daemon\.plist'/);
  });

  test('--install --user --write-only writes the unit under $HOME and prints its path', (t) => {
    const home = tempDir(t);
    const root = join(home, 'root');
    const r = drvbox(['--store', root, 'daemon', '--install', '--user', '--write-only'], { env: { HOME: home, XDG_DATA_HOME: join(home, 'data') } });
    assert.equal(r.status, 0, r.stderr);
    const path = join(home, '.config', 'systemd', 'user', 'drvbox-daemon.service');
    assert.equal(r.stdout, path + '\n');
    const unit = parseSystemdUnit(readFileSync(path, 'utf8'));
    const argv = splitSystemdWords(unit.get('Service')!.find(([k]) => k === 'ExecStart')![1], true);
    assert.deepEqual(argv.slice(-3), ['daemon', '--socket', join(home, 'data', 'drvbox', 'daemon-socket', 'socket')]);
    assert.deepEqual(unit.get('Install'), [['WantedBy', 'default.target']]);
    assert.match(r.stderr, /to start it: systemctl --user daemon-reload && systemctl --user enable --now drvbox-daemon\.service/);
  });

  test('bad flag combinations are usage errors', (t) => {
    const root = join(tempDir(t), 'root');
    assert.equal(drvbox(['--store', root, 'daemon', '--stdio', '--socket', '/tmp/x']).stderr, "error: 'daemon' takes --stdio or --socket, not both\n");
    assert.equal(drvbox(['--store', root, 'daemon', '--user']).stderr, "error: '--user' only applies to --install and --print\n");
    assert.equal(drvbox(['--store', root, 'daemon', '--print', '--platform', 'plan9']).stderr, "error: cannot make a daemon service for 'plan9' (expected darwin or linux)\n");
    const viaDaemon = drvbox(['--store', 'unix:///tmp/nonexistent-drvbox.sock', 'daemon', '--socket', '/tmp/x']);
    assert.equal(viaDaemon.status, 1);
    assert.match(viaDaemon.stderr, /^error: this command needs a local store, not the daemon at '\/tmp\/nonexistent-drvbox\.sock'\n$/);
  });
});
