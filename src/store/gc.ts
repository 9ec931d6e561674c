// The garbage collector, following Nix 2.8's collectGarbage:
//
//   1. take gc.lock exclusively: from now on no process can add a temp root
//      without telling us; start the socket where they do so;
//   2. find the roots: gcroots/ and profiles/ (incl. indirect roots),
//      runtime roots, temp roots of live processes (stale files removed);
//   3. for every entry of the store directory: an entry that is not a store
//      path is deleted (leftovers of dead processes); for a store path, walk
//      its referrers (and, with keep-derivations, the outputs of
//      derivations; with keep-outputs, the derivers): if any is a root or a
//      temp root the lot is alive (with its closure), otherwise it is dead and
//      deleted, referrers first;
//   4. unlink .links entries nobody links to any more.
//
// Temp roots are compared by hash part only, so `<hash>-x.lock`, `.chroot`
// and `.check` siblings of a path being built stay with it. A `.lock` file
// someone holds locked is never deleted.
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, unlinkSync, constants } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { isDerivationPath, parseStorePath, parseStorePathBaseName } from '../format/store-path.js';
import { lockWait, tryLock } from './flock.js';
import { deletePath, pathSize } from './fs-util.js';
import { findPermanentRoots, findRuntimeRoots, findTempRoots, mergeRoots, type Roots } from './gc-roots.js';
import type { LocalStore } from './local-store.js';
import { topoSort } from './closure.js';
import { PathInUse } from './errors.js';

export type GcAction = 'deleteDead' | 'returnDead' | 'returnLive' | 'deleteSpecific';

export interface GcOptions {
  /** deleteDead (default), returnDead (dry run), returnLive, deleteSpecific. */
  action?: GcAction;
  /** For deleteSpecific: the paths to delete (each must be dead). */
  paths?: Iterable<string>;
  /** Stop after freeing this many bytes. */
  maxFreed?: number;
  /** Also protect paths running processes use (Linux /proc scan; default true). */
  runtimeRoots?: boolean;
  /** Progress messages. */
  log?: (msg: string) => void;
}

export interface GcResult {
  /** Deleted (or, for a dry run, deletable) store paths and other entries, sorted. */
  paths: string[];
  /** Bytes freed (dry run: that would be freed). */
  bytesFreed: number;
}

class GcLimitReached extends Error {}

/** The socket where processes report temp roots while we run (Nix's gc-socket protocol). */
class RootsServer {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly socketPath: string,
    private readonly onRoot: (storePath: string) => void,
  ) {}

  async start(): Promise<void> {
    mkdirSync(dirname(this.socketPath), { recursive: true });
    try {
      unlinkSync(this.socketPath);
    } catch {
      /* not there */
    }
    const server = createServer((sock) => {
      this.sockets.add(sock);
      let buf = '';
      sock.setEncoding('latin1');
      sock.on('data', (d: string) => {
        buf += d;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          this.onRoot(line);
          sock.write('1');
        }
      });
      sock.on('error', () => {});
      sock.on('close', () => this.sockets.delete(sock));
    });
    await new Promise<void>((resolve) => {
      server.once('error', () => resolve()); // e.g. a socket path too long: clients then wait for us to finish
      server.listen(this.socketPath, () => {
        this.server = server;
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(this.socketPath);
    } catch {
      /* ignore */
    }
  }
}

/** True when someone holds the flock on `path` (a .lock file in use). */
function isLockedByOthers(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR);
  } catch {
    return false;
  }
  try {
    return !tryLock(fd, 'exclusive', path);
  } finally {
    closeSync(fd); // closing drops the lock if we got it
  }
}

