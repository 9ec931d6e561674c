// `drvbox daemon` and the CLI's `--store unix://PATH` against Nix 2.8:
//   - the real Nix client (nix-store, nix path-info, nix-build, nix build,
//     NIX_REMOTE) against `drvbox daemon --socket` on a temp drvbox store,
//     compared with what Nix computes in its own isolated store;
//   - the drvbox CLI (path-info, store add) against `nix-daemon --store ROOT`
//     listening on a socket of its own, compared with Nix reading ROOT;
//   - an untrusted Nix client (the user drvbox-test) refused the trusted-only
//     operations, and refused outright by allowed-users.
// Always the isolated nix conf dir; never the system daemon socket.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { tempDir } from '../helpers/tmp.js';
import { drvbox, requireRoot, requireTool } from '../helpers/host.js';
import { connectDaemon } from '../../src/daemon/client.js';
import { BuildStatus } from '../../src/daemon/protocol.js';
import { processesMentioning, startDaemon, tempRootFiles, type DaemonProcess } from '../cli/daemon-util.js';

const strip = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');
const TEST_USER = 'drvbox-test';
const SH = '/bin/sh=/usr/bin/busybox';

/** A Nix command run asynchronously (the daemon under test may be in a child, but keep the loop free). */
function nixAsync(o: NixOracle, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: Buffer; asUser?: string } = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...o.env, ...opts.env };
    const [file, argv] = opts.asUser
      ? ['runuser', ['-u', opts.asUser, '--', 'env', ...Object.entries(env).filter(([k]) => /^(NIX_|HOME$|XDG_|PATH$)/.test(k)).map(([k, v]) => `${k}=${v}`), cmd, ...args]]
      : [cmd, args];
    const c = spawn(file, argv as string[], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.stdin.end(opts.input ?? Buffer.alloc(0));
    const timer = setTimeout(() => c.kill('SIGKILL'), 90_000);
    c.on('error', reject);
    c.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr: strip(stderr) });
    });
  });
}

async function drvboxDaemon(t: TestContext, extraConf = '', args: string[] = []): Promise<{ o: NixOracle; d: DaemonProcess; dir: string; root: string; uri: string }> {
  const dir = tempDir(t, 'drvbox-interop-');
  const o = nixOracle(dir, extraConf);
  const root = join(dir, 'drvbox-root');
  const d = await startDaemon(t, { root, socket: join(dir, 'sock'), args });
  return { o, d, dir, root, uri: `unix://${d.socket}` };
}

