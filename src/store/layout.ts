// Where every file of a local store lives, and creating it on first open.
//
//   <realStoreDir>/                    the paths (logical <storeDir>/...)
//   <realStoreDir>/.links/             hard-link pool of auto-optimise-store
//   <stateDir>/db/db.sqlite            Nix's SQLite database (schema.ts)
//   <stateDir>/db/schema, ca-schema    schema version files Nix checks
//   <stateDir>/db/big-lock             Nix's schema-upgrade lock (created, not used)
//   <stateDir>/gc.lock                 shared by root writers, exclusive while GC runs
//   <stateDir>/gc-socket/socket        where a running GC accepts new temp roots
//   <stateDir>/gcroots/                roots; gcroots/auto/<hash> -> indirect roots
//   <stateDir>/temproots/<pid>         temp roots of live processes (flock'ed)
//   <stateDir>/profiles/               profiles (also roots)
//   <logDir>/drvs/                     build logs
//
// The same tree Nix 2.8 creates, so either tool can open a store made by the other.
import { existsSync, lstatSync, mkdirSync, symlinkSync, chmodSync, closeSync, openSync, constants } from 'node:fs';
import { dirname, join } from 'node:path';
import type { StoreLocation } from '../config/store-location.js';
import { StoreLayoutError } from './errors.js';

export type LocalStoreLocation = Extract<StoreLocation, { kind: 'local' }>;

export interface StoreLayout {
  /** chroot-style root, or null for a real store dir */
  root: string | null;
  storeDir: string;
  realStoreDir: string;
  stateDir: string;
  dbDir: string;
  dbPath: string;
  schemaPath: string;
  caSchemaPath: string;
  bigLockPath: string;
  gcLockPath: string;
  gcSocketPath: string;
  gcRootsDir: string;
  autoRootsDir: string;
  tempRootsDir: string;
  profilesDir: string;
  logDir: string;
  drvLogDir: string;
  linksDir: string;
}

export function storeLayout(loc: LocalStoreLocation): StoreLayout {
  const dbDir = join(loc.stateDir, 'db');
  return {
    root: loc.root,
    storeDir: loc.storeDir,
    realStoreDir: loc.realStoreDir,
    stateDir: loc.stateDir,
    dbDir,
    dbPath: join(dbDir, 'db.sqlite'),
    schemaPath: join(dbDir, 'schema'),
    caSchemaPath: join(dbDir, 'ca-schema'),
    bigLockPath: join(dbDir, 'big-lock'),
    gcLockPath: join(loc.stateDir, 'gc.lock'),
    gcSocketPath: join(loc.stateDir, 'gc-socket', 'socket'),
    gcRootsDir: join(loc.stateDir, 'gcroots'),
    autoRootsDir: join(loc.stateDir, 'gcroots', 'auto'),
    tempRootsDir: join(loc.stateDir, 'temproots'),
    profilesDir: join(loc.stateDir, 'profiles'),
    logDir: loc.logDir,
    drvLogDir: join(loc.logDir, 'drvs'),
    linksDir: join(loc.realStoreDir, '.links'),
  };
}

function mkdirs(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new StoreLayoutError(`cannot create store directory '${dir}': ${(e as Error).message}`, { path: dir });
  }
}

function touch(path: string): void {
  try {
    closeSync(openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600));
  } catch (e) {
    throw new StoreLayoutError(`cannot create '${path}': ${(e as Error).message}`, { path });
  }
}

/**
 * Nix refuses a store whose directory or any parent is a symlink (paths
 * would be registered under one name and found under another); so do we.
 */
function checkNoSymlinks(realStoreDir: string): void {
  for (let p = realStoreDir; p !== '/' && p !== '.'; p = dirname(p)) {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) {
      throw new StoreLayoutError(
        `the path '${p}' is a symlink; this is not allowed for the store directory '${realStoreDir}' or its parents`,
        { path: p },
      );
    }
  }
}

/** Creates whatever is missing of the layout (idempotent, safe to race). */
export function ensureLayout(l: StoreLayout): void {
  mkdirs(l.realStoreDir);
  checkNoSymlinks(l.realStoreDir);
  mkdirs(l.linksDir);
  mkdirs(join(l.profilesDir, 'per-user'));
  mkdirs(l.tempRootsDir);
  mkdirs(l.dbDir);
  if (!existsSync(l.gcRootsDir)) {
    mkdirs(l.gcRootsDir);
    try {
      symlinkSync(l.profilesDir, join(l.gcRootsDir, 'profiles'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  for (const d of [join(l.profilesDir, 'per-user'), join(l.gcRootsDir, 'per-user')]) {
    mkdirs(d);
    try {
      chmodSync(d, 0o755);
    } catch {
      /* not ours to change (a shared store); Nix would fail, we only need to read it */
    }
  }
  mkdirs(l.autoRootsDir);
  mkdirs(l.drvLogDir);
  touch(l.gcLockPath);
  touch(l.bigLockPath);
}
