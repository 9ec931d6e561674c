// Temporary GC roots of this process, in Nix's format so that either tool's
// garbage collector honours the other's: `temproots/<pid>` holds store paths
// each followed by NUL, and this process keeps an exclusive flock on it for
// as long as it lives. A collector that can lock the file knows its owner is
// dead and ignores (deletes) it.
//
// Adding a root races with a collector that has already read the files. The
// protocol: write the root while holding gc.lock shared; if that lock is
// taken (a collection is running), send the root to the collector's socket
// (gc-socket/socket) and wait for its "1" before going on.
import { closeSync, fstatSync, openSync, unlinkSync, writeSync, constants, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { lockWait, tryLock, unlock } from './flock.js';
import type { StoreLayout } from './layout.js';

interface RootsFile {
  path: string;
  fd: number;
  gcLockFd: number;
  /** Roots already written (no need to write them twice). */
  written: Set<string>;
  users: number;
  /** Serialises adders inside this process. */
  queue: Promise<void>;
}

const files = new Map<string, RootsFile>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const f of files.values()) {
      try {
        unlinkSync(f.path);
      } catch {
        /* ignore */
      }
    }
  });
}

async function openRootsFile(layout: StoreLayout): Promise<RootsFile> {
  const path = join(layout.tempRootsDir, String(process.pid));
  for (;;) {
    // A file with our pid can only be left over by a dead process.
    if (existsSync(path)) {
      try {
        unlinkSync(path);
      } catch {
        /* raced with a collector removing it */
      }
    }
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    await lockWait(fd, 'exclusive', path);
    // A collector may have deleted the file (and written a byte into it)
    // between our open and our lock: then start again with a fresh one.
    if (fstatSync(fd).size === 0) {
      const gcLockFd = openSync(layout.gcLockPath, constants.O_RDWR | constants.O_CREAT, 0o600);
      installExitHook();
      return { path, fd, gcLockFd, written: new Set(), users: 0, queue: Promise.resolve() };
    }
    closeSync(fd);
  }
}

/** Sends one root to a running collector; false when there is none to talk to. */
function sendToCollector(socketPath: string, root: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(socketPath);
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve(ok);
    };
    sock.on('connect', () => sock.write(root + '\n'));
    sock.on('data', (d) => finish(d.length > 0 && d[0] === 0x31 /* '1' */));
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
  });
}

/** Handle on this process's temp roots file for one store (shared by every opener in the process). */
export class TempRoots {
  private file: RootsFile | null = null;
  private closed = false;

  constructor(private readonly layout: StoreLayout) {}

  private async get(): Promise<RootsFile> {
    if (this.file) return this.file;
    let f = files.get(this.layout.tempRootsDir);
    if (!f) {
      f = await openRootsFile(this.layout);
      const again = files.get(this.layout.tempRootsDir);
      if (again) {
        closeSync(f.fd);
        closeSync(f.gcLockFd);
        f = again;
      } else files.set(this.layout.tempRootsDir, f);
    }
    f.users++;
    this.file = f;
    return f;
  }

  /** Protects `storePath` (a logical store path, valid or not) from garbage collection until this process exits. */
  add(storePath: string): Promise<void> {
    return this.addMany([storePath]);
  }

  /** add() for several paths: one lock and one write for all of them (a build roots four or five at once). */
  async addMany(storePaths: readonly string[]): Promise<void> {
    const f = await this.get();
    if (storePaths.every((p) => f.written.has(p))) return;
    const run = f.queue.then(() => this.addLocked(f, storePaths));
    f.queue = run.catch(() => undefined);
    return run;
  }

  private async addLocked(f: RootsFile, storePaths: readonly string[]): Promise<void> {
    const todo = [...new Set(storePaths)].filter((p) => !f.written.has(p));
    if (todo.length === 0) return;
    const text = todo.map((p) => p + '\0').join('');
    for (;;) {
      if (tryLock(f.gcLockFd, 'shared', this.layout.gcLockPath)) {
        try {
          writeSync(f.fd, text);
        } finally {
          unlock(f.gcLockFd, this.layout.gcLockPath);
        }
        break;
      }
      // A collection is running: it must hear about the roots before we go on.
      let told = true;
      for (const p of todo) if (!(await sendToCollector(this.layout.gcSocketPath, p))) told = false;
      if (told) {
        writeSync(f.fd, text);
        break;
      }
      await sleep(20); // it just finished, or has no socket: try the lock again
    }
    for (const p of todo) f.written.add(p);
  }

  /** Drops this handle; the last one in the process removes the file (releasing its roots). */
  close(): void {
    if (this.closed || !this.file) return;
    this.closed = true;
    const f = this.file;
    this.file = null;
    if (--f.users > 0) return;
    files.delete(this.layout.tempRootsDir);
    try {
      unlinkSync(f.path);
    } catch {
      /* ignore */
    }
    closeSync(f.fd);
    closeSync(f.gcLockFd);
  }
}

/** Waits for gc.lock shared, for readers that want a stable view (verify). */
export async function withGcLock<T>(layout: StoreLayout, mode: 'shared' | 'exclusive', fn: () => Promise<T>): Promise<T> {
  const fd = openSync(layout.gcLockPath, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    await lockWait(fd, mode, layout.gcLockPath);
    return await fn();
  } finally {
    closeSync(fd);
  }
}
