// Garbage collector roots, found the way Nix finds them:
//   - symlinks under gcroots/ and profiles/ (recursively) pointing into the store;
//   - indirect roots: gcroots/auto/<sha1 of link path> -> a link (an out-link)
//     -> the store; a dangling auto link is removed;
//   - regular files in gcroots/ named like a store path;
//   - temp roots of live processes (temproots/<pid>, flock'ed by the owner);
//   - runtime roots: store paths open, mapped, or named in the environment of
//     running processes (Linux /proc).
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  constants,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hashBytes } from '../format/hash.js';
import { nix32Encode } from '../format/nix32.js';
import { parseStorePathBaseName, toStorePath } from '../format/store-path.js';
import { BadGcRoot } from './errors.js';
import { tryLock } from './flock.js';
import type { StoreLayout } from './layout.js';

/** Store path -> where the root came from (link paths, `{temp:<pid>}`, `{runtime}`). */
export type Roots = Map<string, Set<string>>;

function addRoot(roots: Roots, path: string, from: string): void {
  let s = roots.get(path);
  if (!s) roots.set(path, (s = new Set()));
  s.add(from);
}

/** Atomically makes `link` a symlink to `target` (temp link + rename). */
export function makeSymlink(link: string, target: string): void {
  mkdirSync(dirname(link), { recursive: true });
  const tmp = `${link}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  symlinkSync(target, tmp);
  try {
    renameSync(tmp, link);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* ignore */
    }
    throw e;
  }
}

/** gcroots/auto/<nix32 sha1 of the absolute link path>. */
export function indirectRootPath(layout: StoreLayout, linkPath: string): string {
  return join(layout.autoRootsDir, nix32Encode(hashBytes('sha1', linkPath).digest));
}

/** Registers `linkPath` (e.g. an out-link) as an indirect root: whatever store path it points to stays alive. */
export function addIndirectRoot(layout: StoreLayout, linkPath: string): string {
  const abs = resolve(linkPath);
  const auto = indirectRootPath(layout, abs);
  makeSymlink(auto, abs);
  return auto;
}

/** Maps a link target to a logical store path, or null when it is not in the store. */
export function storePathOfTarget(layout: StoreLayout, target: string): string | null {
  const tryDir = (dir: string): string | null => {
    if (!target.startsWith(dir + '/')) return null;
    try {
      return toStorePath(layout.storeDir, layout.storeDir + target.slice(dir.length));
    } catch {
      return null;
    }
  };
  return tryDir(layout.storeDir) ?? (layout.realStoreDir !== layout.storeDir ? tryDir(layout.realStoreDir) : null);
}

/**
 * Creates the symlink `gcRoot` -> `storePath` and registers it as an indirect
 * root (nix-build's --out-link). Refuses to clobber anything but a symlink
 * into the store, and refuses roots inside the store.
 */
export function addPermRoot(layout: StoreLayout, storePath: string, gcRoot: string): string {
  const root = resolve(gcRoot);
  if (storePathOfTarget(layout, root) !== null || root.startsWith(layout.realStoreDir + '/')) {
    throw new BadGcRoot(`creating a garbage collector root (${root}) in the store is forbidden`, { path: root });
  }
  let st;
  try {
    st = lstatSync(root);
  } catch {
    st = null;
  }
  if (st && (!st.isSymbolicLink() || storePathOfTarget(layout, readlinkSync(root)) === null)) {
    throw new BadGcRoot(`cannot create symlink '${root}'; it already exists`, { path: root });
  }
  makeSymlink(root, storePath);
  addIndirectRoot(layout, root);
  return root;
}

function findRootsIn(layout: StoreLayout, path: string, roots: Roots, isValid: (p: string) => boolean, depth = 0): void {
  const found = (link: string, target: string) => {
    const sp = storePathOfTarget(layout, target);
    if (sp && isValid(sp)) addRoot(roots, sp, link);
  };
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return; // vanished or unreadable: not a root
  }
  if (st.isDirectory()) {
    if (depth > 64) return;
    let names: string[];
    try {
      names = readdirSync(path);
    } catch {
      return;
    }
    for (const n of names) findRootsIn(layout, join(path, n), roots, isValid, depth + 1);
  } else if (st.isSymbolicLink()) {
    let target: string;
    try {
      target = readlinkSync(path);
    } catch {
      return;
    }
    if (storePathOfTarget(layout, target) !== null) {
      found(path, target);
      return;
    }
    // An indirect root: a link to a link (an out-link) that points into the store.
    const abs = resolve(dirname(path), target);
    let st2;
    try {
      st2 = lstatSync(abs);
    } catch {
      st2 = null;
    }
    if (!st2) {
      if (path.startsWith(layout.autoRootsDir + '/')) {
        try {
          unlinkSync(path); // the out-link is gone: so is the root
        } catch {
          /* ignore */
        }
      }
      return;
    }
    if (!st2.isSymbolicLink()) return;
    try {
      found(abs, readlinkSync(abs));
    } catch {
      /* ignore */
    }
  } else if (st.isFile()) {
    const base = path.slice(path.lastIndexOf('/') + 1);
    try {
      parseStorePathBaseName(base);
      const sp = `${layout.storeDir}/${base}`;
      if (isValid(sp)) addRoot(roots, sp, path);
    } catch {
      /* not named like a store path */
    }
  }
}

/** Permanent roots: gcroots/ and profiles/. */
export function findPermanentRoots(layout: StoreLayout, isValid: (p: string) => boolean): Roots {
  const roots: Roots = new Map();
  findRootsIn(layout, layout.gcRootsDir, roots, isValid);
  findRootsIn(layout, layout.profilesDir, roots, isValid);
  return roots;
}

/**
 * Temp roots of live processes. Files whose owner died (we can lock them) are
 * deleted; a byte is written into them first so that a process that opened
 * one just before (openRootsFile) notices and makes a fresh one.
 */
export function findTempRoots(layout: StoreLayout): Roots {
  const roots: Roots = new Map();
  let names: string[];
  try {
    names = readdirSync(layout.tempRootsDir);
  } catch {
    return roots;
  }
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const path = join(layout.tempRootsDir, name);
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR);
    } catch {
      continue; // vanished
    }
    try {
      if (tryLock(fd, 'exclusive', path)) {
        try {
          unlinkSync(path);
        } catch {
          /* ignore */
        }
        writeSync(fd, 'd');
        continue;
      }
      const contents = readFileSync(fd, 'latin1');
      const entries = contents.split('\0');
      entries.pop(); // only NUL-terminated entries are complete
      for (const p of entries) if (p.length > 0) addRoot(roots, p, `{temp:${name}}`);
    } finally {
      closeSync(fd);
    }
  }
  return roots;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Store paths running processes use (Linux: /proc/<pid>/{exe,cwd,fd,maps,environ}). */
export function findRuntimeRoots(layout: StoreLayout, isValid: (p: string) => boolean): Roots {
  const roots: Roots = new Map();
  if (process.platform !== 'linux' || !existsSync('/proc/self')) return roots;
  const dirs = [layout.storeDir, ...(layout.realStoreDir !== layout.storeDir ? [layout.realStoreDir] : [])];
  const pathRe = new RegExp(`(?:${dirs.map(escapeRegex).join('|')})/[0-9a-z]{32}-[0-9a-zA-Z+\\-._?=]+`, 'g');
  const consider = (s: string, from: string) => {
    for (const m of s.matchAll(pathRe)) {
      const sp = storePathOfTarget(layout, m[0]);
      if (sp && isValid(sp)) addRoot(roots, sp, from);
    }
  };
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return roots;
  }
  const link = (p: string) => {
    try {
      consider(readlinkSync(p), '{runtime}');
    } catch {
      /* gone or not ours to see */
    }
  };
  for (const pid of pids) {
    link(`/proc/${pid}/exe`);
    link(`/proc/${pid}/cwd`);
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) link(`/proc/${pid}/fd/${fd}`);
    } catch {
      /* ignore */
    }
    for (const f of ['maps', 'environ']) {
      try {
        consider(readFileSync(`/proc/${pid}/${f}`, 'latin1'), '{runtime}');
      } catch {
        /* ignore */
      }
    }
  }
  return roots;
}

export function mergeRoots(into: Roots, from: Roots): Roots {
  for (const [p, links] of from) for (const l of links) addRoot(into, p, l);
  return into;
}

/** Every root, as `nix-store --gc --print-roots` lists them: permanent, runtime (unless disabled) and temp roots. */
export function findAllRoots(layout: StoreLayout, isValid: (p: string) => boolean, opts: { runtime?: boolean } = {}): Roots {
  const roots = findPermanentRoots(layout, isValid);
  if (opts.runtime !== false) mergeRoots(roots, findRuntimeRoots(layout, isValid));
  for (const [p, from] of findTempRoots(layout)) if (isValid(p)) for (const f of from) addRoot(roots, p, f);
  return roots;
}
