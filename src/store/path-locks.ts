// Path locks: `<real path>.lock` files holding an exclusive flock, the same
// protocol Nix uses, so a drvbox and a Nix process never write one path at
// once either. Locks are taken in sorted order (no deadlock between two
// lockers of overlapping sets). A released lock may delete its file; it first
// writes one byte into it so that a waiter who opened the old file sees a
// non-empty (stale) file after getting the lock and starts again.
import { closeSync, fstatSync, unlinkSync, writeSync, constants } from 'node:fs';
import { openFd } from './fs-util.js';
import { lockWait, tryLock, type WaitOptions } from './flock.js';

export interface PathLocks {
  /** The paths (not the .lock files) held. */
  readonly paths: readonly string[];
  /** Delete the lock files on release (once the paths are valid, nobody needs them). */
  setDeletion(deleteFiles: boolean): void;
  /** Releases every lock; safe to call twice. */
  release(): void;
}

export interface LockPathsOptions extends WaitOptions {
  /** false: return null instead of waiting when a path is locked by someone else. */
  wait?: boolean;
}

interface Held {
  fd: number;
  lockFile: string;
}

/** Opens (creating) a lock file off the event loop: every build starts by locking its outputs. */
function openLockFile(lockFile: string): Promise<number> {
  return openFd(lockFile, constants.O_RDWR | constants.O_CREAT, 0o600);
}

function releaseAll(held: Held[], deleteFiles: boolean): void {
  for (const h of held.splice(0)) {
    if (deleteFiles) {
      try {
        unlinkSync(h.lockFile);
      } catch {
        /* removing the file is an optimisation */
      }
      try {
        writeSync(h.fd, 'd');
      } catch {
        /* ignore */
      }
    }
    try {
      closeSync(h.fd); // closing the fd drops the flock
    } catch {
      /* ignore */
    }
  }
}

/**
 * Locks every path in `paths` (real file-system paths). Resolves when all are
 * held, or to null with `wait: false` when one is busy (nothing stays locked).
 */
export async function lockPaths(paths: Iterable<string>, opts: LockPathsOptions = {}): Promise<PathLocks | null> {
  const sorted = [...new Set(paths)].sort();
  const held: Held[] = [];
  try {
    for (const path of sorted) {
      const lockFile = path + '.lock';
      for (;;) {
        const fd = await openLockFile(lockFile);
        try {
          if (opts.wait === false) {
            if (!tryLock(fd, 'exclusive', lockFile)) {
              closeSync(fd);
              releaseAll(held, false);
              return null;
            }
          } else {
            await lockWait(fd, 'exclusive', lockFile, opts);
          }
        } catch (e) {
          closeSync(fd);
          throw e;
        }
        if (fstatSync(fd).size === 0) {
          held.push({ fd, lockFile });
          break;
        }
        // The previous holder deleted this file after we opened it: our lock
        // is on an orphan inode that others no longer see. Start again.
        closeSync(fd);
      }
    }
  } catch (e) {
    releaseAll(held, false);
    throw e;
  }
  let deleteFiles = false;
  return {
    paths: sorted,
    setDeletion(d: boolean) {
      deleteFiles = d;
    },
    release() {
      releaseAll(held, deleteFiles);
    },
  };
}
