// Running `drvbox build` and friends against a real store dir in a temp dir,
// unsandboxed, with an isolated config and build dir.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { completeDerivation } from '../../src/format/hash-modulo.js';
import { parseDerivationInput } from '../../src/format/derivation-json.js';
import { CLI } from '../helpers/host.js';
import { tempDir } from '../helpers/tmp.js';

export interface BuildEnv {
  dir: string;
  storeDir: string;
  tmp: string;
  env: NodeJS.ProcessEnv;
}

export function buildEnv(t: TestContext): BuildEnv {
  const dir = tempDir(t);
  const tmp = join(dir, 'tmp');
  const conf = join(dir, 'conf');
  mkdirSync(tmp);
  mkdirSync(conf);
  return {
    dir,
    storeDir: join(dir, 'store'),
    tmp,
    env: { ...process.env, TMPDIR: tmp, XDG_CONFIG_HOME: conf, DRVBOX_CONFIG: '', DRVBOX_STORE: '' },
  };
}

export interface Res {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** drvbox --store-dir STORE ARGS (sandbox off unless ARGS say otherwise). */
export function run(e: BuildEnv, args: string[], opts: { cwd?: string; input?: string } = {}): Res {
  const r = spawnSync(process.execPath, [CLI, '--store-dir', e.storeDir, ...args], {
    env: e.env,
    cwd: opts.cwd ?? e.dir,
    input: opts.input,
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function spawnDrvbox(e: BuildEnv, args: string[]): ChildProcess {
  return spawn(process.execPath, [CLI, '--store-dir', e.storeDir, ...args], { env: e.env, cwd: e.dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Writes a derivation JSON file; returns its path, .drv path and output paths (computed as nix-instantiate would). */
export function drvJson(e: BuildEnv, name: string, json: Record<string, unknown>): { file: string; drvPath: string; outputs: Map<string, string> } {
  const file = join(e.dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(json));
  const c = completeDerivation(parseDerivationInput(json, { storeDir: e.storeDir }).draft, { storeDir: e.storeDir, resolve: () => undefined });
  const outputs = new Map<string, string>();
  for (const o of c.drv.outputs.keys()) outputs.set(o, c.drv.env.get(o)!);
  return { file, drvPath: c.drvPath, outputs };
}

export function sh(name: string, script: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const { env, ...rest } = extra as { env?: Record<string, string> };
  return {
    name,
    system: process.arch === 'arm64' ? 'aarch64-linux' : 'x86_64-linux',
    builder: '/bin/sh',
    args: ['-c', script],
    env: { name, builder: '/bin/sh', ...(env ?? {}) },
    ...rest,
  };
}
