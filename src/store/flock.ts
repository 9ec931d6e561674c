// flock(2) through koffi. Node has no file locks; Nix's path locks, temp-root
// files and the GC lock are flock locks, and sharing them is what lets drvbox
// and Nix work on one store. A flock lock belongs to the open file
// description, so it dies with the process (no stale lock after kill -9) and
// two opens in one process exclude each other too.
//
// The call goes through the native addon (src/native/addon.ts) where it was
// built, and through koffi otherwise: same semantics, koffi just loads slower.
//
// We only ever call flock with LOCK_NB: a blocking flock would stall the
// event loop (or a libuv pool thread). Waiting is a poll with backoff.
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { nativeAddon } from '../native/addon.js';
import { LockBusy, LockFailed } from './errors.js';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

export type LockMode = 'shared' | 'exclusive';

interface Libc {
  flock: (fd: number, op: number) => number;
  errno: () => number;
  EWOULDBLOCK: number;
  EINTR: number;
}

let libc: Libc | null = null;
let implementation: 'native' | 'koffi' = 'koffi';

/** Which implementation serves flock in this process (loads it). */
export function flockImplementation(): 'native' | 'koffi' {
  load();
  return implementation;
}

function load(): Libc {
  if (libc) return libc;
  const native = nativeAddon();
  if (native) {
    // The addon returns -errno: errno() reads the last one.
    let last = 0;
    implementation = 'native';
    libc = {
      flock: (fd, op) => {
        const r = native.flock(fd, op);
        last = r < 0 ? -r : 0;
        return r < 0 ? -1 : 0;
      },
      errno: () => last,
      EWOULDBLOCK: osConstants.errno.EWOULDBLOCK ?? osConstants.errno.EAGAIN,
      EINTR: osConstants.errno.EINTR,
    };
    return libc;
  }
  const require = createRequire(import.meta.url);
  let koffi: typeof import('koffi');
  try {
    koffi = require('koffi') as typeof import('koffi');
  } catch (e) {
    throw new LockFailed(`cannot load koffi to call flock(2): ${(e as Error).message}`, {});
  }
  const name = process.platform === 'darwin' ? '/usr/lib/libSystem.B.dylib' : process.platform === 'linux' ? 'libc.so.6' : null;
  if (!name) throw new LockFailed(`file locks are not supported on ${process.platform}`, { platform: process.platform });
  const lib = koffi.load(name);
  const flock = lib.func('int flock(int fd, int op)') as (fd: number, op: number) => number;
  const errnos = koffi.os.errno;
  libc = { flock, errno: () => koffi.errno(), EWOULDBLOCK: errnos.EWOULDBLOCK ?? errnos.EAGAIN ?? 11, EINTR: errnos.EINTR ?? 4 };
  return libc;
}

/** Tries to lock `fd` without waiting. True when the lock is held. */
export function tryLock(fd: number, mode: LockMode, what: string): boolean {
  const c = load();
  const op = (mode === 'shared' ? LOCK_SH : LOCK_EX) | LOCK_NB;
  for (;;) {
    if (c.flock(fd, op) === 0) return true;
    const err = c.errno();
    if (err === c.EINTR) continue;
    if (err === c.EWOULDBLOCK) return false;
    throw new LockFailed(`cannot lock '${what}': flock failed with errno ${err}`, { path: what, errno: err });
  }
}

export function unlock(fd: number, what: string): void {
  const c = load();
  if (c.flock(fd, LOCK_UN) !== 0) {
    throw new LockFailed(`cannot unlock '${what}': flock failed with errno ${c.errno()}`, { path: what });
  }
}

export interface WaitOptions {
  /** Called once when the lock is busy and we start waiting. */
  onWait?: () => void;
  signal?: AbortSignal;
  /** Give up (LockBusy) after this many ms; default: wait for ever. */
  timeoutMs?: number;
}

/** Locks `fd`, polling with backoff (1 ms .. 100 ms) while another holder has it. */
export async function lockWait(fd: number, mode: LockMode, what: string, opts: WaitOptions = {}): Promise<void> {
  if (tryLock(fd, mode, what)) return;
  opts.onWait?.();
  const start = Date.now();
  let delay = 1;
  for (;;) {
    opts.signal?.throwIfAborted();
    await sleep(delay);
    if (tryLock(fd, mode, what)) return;
    if (opts.timeoutMs !== undefined && Date.now() - start > opts.timeoutMs) {
      throw new LockBusy(`timed out waiting for the lock on '${what}'`, { path: what });
    }
    delay = Math.min(delay * 2, 100);
  }
}