export async function collectGarbage(store: LocalStore, opts: GcOptions = {}): Promise<GcResult> {
  const log = opts.log ?? (() => {});
  const action = opts.action ?? 'deleteDead';
  const shouldDelete = action === 'deleteDead' || action === 'deleteSpecific';
  const maxFreed = opts.maxFreed ?? Number.MAX_SAFE_INTEGER;
  const layout = store.layout;
  const { keepDerivations, keepOutputs } = store.settings;
  const db = store.db;

  const gcFd = openSync(layout.gcLockPath, constants.O_RDWR | constants.O_CREAT, 0o600);
  const tempHashes = new Set<string>();
  const addTempHash = (p: string) => {
    try {
      tempHashes.add(parseStorePath(store.storeDir, p).hashPart);
    } catch {
      /* garbage from a client: ignore */
    }
  };
  const server = new RootsServer(layout.gcSocketPath, addTempHash);
  const result: GcResult = { paths: [], bytesFreed: 0 };
  try {
    await lockWait(gcFd, 'exclusive', layout.gcLockPath, { onWait: () => log('waiting for the big garbage collector lock...') });
    await server.start();

    log('finding garbage collector roots...');
    const isValid = (p: string) => db.isValidPath(p);
    const rootMap: Roots = findPermanentRoots(layout, isValid);
    if (opts.runtimeRoots !== false) mergeRoots(rootMap, findRuntimeRoots(layout, isValid));
    const roots = new Set(rootMap.keys());
    for (const p of findTempRoots(layout).keys()) {
      addTempHash(p);
      roots.add(p);
    }

    const alive = new Set<string>();
    const dead = new Set<string>();
    const referrersCache = new Map<string, string[]>();
    const specific = new Set(opts.paths ?? []);

    const removeEntry = (baseName: string): void => {
      const real = join(store.realStoreDir, baseName);
      const freed = shouldDelete ? deletePath(real) : pathSize(real);
      result.paths.push(`${store.storeDir}/${baseName}`);
      result.bytesFreed += freed;
      if (result.bytesFreed > maxFreed) throw new GcLimitReached();
    };

    const markAlive = (path: string, start: string) => {
      alive.add(path);
      alive.add(start);
      if (!db.isValidPath(path)) return;
      for (const p of store.computeClosure([path], { includeOutputs: keepOutputs, includeDerivers: keepDerivations })) alive.add(p);
    };

    // Visits everything reachable from `start` through referrers (and the
    // keep-* edges); if none of it is alive, all of it is dead.
    const deleteReferrersClosure = (start: string): void => {
      const visited = new Set<string>();
      const todo: string[] = [];
      const enqueue = (p: string) => {
        if (!visited.has(p)) {
          visited.add(p);
          todo.push(p);
        }
      };
      enqueue(start);
      while (todo.length > 0) {
        const path = todo.shift()!;
        if (alive.has(path)) {
          alive.add(start);
          return;
        }
        if (dead.has(path)) continue;
        if (roots.has(path)) return markAlive(path, start);
        if (action === 'deleteSpecific' && !specific.has(path)) return;
        if (tempHashes.has(parseStorePath(store.storeDir, path).hashPart)) return markAlive(path, start);
        if (db.isValidPath(path)) {
          let refs = referrersCache.get(path);
          if (!refs) {
            refs = db.queryReferrers(path);
            referrersCache.set(path, refs);
          }
          for (const r of refs) enqueue(r);
          if (keepDerivations && isDerivationPath(path)) {
            for (const out of store.queryPartialDerivationOutputMap(path).values()) {
              if (out && db.isValidPath(out) && db.queryPathInfo(out)?.deriver === path) enqueue(out);
            }
          }
          if (keepOutputs) for (const d of db.queryValidDerivers(path)) enqueue(d);
        }
      }
      const order = topoSort(visited, (p) => (db.isValidPath(p) ? db.queryReferences(p) : []));
      for (const path of order) {
        if (dead.has(path)) continue;
        dead.add(path);
        if (shouldDelete) {
          db.invalidatePathChecked(path);
          referrersCache.delete(path);
        }
        const base = path.slice(store.storeDir.length + 1);
        if (existsSync(join(store.realStoreDir, base)) || isLink(join(store.realStoreDir, base))) removeEntry(base);
        else result.paths.push(path);
      }
    };

    if (action === 'deleteSpecific') {
      try {
        for (const p of specific) {
          deleteReferrersClosure(p);
          if (!dead.has(p)) {
            throw new PathInUse(
              `cannot delete path '${p}' since it is still alive (a root, a temp root, or referred to by one)`,
              { path: p },
            );
          }
        }
      } catch (e) {
        // max-freed reached: stop there, as Nix does (a daemon client may ask for both).
        if (!(e instanceof GcLimitReached)) throw e;
      }
    } else {
      log(shouldDelete ? 'deleting garbage...' : 'determining live/dead paths...');
      try {
        const linksName = '.links';
        let n = 0;
        for (const name of readdirSync(store.realStoreDir)) {
          if (name === linksName || name.startsWith('.tmp-link-')) continue;
          // Let temp roots reported through the socket in, now and then.
          if ((++n & 63) === 0) await yieldNow();
          let isStorePath = true;
          try {
            parseStorePathBaseName(name);
          } catch {
            isStorePath = false;
          }
          if (isStorePath) {
            const path = `${store.storeDir}/${name}`;
            if (name.endsWith('.lock') && !db.isValidPath(path)) {
              const hash = name.slice(0, 32);
              if (tempHashes.has(hash) || roots.has(path) || isLockedByOthers(join(store.realStoreDir, name))) continue;
            }
            deleteReferrersClosure(path);
          } else {
            removeEntry(name);
          }
        }
      } catch (e) {
        if (!(e instanceof GcLimitReached)) throw e;
      }
    }

    if (action === 'returnLive') {
      result.paths = [...alive].filter((p) => db.isValidPath(p)).sort();
      result.bytesFreed = 0;
      return result;
    }

    if (shouldDelete) {
      log('deleting unused links...');
      let names: string[] = [];
      try {
        names = readdirSync(layout.linksDir);
      } catch {
        names = [];
      }
      for (const name of names) {
        const p = join(layout.linksDir, name);
        try {
          if (lstatSync(p).nlink === 1) unlinkSync(p);
        } catch {
          /* raced */
        }
      }
    }
    result.paths.sort();
    return result;
  } finally {
    try {
      await server.stop();
    } finally {
      closeSync(gcFd); // drops the exclusive gc.lock
    }
  }
}

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}
