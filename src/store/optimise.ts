// auto-optimise-store (optional): identical regular files in the store
// become hard links to one inode, kept alive by a link in
// <realStoreDir>/.links/<nix32 of the file's NAR sha256>, Nix's scheme, so a
// store optimised by either tool stays consistent for the other. GC removes
// .links entries whose link count dropped to 1.
import { chmodSync, linkSync, lstatSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { formatHash } from '../format/hash.js';
import { canonicaliseTimestampAndPermissions } from './canonicalise.js';
import type { LocalStore } from './local-store.js';
import { hashPath } from './nar-fs.js';

export interface OptimiseStats {
  filesLinked: number;
  bytesFreed: number;
}

async function optimiseFile(store: LocalStore, path: string, stats: OptimiseStats): Promise<void> {
  const st = lstatSync(path);
  const linksDir = store.layout.linksDir;
  const { hash } = await hashPath(path);
  const linkPath = join(linksDir, formatHash(hash, 'nix32', false));
  let linkSt;
  try {
    linkSt = lstatSync(linkPath);
  } catch {
    linkSt = null;
  }
  if (!linkSt) {
    try {
      linkSync(path, linkPath);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EMLINK') return; // too many links to this inode: leave the file alone
      if (code !== 'EEXIST') throw e;
      linkSt = lstatSync(linkPath);
    }
  }
  if (linkSt.ino === st.ino && linkSt.dev === st.dev) return;
  if (linkSt.size !== st.size) return; // a corrupt link: never replace contents with it
  // Replace `path` by a hard link to `linkPath`: link under a temp name, then
  // rename over it; the parent is read-only, so open it up for the moment.
  const parent = dirname(path);
  const pst = lstatSync(parent);
  chmodSync(parent, (pst.mode & 0o7777) | 0o200);
  const tmp = join(store.realStoreDir, `.tmp-link-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    try {
      linkSync(linkPath, tmp);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EMLINK') return;
      throw e;
    }
    try {
      renameSync(tmp, path);
    } catch (e) {
      unlinkSync(tmp);
      throw e;
    }
    stats.filesLinked++;
    stats.bytesFreed += st.size;
  } finally {
    canonicaliseTimestampAndPermissions(parent);
  }
}

/** Hard-links the regular files of `realPath` (a store path's physical location) into .links. */
export async function optimisePath(store: LocalStore, realPath: string, stats: OptimiseStats = { filesLinked: 0, bytesFreed: 0 }): Promise<OptimiseStats> {
  const stack = [realPath];
  while (stack.length > 0) {
    const p = stack.pop()!;
    const st = lstatSync(p);
    if (st.isDirectory()) for (const n of readdirSync(p)) stack.push(join(p, n));
    else if (st.isFile()) await optimiseFile(store, p, stats);
  }
  return stats;
}

/** Optimises every valid path (`nix-store --optimise`). */
export async function optimiseStore(store: LocalStore): Promise<OptimiseStats> {
  const stats: OptimiseStats = { filesLinked: 0, bytesFreed: 0 };
  for (const p of store.queryAllValidPaths()) {
    const locks = await store.lockPaths([p]);
    try {
      if (store.isValidPath(p)) await optimisePath(store, store.toRealPath(p), stats);
    } finally {
      locks?.release();
    }
  }
  return stats;
}
