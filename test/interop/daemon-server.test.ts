// The real Nix 2.8 client against our worker-protocol server (fake store),
// compared with what Nix itself computes in an isolated local store.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { tempDir } from '../helpers/tmp.js';
import { startServer, type TestServer } from '../daemon/helpers.js';
import type { TestContext } from 'node:test';

/** Runs a Nix client asynchronously (our server lives in this process). */
function nixAsync(o: NixOracle, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { env: { ...o.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.on('error', reject);
    c.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

async function setup(t: TestContext): Promise<{ o: NixOracle; s: TestServer; uri: string; dir: string }> {
  const dir = tempDir(t, 'drvbox-interop-');
  const o = nixOracle(dir);
  const s = await startServer(t);
  return { o, s, uri: `unix://${s.socketPath}`, dir };
}

const strip = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');

describe('Nix 2.8 client -> drvbox worker-protocol server', () => {
  test('nix-store --add, nix-store -qR, nix path-info --json agree with Nix on a local store', async (t) => {
    const { o, s, uri, dir } = await setup(t);
    const file = join(dir, 'hello.txt');
    writeFileSync(file, 'hello\n');
    const added = await nixAsync(o, 'nix-store', ['--store', uri, '--add', file]);
    assert.equal(added.status, 0, added.stderr);
    const expected = o.run('nix-store', ['--add', file]).stdout.toString().trim();
    assert.equal(added.stdout.trim(), expected);
    assert.ok(s.store.calls.includes('addToStore'));

    const qr = await nixAsync(o, 'nix-store', ['--store', uri, '-qR', expected]);
    assert.equal(qr.status, 0, qr.stderr);
    assert.equal(qr.stdout, `${expected}\n`);

    const ours = await nixAsync(o, 'nix', ['path-info', '--store', uri, '--json', expected]);
    assert.equal(ours.status, 0, ours.stderr);
    const theirs = JSON.parse(o.run('nix', ['path-info', '--json', expected]).stdout.toString());
    const pick = (j: Record<string, unknown>) => ({ path: j.path, narHash: j.narHash, narSize: j.narSize, references: j.references, ca: j.ca });
    assert.deepEqual(pick(JSON.parse(ours.stdout)[0]), pick(theirs[0]));
  });

  test('NIX_REMOTE=unix://… works as well as --store (the recursive-build setup)', async (t) => {
    const { o, uri, dir } = await setup(t);
    const file = join(dir, 'f');
    writeFileSync(file, 'x');
    const r = await nixAsync(o, 'nix-store', ['--add', file], { NIX_REMOTE: uri });
    assert.equal(r.status, 0, r.stderr);
    const q = await nixAsync(o, 'nix-store', ['-q', '--references', r.stdout.trim()], { NIX_REMOTE: uri });
    assert.equal(q.status, 0, q.stderr);
    assert.equal(q.stdout, '');
  });

  test('nix-build through the server: derivation written, built, output path as Nix computes it', async (t) => {
    const { o, s, uri } = await setup(t);
    const expr = 'derivation { name = "tiny"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo hi > $out"]; }';
    const r = await nixAsync(o, 'nix-build', ['--store', uri, '--no-out-link', '-E', expr]);
    assert.equal(r.status, 0, r.stderr);
    const [drv] = o.instantiate(expr);
    const out = o.run('nix-store', ['-q', '--outputs', drv!]).stdout.toString().trim();
    assert.equal(r.stdout.trim(), out);
    assert.match(strip(r.stderr), new RegExp(`building '${drv!.replace(/[.]/g, '\\.')}'\\.\\.\\.`));
    assert.ok(s.store.drvText.has(drv!), 'the .drv was added through AddToStore');
    assert.equal(s.store.paths.get(out)?.info.deriver, drv);
  });

  test('a failing inner build and nix-store -r of an unknown path fail with clear messages', async (t) => {
    const { o, uri } = await setup(t);
    const bad = await nixAsync(o, 'nix-build', ['--store', uri, '--no-out-link', '-E', 'derivation { name = "z"; system = "x86_64-linux"; builder = "FAIL_THIS_BUILD"; }']);
    assert.equal(bad.status, 1);
    assert.match(strip(bad.stderr), /error: builder for '\/nix\/store\/[a-z0-9]{32}-z\.drv' failed with exit code 1/);
    const unknown = '/nix/store/00000000000000000000000000000000-nope';
    const r = await nixAsync(o, 'nix-store', ['--store', uri, '-r', unknown]);
    assert.equal(r.status, 1);
    assert.match(strip(r.stderr), /error: path '\/nix\/store\/00000000000000000000000000000000-nope' is required, but there is no substituter that can build it/);
  });

  test('nix store ping reports the server version', async (t) => {
    const { o, uri } = await setup(t);
    const r = await nixAsync(o, 'nix', ['store', 'ping', '--store', uri]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /Version: drvbox \d+\.\d+\.\d+/);
  });
});
