// File-system helpers of the store: deleting read-only trees (counting what
// is freed as Nix does) and fsync of what a registration depends on.
import { chmodSync, closeSync, constants, fsyncSync, lstatSync, open, openSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const RWX = 0o700;

/**
 * Deletes `path` (file, symlink or tree), making directories writable first.
 * Returns the bytes freed, counted as Nix counts them: sizes of non-directory
 * files with one or two links (two: probably an optimised file whose other
 * link in .links goes next). A missing path frees 0.
 */
export function deletePath(path: string): number {
  let freed = 0;
  // No exception for the usual case (nothing there): building one costs more than the lstat.
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) {
    if (st.nlink <= 2) freed += st.size;
    try {
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return freed;
  }
  // Iterative post-order walk (deep trees must not overflow the stack).
  const stack: Array<{ dir: string; entered: boolean }> = [{ dir: path, entered: false }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.entered) {
      stack.pop();
      try {
        rmdirSync(top.dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      continue;
    }
    top.entered = true;
    const dst = lstatSync(top.dir);
    if ((dst.mode & RWX) !== RWX) chmodSync(top.dir, (dst.mode & 0o7777) | RWX);
    for (const name of readdirSync(top.dir)) {
      const p = join(top.dir, name);
      const cst = lstatSync(p);
      if (cst.isDirectory()) {
        stack.push({ dir: p, entered: false });
      } else {
        if (cst.nlink <= 2) freed += cst.size;
        unlinkSync(p);
      }
    }
  }
  return freed;
}

/** Bytes `deletePath` would free, without deleting (for a dry run). */
export function pathSize(path: string): number {
  let total = 0;
  const stack = [path];
  while (stack.length > 0) {
    const p = stack.pop()!;
    let st;
    try {
      st = lstatSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) {
      try {
        for (const n of readdirSync(p)) stack.push(join(p, n));
      } catch {
        /* unreadable: count nothing */
      }
    } else if (st.nlink <= 2) total += st.size;
  }
  return total;
}

function fsyncPath(path: string, flags: number): void {
  let fd: number;
  try {
    fd = openSync(path, flags);
  } catch {
    return; // a symlink (O_NOFOLLOW) or gone: nothing to sync
  }
  try {
    fsyncSync(fd);
  } catch {
    /* some file systems refuse fsync on directories */
  } finally {
    closeSync(fd);
  }
}

/** fsyncs every regular file and directory under `path`, then `path`'s directory entry. */
export function fsyncTree(path: string): void {
  const stack = [path];
  while (stack.length > 0) {
    const p = stack.pop()!;
    const st = lstatSync(p);
    if (st.isDirectory()) {
      for (const n of readdirSync(p)) stack.push(join(p, n));
      fsyncPath(p, constants.O_RDONLY | constants.O_DIRECTORY);
    } else if (st.isFile()) {
      fsyncPath(p, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
    }
  }
}

/** fsyncs a directory (after a rename into it). */
export function fsyncDir(dir: string): void {
  fsyncPath(dir, constants.O_RDONLY | constants.O_DIRECTORY);
}

/**
 * open(2) off the event loop, resolving with a plain fd (fs/promises' FileHandle
 * would close it when garbage-collected). For files every build opens (its
 * log, its output locks): creating one can take milliseconds on some file
 * systems.
 */
export function openFd(path: string, flags: string | number, mode: number): Promise<number> {
  return new Promise((resolve, reject) => open(path, flags, mode, (e, fd) => (e ? reject(e) : resolve(fd))));
}
