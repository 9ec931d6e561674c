// The environments the suite runs tools in. Every tool gets its own config
// and store under the run's temp dir: drvbox through DRVBOX_CONFIG and
// --store ROOT, Nix through its own NIX_CONF_DIR and --store ROOT (never the
// system store or the host's nix.conf), both with busybox as /bin/sh.
//
// A `--store ROOT` store is diverted (logical /nix/store, physical
// ROOT/nix/store) and both tools then sandbox every build whatever `sandbox`
// says. `realStoreRoot` gives a store whose logical dir is its physical one,
// ROOT/nix/store (state in ROOT/nix/var/nix, logs in ROOT/nix/var/log/nix):
// drvbox through --store-dir, Nix through a `local?store=…` URI. Derivations
// for it must be made for that store dir.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, which, type ProcResult, type RunOptions } from './proc.js';

export const REPO = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
export const BUSYBOX = '/usr/bin/busybox';

/** The CLI `npx drvbox` runs: package.json's bin. */
export function drvboxEntry(): string {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  return join(REPO, pkg.bin.drvbox!);
}

/**
 * Variables that change how Node starts and are not drvbox's doing. Node 20
 * parses the whole NODE_EXTRA_CA_CERTS bundle before running any script
 * (~60 ms on the reference machine); with it, every Node process here,
 * `node -e 0` included, pays that. Both sides run without them; the suite
 * reports what the host had.
 */
export const NODE_START_VARS = ['NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS'] as const;

/** The host environment without Node start-up variables and without anything that points tools at a shared store. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const v of NODE_START_VARS) delete env[v];
  for (const v of ['NIX_REMOTE', 'NIX_PATH', 'NIX_CONF_DIR', 'NIX_USER_CONF_FILES', 'DRVBOX_STORE', 'DRVBOX_CONFIG']) delete env[v];
  return env;
}

export interface Tool {
  /** The store root: paths are in ROOT/nix/store (chroot-style, or the real store dir with realStoreRoot). */
  root: string;
  env: NodeJS.ProcessEnv;
  run(args: readonly string[], o?: Partial<RunOptions>): ProcResult;
}

export interface DrvboxOptions {
  sandbox: boolean;
  /** A non-diverted store: ROOT/nix/store is both the logical and the physical store dir. */
  realStoreRoot?: string;
}

/** The logical (and physical) store dir of a realStoreRoot store. */
export function realStoreDir(root: string): string {
  return join(root, 'nix', 'store');
}

/** drvbox with its own config file and store root under `dir`. */
/** `entry`: another build of the CLI (the profiled runs use the unbundled one). */
export function drvboxTool(dir: string, o: DrvboxOptions, extraArgs: readonly string[] = [], entry = drvboxEntry()): Tool {
  const root = o.realStoreRoot ?? join(dir, 'drvbox-root');
  const storeArgs = o.realStoreRoot ? ['--store-dir', realStoreDir(o.realStoreRoot)] : ['--store', root];
  const home = join(dir, 'drvbox-home');
  mkdirSync(home, { recursive: true });
  const conf = join(dir, 'drvbox.conf');
  writeFileSync(
    conf,
    [`sandbox = ${o.sandbox}`, 'sandbox-fallback = false', `sandbox-paths = /bin/sh=${BUSYBOX}`, ''].join('\n'),
  );
  const env: NodeJS.ProcessEnv = { ...cleanEnv(), HOME: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_DATA_HOME: join(home, '.local'), TMPDIR: dir, DRVBOX_CONFIG: conf };
  return {
    root,
    env,
    run: (args, ro = {}) => run(process.execPath, [...extraArgs, entry, ...storeArgs, ...args], { env, ...ro }),
  };
}

export interface NixTool extends Tool {
  /** Runs another Nix command (nix-store, nix-hash) with the same isolation. */
  cmd(cmd: string, args: readonly string[], o?: Partial<RunOptions>): ProcResult;
}

export function nixAvailable(): boolean {
  return which('nix-build') !== null && which('nix-store') !== null;
}

/** Nix 2.8 isolated as test/helpers/nix.ts does: own NIX_CONF_DIR, HOME and --store ROOT (or the realStoreRoot store). */
export function nixTool(dir: string, o: { sandbox: boolean; realStoreRoot?: string }): NixTool {
  const root = o.realStoreRoot ?? join(dir, 'nix-root');
  // Nix 2.8's local store: `store` is the logical dir, the physical one defaults to it without `root`.
  const store = o.realStoreRoot
    ? `local?store=${realStoreDir(root)}&state=${join(root, 'nix', 'var', 'nix')}&log=${join(root, 'nix', 'var', 'log', 'nix')}`
    : root;
  const confDir = join(dir, 'nix-conf');
  const home = join(dir, 'nix-home');
  mkdirSync(confDir, { recursive: true });
  mkdirSync(home, { recursive: true });
  writeFileSync(
    join(confDir, 'nix.conf'),
    [
      'build-users-group =',
      `sandbox = ${o.sandbox}`,
      // A Nix that silently fell back to unsandboxed builds would not be the peer we claim.
      'sandbox-fallback = false',
      'substituters =',
      `sandbox-paths = /bin/sh=${BUSYBOX}`,
      'experimental-features = nix-command ca-derivations',
      '',
    ].join('\n'),
  );
  const env: NodeJS.ProcessEnv = { ...cleanEnv(), NIX_CONF_DIR: confDir, HOME: home, XDG_CACHE_HOME: join(home, '.cache'), NIX_PATH: '', TMPDIR: dir };
  const cmd: NixTool['cmd'] = (c, args, ro = {}) => run(c, ['--store', store, ...args], { env, ...ro });
  return { root, env, cmd, run: (args, ro) => cmd('nix-build', args, ro) };
}
