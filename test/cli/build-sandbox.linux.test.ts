// The goal driving the Linux sandbox backend through the CLI: a chroot-style
// store (logical /nix/store), /bin/sh mapped to busybox. Builds every file
// in examples/.
import { before, test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, REPO_ROOT, requireLinux, requireTool } from '../helpers/host.js';
import { tempDir } from '../helpers/tmp.js';
import { requireSandbox } from '../helpers/sandbox.js';

// Where the sandbox is unavailable these fail, saying why (never skip, and
// never pass through sandbox-fallback's unsandboxed builds).
before(() => requireSandbox('sandboxed CLI builds'));

function sandboxed(t: import('node:test').TestContext) {
  requireLinux('the namespace sandbox');
  requireTool('busybox', 'apt-get install busybox-static');
  const dir = tempDir(t);
  const root = join(dir, 'root');
  mkdirSync(join(dir, 'tmp'));
  const env = { ...process.env, TMPDIR: join(dir, 'tmp'), XDG_CONFIG_HOME: dir, DRVBOX_CONFIG: '', DRVBOX_STORE: '' };
  const run = (args: string[]) => {
    const r = spawnSync(process.execPath, [CLI, '--store', root, '--option', 'sandbox-paths', '/bin/sh=/usr/bin/busybox', ...args], {
      env,
      encoding: 'utf8',
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  return { dir, root, run, real: (p: string) => join(root, p) };
}

describe('drvbox build in the Linux sandbox', () => {
  test('every example builds; outputs land in the chroot store', (t) => {
    const s = sandboxed(t);
    const examples = readdirSync(join(REPO_ROOT, 'examples')).filter((f) => f.endsWith('.json')).sort();
    assert.deepEqual(examples, ['dependency.json', 'fixed-output.json', 'hello.json', 'multiple-outputs.json']);
    const r = s.run(['build', ...examples.map((f) => join(REPO_ROOT, 'examples', f))]);
    assert.equal(r.status, 0, r.stderr);
    const outs = r.stdout.trim().split('\n');
    assert.equal(outs.length, 7);
    const byName = (suffix: string) => outs.find((p) => p.endsWith(suffix))!;
    assert.equal(readFileSync(s.real(byName('-hello')), 'utf8'), 'Hello, world!\n');
    assert.equal(readFileSync(s.real(byName('-use-greeting')), 'utf8'), 'Hello from a dependency, read by use-greeting\n');
    assert.equal(readFileSync(s.real(byName('-fixed.txt')), 'utf8'), 'fixed content\n');
    assert.equal(readFileSync(s.real(byName('-multi-dev')), 'utf8'), 'the headers\n');
    assert.ok(outs.every((p) => p.startsWith('/nix/store/')));
  });

  test('the build sees its sandbox: /build, no network interfaces but lo, uid 1000', (t) => {
    const s = sandboxed(t);
    const file = join(s.dir, 'inside.json');
    const script = 'echo "$NIX_BUILD_TOP $(pwd) $(id -u)" > $out; ls /sys/class/net >> $out 2>&1 || echo no-sys >> $out';
    const json = { name: 'inside', system: `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux`, builder: '/bin/sh', args: ['-c', script] };
    writeFileSync(file, JSON.stringify(json));
    const r = s.run(['build', file]);
    assert.equal(r.status, 0, r.stderr);
    const text = readFileSync(s.real(r.stdout.trim()), 'utf8');
    assert.match(text, /^\/build \/build 1000\n/);
  });

  test('--sandbox false on a chroot-style store: built in the sandbox anyway, with a warning', (t) => {
    const s = sandboxed(t);
    const r = s.run(['build', '--sandbox', 'false', join(REPO_ROOT, 'examples', 'hello.json')]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: building '\/nix\/store\/[a-z0-9]{32}-hello\.drv' in the sandbox although 'sandbox' is 'false'/);
  });

  test('without sandbox-paths the host default gives /bin/sh; extra-sandbox-paths adds to it; sandbox-paths replaces it', (t) => {
    requireLinux('the namespace sandbox');
    const dir = tempDir(t);
    const root = join(dir, 'root');
    mkdirSync(join(dir, 'tmp'));
    const env = { ...process.env, TMPDIR: join(dir, 'tmp'), XDG_CONFIG_HOME: dir, DRVBOX_CONFIG: '', DRVBOX_STORE: '' };
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, '--store', root, ...args], { env, encoding: 'utf8' });
    const extra = join(dir, 'extra.txt');
    writeFileSync(extra, 'extra file\n');
    const file = join(dir, 'default-sh.json');
    const system = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux`;
    writeFileSync(file, JSON.stringify({ name: 'default-sh', system, builder: '/bin/sh', args: ['-c', 'read -r x < /extra.txt; echo "$x" > $out'] }));
    const ok = run(['build', '--option', 'extra-sandbox-paths', `/extra.txt=${extra}`, file]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(readFileSync(join(root, ok.stdout.trim()), 'utf8'), 'extra file\n');
    const noSh = join(dir, 'no-sh.json');
    writeFileSync(noSh, JSON.stringify({ name: 'no-sh', system, builder: '/bin/sh', args: ['-c', 'echo > $out'] }));
    const r = run(['build', '--option', 'sandbox-paths', '', noSh]);
    assert.equal(r.status, 100, r.stderr);
    assert.match(r.stderr, /error: builder for '\/nix\/store\/[0-9a-z]{32}-no-sh\.drv' failed with exit code 1/);
    assert.match(r.stderr, /executing '\/bin\/sh': No such file or directory/);
  });
});
