// The differential oracle: Debian's Nix 2.8, run isolated. Every call gets its
// own NIX_CONF_DIR and --store root, so nothing touches a shared config.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from './host.js';

export interface NixOracle {
  /** Chroot-style store root Nix uses (ROOT/nix/store). */
  root: string;
  confDir: string;
  env: NodeJS.ProcessEnv;
  /** Runs a nix command with the isolated config and --store ROOT; throws on failure. */
  run(cmd: string, args: string[], opts?: { input?: string | Buffer; allowFail?: boolean; env?: NodeJS.ProcessEnv }): NixResult;
  /** nix-instantiate of an expression text; returns the .drv path(s). */
  instantiate(expr: string, attr?: string): string[];
}

export interface NixResult {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

export const DEFAULT_NIX_CONF = [
  'build-users-group =',
  'sandbox = true',
  'substituters =',
  'sandbox-paths = /bin/sh=/usr/bin/busybox',
  'experimental-features = nix-command ca-derivations recursive-nix',
].join('\n');

/** Creates an isolated Nix environment under `dir`. Fails the test when Nix is missing. */
export function nixOracle(dir: string, extraConf = ''): NixOracle {
  requireTool('nix-build', 'apt-get install -y nix-bin busybox-static');
  const root = join(dir, 'nix-root');
  const confDir = join(dir, 'nix-conf');
  mkdirSync(confDir, { recursive: true });
  mkdirSync(root, { recursive: true });
  writeFileSync(join(confDir, 'nix.conf'), DEFAULT_NIX_CONF + '\n' + extraConf + '\n');
  const home = join(dir, 'nix-home');
  mkdirSync(home, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NIX_CONF_DIR: confDir,
    HOME: home,
    XDG_CACHE_HOME: join(home, '.cache'),
    NIX_PATH: '',
  };
  delete env.NIX_REMOTE;
  const run: NixOracle['run'] = (cmd, args, opts = {}) => {
    const full = cmd === 'nix' ? ['--store', root, ...args] : ['--store', root, ...args];
    const o: SpawnSyncOptions = { env: { ...env, ...opts.env }, input: opts.input, maxBuffer: 1 << 30 };
    const r = spawnSync(cmd, full, o);
    const res = { status: r.status, stdout: r.stdout as Buffer, stderr: String(r.stderr) };
    if (!opts.allowFail && r.status !== 0) {
      throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${res.stderr.slice(-2000)}`);
    }
    return res;
  };
  return {
    root,
    confDir,
    env,
    run,
    instantiate(expr, attr) {
      const args = ['-E', expr];
      if (attr) args.push('-A', attr);
      const r = run('nix-instantiate', args);
      return r.stdout.toString().trim().split('\n').filter(Boolean);
    },
  };
}

export function hasNix(): boolean {
  return existsSync('/usr/bin/nix-build');
}
