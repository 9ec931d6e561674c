// Rootless: an unprivileged user runs `npx drvbox build examples/hello.json`
// in a checkout of their own, with nothing configured: the embedded default
// store ($XDG_DATA_HOME/drvbox under their HOME), the sandbox (the store is
// diverted, so nothing else could build there), /nix/store output paths, and
// the default sandbox-paths giving the builder a /bin/sh. Also with the
// fallback default a host without a static busybox gets: its own /bin/sh
// with the loader and libraries.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, cpSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync, chmodSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { defaultShell, localShellHost } from '../../backends/linux/default-shell.js';
import { REPO_ROOT, requireTool } from '../helpers/host.js';
import { removeTree } from '../helpers/tmp.js';
import { ensureTestUser, TEST_USER, type Ids } from '../security/harness.js';
import { requireSandbox } from '../helpers/sandbox.js';

const SYSTEM = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux`;

describe('rootless: npx drvbox build on the embedded default store', () => {
  let dir = '';
  let ids: Ids;
  let checkout = '';
  let home = '';

  before(async () => {
    ids = ensureTestUser();
    requireTool('npx', 'it comes with npm');
    await requireSandbox('builds as an unprivileged user in the namespace sandbox');
    dir = mkdtempSync('/tmp/drvbox-rootless-');
    chmodSync(dir, 0o755);
    checkout = join(dir, 'drvbox');
    home = join(dir, 'home');
    mkdirSync(home);
    // The user's own copy of the built package (npx links it and marks its
    // bin executable, which needs the user to own it); dependencies shared.
    mkdirSync(checkout);
    for (const p of ['package.json', 'dist', 'examples']) cpSync(join(REPO_ROOT, p), join(checkout, p), { recursive: true, preserveTimestamps: true });
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(checkout, 'node_modules'));
    const chownTree = (p: string): void => {
      chownSync(p, ids.uid, ids.gid);
      if (statSync(p).isDirectory()) for (const e of readdirSync(p)) chownTree(join(p, e));
    };
    chownTree(checkout);
    chownSync(home, ids.uid, ids.gid);
  });

  after(() => {
    if (dir && !process.env.DRVBOX_KEEP_TEST_DIRS) removeTree(dir);
  });

  /** npx drvbox ARGS as the test user, in the checkout, with a clean environment. */
  const npx = (args: string[]) => {
    const r = spawnSync(
      'runuser',
      [
        '-u', TEST_USER, '--', 'env', '-i',
        `HOME=${home}`, `PATH=${process.env.PATH}`, 'LANG=C.UTF-8',
        // The copy is built already; `prepare` would rebuild it.
        'npm_config_ignore_scripts=true', 'npm_config_update_notifier=false', 'npm_config_fund=false', 'npm_config_audit=false',
        'npx', '--offline', 'drvbox', ...args,
      ],
      { cwd: checkout, encoding: 'utf8' },
    );
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const storeFile = (p: string) => join(home, '.local', 'share', 'drvbox', p);

  test('examples/hello.json builds sandboxed with a /nix/store output path', () => {
    const r = npx(['build', 'examples/hello.json']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^\/nix\/store\/[0-9a-z]{32}-hello\n$/);
    assert.doesNotMatch(r.stderr, /warning/);
    const out = r.stdout.trim();
    assert.equal(readFileSync(storeFile(out), 'utf8'), 'Hello, world!\n');
    const st = statSync(storeFile(out));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [ids.uid, ids.gid, 0o444]);
    // The same derivation again: a cached no-op.
    const again = npx(['build', 'examples/hello.json']);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(again.stdout, r.stdout);
  });

  test('examples/dependency.json with -j2: the dependent, prestarted (its sandbox held) while its input builds, reads it', () => {
    const r = npx(['build', '-j', '2', 'examples/dependency.json']);
    assert.equal(r.status, 0, r.stderr);
    const outs = r.stdout.trim().split('\n');
    assert.equal(outs.length, 2, r.stdout);
    const use = outs.find((p) => p.endsWith('-use-greeting'))!;
    assert.equal(readFileSync(storeFile(use), 'utf8'), 'Hello from a dependency, read by use-greeting\n');
  });

  test('the builder ran in the sandbox: /build, uid 1000 mapped to the user, hostname localhost', () => {
    const file = join(checkout, 'where.json');
    const script = 'read -r m < /proc/self/uid_map; read -r h < /proc/sys/kernel/hostname; echo "$NIX_BUILD_TOP $PWD $h" > $out; echo $m >> $out';
    writeFileSync(file, JSON.stringify({ name: 'where', system: SYSTEM, builder: '/bin/sh', args: ['-c', script] }));
    chownSync(file, ids.uid, ids.gid);
    const r = npx(['build', 'where.json']);
    assert.equal(r.status, 0, r.stderr);
    const text = readFileSync(storeFile(r.stdout.trim()), 'utf8');
    assert.equal(text, `/build /build localhost\n1000 ${ids.uid} 1\n`);
  });

  test('without a static busybox: the host /bin/sh with its loader and libraries works as the default', () => {
    // What a host without busybox-static gets by default (computed here as if busybox were absent).
    const host = localShellHost();
    const dflt = defaultShell({ ...host, isFile: (p) => !p.includes('busybox') && host.isFile(p) });
    assert.ok(dflt.paths.length >= 1 && dflt.paths[0]!.startsWith('/bin/sh='), dflt.how);
    assert.doesNotMatch(dflt.paths.join(' '), /busybox/);
    const file = join(checkout, 'dynamic-sh.json');
    writeFileSync(file, JSON.stringify({ name: 'dynamic-sh', system: SYSTEM, builder: '/bin/sh', args: ['-c', 'echo "built by $0 with $(echo nested)" > $out'] }));
    chownSync(file, ids.uid, ids.gid);
    const r = npx(['build', '--option', 'sandbox-paths', dflt.paths.join(' '), 'dynamic-sh.json']);
    assert.equal(r.status, 0, `${dflt.how}\n${dflt.paths.join('\n')}\n${r.stderr}`);
    assert.equal(readFileSync(storeFile(r.stdout.trim()), 'utf8'), 'built by sh with nested\n');
  });

  test('unsandboxed with -j2 in a store of the user\'s own: the next links are held in their PID and user namespaces, and the chain builds', () => {
    const dist = (p: string) => JSON.stringify(join(checkout, 'dist', p));
    const script = `
      import { backendFor } from ${dist('backends/backend.js')};
      import { buildTargets } from ${dist('src/build/scheduler.js')};
      import { addDrv, realStore, Recorder, settings } from ${dist('test/build/engine-fixture.js')};
      const cleanups = [];
      const t = { after: (f) => cleanups.push(f) };
      const { store, buildDir } = await realStore(t);
      const BB = '/usr/bin/busybox';
      const a = await addDrv(store, { name: 'a', script: 'echo a > $out; $BB sleep 0.2', env: { BB } });
      const b = await addDrv(store, { name: 'b', script: 'read x < $a; echo "$x b" > $out; $BB sleep 0.2', env: { BB, a: a.drv.env.get('out') }, inputDrvs: { [a.drvPath]: ['out'] } });
      const c = await addDrv(store, { name: 'c', script: 'read x < $b; echo "$x c" > $out', env: { b: b.drv.env.get('out') }, inputDrvs: { [b.drvPath]: ['out'] } });
      let held = 0;
      const chooseBackend = async (i) => {
        const choice = await backendFor(i);
        const be = choice.backend;
        return { ...choice, backend: { ...be, startHeld: async (spec) => { const h = await be.startHeld(spec); held++; return h; } } };
      };
      const rec = new Recorder();
      const r = await buildTargets([{ arg: c.drvPath, drvPath: c.drvPath, outputs: null }], {
        store, settings: settings(buildDir, { sandboxMode: 'false' }), mode: 'normal', keepGoing: false, reporter: rec, chooseBackend,
      });
      const { readFileSync } = await import('node:fs');
      console.log(JSON.stringify({ exit: r.exitCode, held, out: r.exitCode === 0 ? readFileSync(store.toRealPath(c.drv.env.get('out')), 'utf8') : rec.finished_.map((f) => f.error?.message).join(' | ') }));
      for (const f of cleanups.reverse()) await f();
    `;
    const r = spawnSync('runuser', ['-u', TEST_USER, '--', 'env', '-i', `HOME=${home}`, `PATH=${process.env.PATH}`, process.execPath, '--input-type=module', '-e', script], {
      cwd: checkout,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { exit: 0, held: 2, out: 'a b c\n' });
  });
});
