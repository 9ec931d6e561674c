// Where the store is: a chroot-style root, a real store dir, or (later) a daemon.
//
//   --store ROOT                 ROOT/nix/store holds the paths (logical /nix/store),
//                                ROOT/nix/var/nix the database, ROOT/nix/var/log/nix the logs
//   --store-dir DIR (no --store) a real store: DIR is both logical and physical;
//                                state in DIR/../var/nix, like /nix/store and /nix/var/nix
//   --store unix://PATH | daemon  a worker-protocol daemon
//   DRVBOX_STORE                 as --store
//   nothing                      the embedded default store: on Linux a chroot-style root
//                                at $XDG_DATA_HOME/drvbox (paths stay /nix/store, the
//                                sandbox mounts them there); on macOS a real store dir,
//                                /nix/store when it is usable, else $XDG_DATA_HOME/drvbox/store
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { accessSync, constants } from 'node:fs';
import { defineError } from '../errors.js';
import { DEFAULT_STORE_DIR } from '../format/store-path.js';

export class BadStoreLocation extends defineError('BadStoreLocation', 'E_BAD_STORE_LOCATION') {}

export type StoreLocation =
  | {
      kind: 'local';
      /** chroot-style root, or null for a real store dir */
      root: string | null;
      storeDir: string; // logical
      realStoreDir: string; // physical
      stateDir: string; // .../nix/var/nix (db/, gcroots/, temproots/, ...)
      logDir: string; // .../nix/var/log/nix
      /** how it was chosen, for doctor */
      origin: string;
    }
  | { kind: 'daemon'; socket: string; origin: string };

export interface LocationInput {
  store?: string | undefined;
  storeDir?: string | undefined;
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
  cwd: string;
}

function checkStoreDir(dir: string): string {
  if (!dir.startsWith('/')) throw new BadStoreLocation(`store directory '${dir}' is not an absolute path`, { storeDir: dir });
  const norm = dir.replace(/\/+$/, '');
  if (norm === '' || norm.split('/').some((c) => c === '.' || c === '..')) {
    throw new BadStoreLocation(`store directory '${dir}' is not a canonical path`, { storeDir: dir });
  }
  return norm;
}

export function chrootLocation(root: string, storeDir: string, origin: string): StoreLocation {
  const abs = resolve(root);
  return {
    kind: 'local',
    root: abs,
    storeDir,
    realStoreDir: join(abs, storeDir),
    stateDir: join(abs, 'nix', 'var', 'nix'),
    logDir: join(abs, 'nix', 'var', 'log', 'nix'),
    origin,
  };
}

export function realLocation(storeDir: string, origin: string): StoreLocation {
  const parent = dirname(storeDir);
  return {
    kind: 'local',
    root: null,
    storeDir,
    realStoreDir: storeDir,
    stateDir: join(parent, 'var', 'nix'),
    logDir: join(parent, 'var', 'log', 'nix'),
    origin,
  };
}

export function dataHome(env: NodeJS.ProcessEnv): string {
  const x = env.XDG_DATA_HOME;
  return x && x.startsWith('/') ? x : join(env.HOME || homedir(), '.local', 'share');
}

function usable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function resolveStoreLocation(input: LocationInput): StoreLocation {
  const store = input.store ?? input.env.DRVBOX_STORE;
  const origin = input.store !== undefined ? '--store' : input.env.DRVBOX_STORE !== undefined ? 'DRVBOX_STORE' : '';
  const storeDir = checkStoreDir(input.storeDir ?? DEFAULT_STORE_DIR);
  if (store !== undefined && store !== '') {
    if (store === 'daemon') return { kind: 'daemon', socket: '/nix/var/nix/daemon-socket/socket', origin };
    if (store.startsWith('unix://')) return { kind: 'daemon', socket: store.slice('unix://'.length), origin };
    if (/^[a-z][a-z0-9+.-]*:\/\//.test(store)) {
      throw new BadStoreLocation(`unsupported store URI '${store}' (use a directory, unix://PATH or daemon)`, { store });
    }
    return chrootLocation(resolve(input.cwd, store), storeDir, origin);
  }
  if (input.storeDir !== undefined) return realLocation(storeDir, '--store-dir');
  const base = join(dataHome(input.env), 'drvbox');
  if (input.platform === 'darwin') {
    if (usable(DEFAULT_STORE_DIR)) return realLocation(DEFAULT_STORE_DIR, 'default (/nix/store)');
    return realLocation(join(base, 'store'), 'default (embedded)');
  }
  return chrootLocation(base, storeDir, 'default (embedded)');
}