/** `nix-daemon --store ROOT` listening on `socket` (NIX_DAEMON_SOCKET_PATH). */
async function nixDaemon(t: TestContext, o: NixOracle, socket: string): Promise<() => Promise<void>> {
  const child = spawn('nix-daemon', ['--store', o.root], { env: { ...o.env, NIX_DAEMON_SOCKET_PATH: socket }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let gone = false;
  void exited.then(() => (gone = true));
  const stop = async () => {
    if (!gone) child.kill('SIGTERM');
    await exited;
  };
  t.after(stop);
  const end = Date.now() + 10_000;
  while (!existsSync(socket)) {
    if (gone || Date.now() > end) throw new Error(`nix-daemon did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return stop;
}

describe('Nix 2.8 client -> drvbox daemon --socket', () => {
  test('nix-store --add, -qR, nix path-info --json and NIX_REMOTE agree with Nix on its own store', async (t) => {
    const { o, d, dir, root, uri } = await drvboxDaemon(t);
    const file = join(dir, 'hello.txt');
    writeFileSync(file, 'hello\n');
    const tree = join(dir, 'tree');
    mkdirSync(join(tree, 'sub'), { recursive: true });
    writeFileSync(join(tree, 'sub', 'x'), 'x');
    writeFileSync(join(tree, 'run'), '#!/bin/sh\n', { mode: 0o755 });

    for (const src of [file, tree]) {
      const ours = await nixAsync(o, 'nix-store', ['--store', uri, '--add', src]);
      assert.equal(ours.status, 0, ours.stderr);
      const theirs = o.run('nix-store', ['--add', src]).stdout.toString().trim();
      assert.equal(ours.stdout.trim(), theirs);
      const j1 = JSON.parse((await nixAsync(o, 'nix', ['path-info', '--store', uri, '--json', theirs])).stdout)[0];
      const j2 = JSON.parse(o.run('nix', ['path-info', '--json', theirs]).stdout.toString())[0];
      for (const k of ['path', 'narHash', 'narSize', 'references', 'ca']) assert.deepEqual(j1[k], j2[k], k);
      // and drvbox, reading its store directly, says the same
      const local = JSON.parse(drvbox(['--store', root, 'path-info', '--json', theirs]).stdout)[0];
      assert.deepEqual(local, j1);
    }

    const flat = await nixAsync(o, 'nix-store', ['--store', uri, '--add-fixed', 'sha1', file]);
    assert.equal(flat.stdout.trim(), o.run('nix-store', ['--add-fixed', 'sha1', file]).stdout.toString().trim());

    // a text path with a reference (builtins.toFile through nix-instantiate), then its closure
    const expr = `let a = builtins.toFile "a" "A"; in builtins.toFile "b" "see \${a}"`;
    const b = await nixAsync(o, 'nix-instantiate', ['--store', uri, '--read-write-mode', '--eval', '--json', '-E', expr]);
    assert.equal(b.status, 0, b.stderr);
    const bPath = JSON.parse(b.stdout) as string;
    assert.equal(bPath, JSON.parse(o.run('nix-instantiate', ['--read-write-mode', '--eval', '--json', '-E', expr]).stdout.toString()));
    const qr = await nixAsync(o, 'nix-store', ['--store', uri, '-qR', bPath]);
    assert.equal(qr.status, 0, qr.stderr);
    assert.deepEqual(qr.stdout.trim().split('\n').sort(), o.run('nix-store', ['-qR', bPath]).stdout.toString().trim().split('\n').sort());

    const viaEnv = await nixAsync(o, 'nix-store', ['-q', '--references', bPath], { env: { NIX_REMOTE: uri } });
    assert.equal(viaEnv.status, 0, viaEnv.stderr);
    assert.equal(viaEnv.stdout, o.run('nix-store', ['-q', '--references', bPath]).stdout.toString());
    const ping = await nixAsync(o, 'nix', ['store', 'ping', '--store', uri]);
    assert.match(ping.stdout + ping.stderr, /Version: drvbox \d+\.\d+\.\d+/);

    // an export from Nix's store imports through the daemon (root: trusted)
    const exported = o.run('nix-store', ['--export', bPath]).stdout;
    const imp = await nixAsync(o, 'nix-store', ['--store', uri, '--import'], { input: exported });
    assert.equal(imp.status, 0, imp.stderr);
    assert.equal(imp.stdout.trim(), bPath);

    assert.equal(await d.stop(), 0, d.stderr());
    assert.equal(existsSync(d.socket), false);
    assert.deepEqual(tempRootFiles(root), []);
    assert.deepEqual(processesMentioning(d.socket), []);
  });

  test('nix-build and nix build --json build through the daemon with the drvbox engine', async (t) => {
    const { o, d, uri, root } = await drvboxDaemon(t, '', ['--option', 'sandbox-paths', SH]);
    const expr = 'derivation { name = "two"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = ["out" "dev"]; args = ["-c" "echo building; echo hi > $out; echo dev > $dev"]; }';
    const [drv] = o.instantiate(expr);
    const nb = await nixAsync(o, 'nix-build', ['--store', uri, '--no-out-link', '-E', expr]);
    assert.equal(nb.status, 0, nb.stderr);
    const outs = o.run('nix-store', ['-q', '--outputs', drv!]).stdout.toString().trim().split('\n');
    const out = outs.find((p) => !p.endsWith('-dev'))!;
    // the value's output: out
    assert.equal(nb.stdout, `${out}\n`);
    assert.match(nb.stderr, new RegExp(`building '${drv!.replace(/\./g, '\\.')}'\\.\\.\\.\\nbuilding\\n`), 'the builder output reaches the client');
    assert.equal(readFileSync(join(root, out), 'utf8'), 'hi\n');

    // nix build reads the result map of BuildPathsWithResults (realisation ids must parse)
    const withRoot = `${uri}?root=${root}`;
    const nj = await nixAsync(o, 'nix', ['build', '--store', withRoot, '--no-link', '--json', drv!]);
    assert.equal(nj.status, 0, nj.stderr);
    const dev = outs.find((p) => p.endsWith('-dev'))!;
    assert.deepEqual(JSON.parse(nj.stdout), [{ drvPath: drv, outputs: { dev, out } }]);

    const bad = await nixAsync(o, 'nix-build', ['--store', uri, '--no-out-link', '-E', 'derivation { name = "bad"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo oops; exit 3"]; }']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /error: builder for '\/nix\/store\/[a-z0-9]{32}-bad\.drv' failed with exit code 3;\n\s+last 1 log lines:\n\s+> oops\n/);

    // our client: BuildPathsWithResults with the realisation ids Nix computes
    const c = await connectDaemon({ socketPath: d.socket });
    const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath: drv!, outputs: ['out'] }]);
    assert.equal(r!.status, BuildStatus.AlreadyValid);
    assert.deepEqual(r!.builtOutputs.map((x) => x.outPath), [out]);
    assert.match(r!.builtOutputs[0]!.id, /^sha256:[0-9a-f]{64}!out$/);
    await c.close();
    assert.equal(await d.stop(), 0, d.stderr());
  });
});

describe('drvbox CLI -> nix-daemon --store ROOT on a socket', () => {
  test('path-info --json and store add (nar, flat, text) through the Nix daemon match Nix reading ROOT', async (t) => {
    const dir = tempDir(t, 'drvbox-interop-');
    const o = nixOracle(dir);
    const socket = join(dir, 'nix-daemon.sock');
    const stop = await nixDaemon(t, o, socket);
    const uri = `unix://${socket}`;
    const file = join(dir, 'hello.txt');
    writeFileSync(file, 'hello\n');
    const tree = join(dir, 'tree');
    mkdirSync(tree);
    writeFileSync(join(tree, 'a'), 'a');

    const nar = drvbox(['--store', uri, 'store', 'add', tree]);
    assert.equal(nar.status, 0, nar.stderr);
    const flat = drvbox(['--store', uri, 'store', 'add', '--mode', 'flat', '--type', 'sha1', file]);
    assert.equal(flat.status, 0, flat.stderr);
    const text = drvbox(['--store', uri, 'store', 'add', '--mode', 'text', file]);
    assert.equal(text.status, 0, text.stderr);
    writeFileSync(join(dir, 'user'), `uses ${text.stdout.trim()}`);
    const user = drvbox(['--store', uri, 'store', 'add', '--mode', 'text', '--reference', text.stdout.trim(), join(dir, 'user')]);
    assert.equal(user.status, 0, user.stderr);

    // the same paths Nix computes, valid in ROOT
    const oracle = nixOracle(join(dir, 'fresh'));
    assert.equal(nar.stdout.trim(), oracle.run('nix-store', ['--add', tree]).stdout.toString().trim());
    assert.equal(flat.stdout.trim(), oracle.run('nix-store', ['--add-fixed', 'sha1', file]).stdout.toString().trim());
    assert.equal(text.stdout.trim(), JSON.parse(oracle.run('nix-instantiate', ['--eval', '--json', '-E', 'builtins.toFile "hello.txt" "hello\\n"']).stdout.toString()));
    const all = [nar, flat, text, user].map((r) => r.stdout.trim());
    for (const p of all) assert.equal(o.run('nix-store', ['--check-validity', p], { allowFail: true }).status, 0, `${p} valid in ROOT`);

    for (const p of all) {
      const ours = drvbox(['--store', uri, 'path-info', '--json', p]);
      assert.equal(ours.status, 0, ours.stderr);
      const theirs = o.run('nix', ['path-info', '--json', p]).stdout.toString();
      assert.deepEqual(JSON.parse(ours.stdout), JSON.parse(theirs), p);
    }
    const closure = drvbox(['--store', uri, 'path-info', '--json', '-r', '--closure-size', user.stdout.trim()]);
    assert.deepEqual(JSON.parse(closure.stdout), JSON.parse(o.run('nix', ['path-info', '--json', '-r', '--closure-size', user.stdout.trim()]).stdout.toString()));

    const bad = drvbox(['--store', uri, 'path-info', '/nix/store/00000000000000000000000000000000-x']);
    assert.equal(bad.stderr, "error: path '/nix/store/00000000000000000000000000000000-x' is not valid\n");
    const missingRef = drvbox(['--store', uri, 'store', 'add', '--mode', 'text', '--reference', '/nix/store/00000000000000000000000000000000-x', file]);
    assert.equal(missingRef.status, 1);
    assert.match(missingRef.stderr, /^error: .*\/nix\/store\/00000000000000000000000000000000-x/);
    await stop();
    assert.deepEqual(processesMentioning(socket), []);
  });
});

describe('drvbox build -> nix-daemon --store ROOT (buildViaDaemon)', () => {
  test('a .drv from nix-instantiate and a .json derivation build in the Nix daemon; outputs as Nix reports them', async (t) => {
    const { buildViaDaemon } = await import('../../src/cli/daemon.js');
    const dir = tempDir(t, 'drvbox-interop-');
    const o = nixOracle(dir);
    const socket = join(dir, 'nix-daemon.sock');
    const stop = await nixDaemon(t, o, socket);
    const out: string[] = [];
    const info: string[] = [];
    const closers: Array<() => void | Promise<void>> = [];
    const io = {
      location: { kind: 'daemon' as const, socket, origin: '--store' },
      flags: { verbose: false, quiet: false },
      cwd: dir,
      onClose: (f: () => void | Promise<void>) => void closers.push(f),
      out: (l: string) => void out.push(l),
      info: (m: string) => void info.push(m),
    };
    const closeAll = async () => {
      for (const f of closers.splice(0).reverse()) await f();
    };
    t.after(closeAll);
    const [drv] = o.instantiate('derivation { name = "viad"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo via > $out"]; }');
    assert.equal(await buildViaDaemon(io, [drv!], {}), 0, info.join('\n'));
    const expected = o.run('nix-store', ['-q', '--outputs', drv!]).stdout.toString().trim();
    assert.deepEqual(out, [expected]);
    assert.equal(readFileSync(join(o.root, expected), 'utf8'), 'via\n');
    assert.ok(info.includes(`building '${drv}'...`), info.join('\n'));

    writeFileSync(join(dir, 'j.json'), JSON.stringify({ name: 'fromjson', system: 'x86_64-linux', builder: '/bin/sh', args: ['-c', 'echo json > $out'], env: {} }));
    out.length = 0;
    assert.equal(await buildViaDaemon(io, ['j.json'], { json: true }), 0, info.join('\n'));
    const [r] = JSON.parse(out[0]!) as Array<{ drvPath: string; outputs: { out: string }; status: string }>;
    const local = drvbox(['--store', join(dir, 'local'), 'derivation', 'add', join(dir, 'j.json')]).stdout.trim();
    assert.equal(r!.drvPath, local, 'the .drv path drvbox computes locally');
    assert.equal(r!.status, 'built');
    assert.equal(o.run('nix-store', ['-q', '--outputs', r!.drvPath]).stdout.toString().trim(), r!.outputs.out);
    assert.equal(readFileSync(join(o.root, r!.outputs.out), 'utf8'), 'json\n');
    await closeAll();
    await stop();
  });
});

describe('Nix 2.8 client as an untrusted user -> drvbox daemon', () => {
  function requireTestUser(): void {
    requireRoot(`runs Nix as the unprivileged user '${TEST_USER}'`);
    requireTool('runuser', 'util-linux');
    if (spawnSync('id', ['-u', TEST_USER]).status !== 0) {
      const r = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', TEST_USER], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`cannot create the test user '${TEST_USER}': ${r.stderr}`);
    }
  }

  test('it may add and query, not import unsigned input-addressed paths; allowed-users refuses it with a clear message', async (t) => {
    requireTestUser();
    const { o, d, dir, uri } = await drvboxDaemon(t);
    // let the test user read the config and reach the socket
    for (const p of [dir, o.confDir, join(dir, 'nix-home')]) chmodSync(p, 0o755);
    chmodSync(join(o.confDir, 'nix.conf'), 0o644);
    const file = join(dir, 'f');
    writeFileSync(file, 'f\n', { mode: 0o644 });
    const add = await nixAsync(o, 'nix-store', ['--store', uri, '--add', file], { asUser: TEST_USER, env: { HOME: dir } });
    assert.equal(add.status, 0, add.stderr);
    assert.equal(add.stdout.trim(), o.run('nix-store', ['--add', file]).stdout.toString().trim());

    // an input-addressed path from an export: refused for the untrusted user, accepted for root
    const built = o.run('nix-build', ['--no-out-link', '-E', 'derivation { name = "ia"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo ia > $out"]; }']).stdout.toString().trim();
    const exported = o.run('nix-store', ['--export', built]).stdout;
    const imp = await nixAsync(o, 'nix-store', ['--store', uri, '--import'], { asUser: TEST_USER, env: { HOME: dir }, input: exported });
    assert.equal(imp.status, 1);
    assert.match(imp.stderr, new RegExp(`error: cannot add path '${built}' because it lacks a signature by a trusted key`));
    const asRoot = await nixAsync(o, 'nix-store', ['--store', uri, '--import'], { input: exported });
    assert.equal(asRoot.status, 0, asRoot.stderr);
    assert.equal(asRoot.stdout.trim(), built);
    const repair = await nixAsync(o, 'nix-store', ['--store', uri, '--verify', '--repair'], { asUser: TEST_USER, env: { HOME: dir } });
    assert.equal(repair.status, 1);
    assert.match(repair.stderr, /error: you are not privileged to repair paths\n/);
    const rebuild = await nixAsync(o, 'nix-store', ['--store', uri, '--realise', '--repair', built], { asUser: TEST_USER, env: { HOME: dir } });
    assert.equal(rebuild.status, 1);
    assert.match(rebuild.stderr, /error: repairing is not allowed because you are not in 'trusted-users'\n/);
    assert.equal(await d.stop(), 0);

    const d2 = await startDaemon(t, { root: join(dir, 'drvbox-root'), socket: join(dir, 'sock'), args: ['--option', 'allowed-users', 'root'] });
    const refused = await nixAsync(o, 'nix-store', ['--store', uri, '-q', '--references', built], { asUser: TEST_USER, env: { HOME: dir } });
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, new RegExp(`error: cannot open connection to remote store '${uri.replace(/[/.]/g, '\\$&')}': error: user '${TEST_USER}' is not allowed to connect to the drvbox daemon \\(not in allowed-users: root\\)`));
    assert.equal(await d2.stop(), 0);
  });
});
