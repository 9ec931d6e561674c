// Helpers of the bundled-CLI tests: each test file bundles into a dir of its
// own, two levels under dist/ as the real dist/bundle/cli, so it never runs
// a stale bundle.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { REPO_ROOT } from '../helpers/host.js';

export const BUNDLE_DIR = join(REPO_ROOT, 'dist', `test-bundle-${process.pid}`, 'cli');
export const BUNDLE_ENTRY = join(BUNDLE_DIR, 'main.cjs');

/** Bundles into BUNDLE_DIR before the file's tests; removes it after them. */
export function bundleForTests(): void {
  before(() => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'src', 'cli', 'build-bundle.mjs'), BUNDLE_DIR], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'bundling and code cache training print nothing');
  });
  after(() => rmSync(join(BUNDLE_DIR, '..'), { recursive: true, force: true }));
}

export function runEntry(entry: string, args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [entry, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** No user config, store or data dir of the host. */
export function isolatedEnv(dir: string): NodeJS.ProcessEnv {
  return { HOME: dir, XDG_CONFIG_HOME: dir, XDG_DATA_HOME: dir, TMPDIR: dir, DRVBOX_STORE: '', DRVBOX_CONFIG: '' };
}

/** A one-output derivation (JSON form) for this machine's system, writing "bundled\n". */
export function helloJson(dir: string): string {
  const system = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-${process.platform === 'darwin' ? 'darwin' : 'linux'}`;
  const file = join(dir, 'hello.json');
  writeFileSync(file, JSON.stringify({ name: 'hello', system, builder: '/bin/sh', args: ['-c', 'echo bundled > $out'], env: { name: 'hello', system, builder: '/bin/sh' } }));
  return file;
}
