// Recursive builds (Nix's recursive-nix): a derivation that requires the
// system feature 'recursive-nix' gets a worker-protocol daemon of its own for
// the length of its build, listening on `<build dir>/.nix-socket`, with
// NIX_REMOTE pointing there as the builder sees it. The daemon serves a
// RestrictedStore over the real store: the builder sees its input closure
// plus whatever it adds or builds, and every such path is made visible in the
// running sandbox at once (RunningGoal.addPath -> backend.addPath) and joins
// the reference-scan candidates of the outputs.
//
// Lifetime and bounds:
//   - one WorkerServer per build, a fixed pool of `daemon-max-connections`
//     handlers and a bounded queue (back-pressure, nothing per-connection
//     that outlives its connection); stop() ends every connection (their
//     AbortSignals stop inner builds and half-read NARs), closes the socket
//     and removes it. The goal calls stop() as soon as the builder exited,
//     before registration, and again (a no-op) at teardown.
//   - inner builds go through the build engine with their own build slots
//     (max-jobs, shared by all inner requests of this build): they never wait
//     for a slot the outer build holds (Nix issue 4216), and the outer's
//     output locks are on paths no inner build can produce.
//   - an added path is rooted in the outer store for the rest of the
//     process, as in Nix, so the garbage collector cannot take it between
//     the inner connection's end and the outer's registration.
//
// The socket path: sun_path holds 108 bytes on Linux, 104 on macOS, NUL
// included. The build dir's name is shortened for recursive builds so the
// socket fits (buildDirName); the builder's view (`/build/.nix-socket` in the
// Linux sandbox, the host path unsandboxed) must fit, or the build fails with
// a message saying so. When only the host path is too long (Linux sandbox
// under a deep build-dir), the daemon binds through /proc/self/fd/<dir fd>.
import { chownSync, closeSync, constants as fsConstants, openSync, unlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { BackendChoice, BackendForInput } from '../../backends/backend.js';
import { defineError } from '../errors.js';
import { derivationType } from '../format/derivation.js';
import type { LocalStore } from '../store/local-store.js';
import type { EngineParts, RecursiveBuildHook } from './goal.js';
import { Semaphore } from './scheduler.js';
import type { RunSettings } from './run-settings.js';

export class RecursiveSocketPathTooLong extends defineError('RecursiveSocketPathTooLong', 'E_RECURSIVE_SOCKET_PATH_TOO_LONG') {}

/** The daemon socket's name in the build dir (as Nix). */
export const NIX_SOCKET_NAME = '.nix-socket';

/** Longest unix socket path in bytes (sun_path minus the terminating NUL). */
export function socketPathLimit(platform: NodeJS.Platform = process.platform): number {
  return platform === 'linux' ? 107 : 103;
}

/** Bytes the build dir's counter suffix may take (`.drv-99999`: build-dir.ts counts below 100000). */
const COUNTER_BYTES = '.drv-99999'.length;
const BUILD_DIR_PREFIX = 'nix-build-';

function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = '';
  for (const ch of s) {
    if (Buffer.byteLength(out + ch) > max) break;
    out += ch;
  }
  return out;
}

/**
 * The derivation name to put in the build dir's name (`nix-build-<name>.drv-<n>`
 * under `parent`) so that `<dir>/.nix-socket` fits: the name itself when it
 * does, else its longest prefix that does (possibly empty).
 */
export function recursiveBuildDirName(parent: string, drvName: string, platform: NodeJS.Platform = process.platform): string {
  const fixed = Buffer.byteLength(join(parent, BUILD_DIR_PREFIX) + '/' + NIX_SOCKET_NAME) + COUNTER_BYTES;
  const room = Math.max(0, socketPathLimit(platform) - fixed);
  return truncateUtf8(drvName, room).replace(/[-.]+$/, '');
}

/** What a recursive build's daemon is made of (for tests, `doctor`, leak checks). */
export interface RecursiveSession {
  drvPath: string;
  /** The socket on the host (what the builder connects to, seen from outside). */
  socketHost: string;
  /** NIX_REMOTE's socket path, as the builder sees it. */
  socketInBuild: string;
  server: import('../daemon/server.js').WorkerServer;
  store: import('../daemon/restricted-store.js').RestrictedStore;
  /** Paths added or built through the daemon, in order. */
  readonly addedPaths: ReadonlySet<string>;
  stopped: boolean;
}

export interface RecursiveHookOptions {
  /** The outer build's store (inner builds happen there, added paths are rooted there). */
  store: LocalStore;
  /** The outer build's settings; inner builds run with the same. */
  settings: RunSettings;
  /** Default settings.recursiveAllowFixedOutput, else false. */
  allowFixedOutput?: boolean;
  /** Connection handlers per build. Default settings.daemonMaxConnections, else 16. */
  maxConnections?: number;
  /** Connections waiting for a handler before new ones are closed. Default 64. */
  maxQueuedConnections?: number;
  /** Passed to the inner builds' scheduler (tests stub them). */
  parts?: EngineParts;
  chooseBackend?(i: BackendForInput): Promise<BackendChoice>;
  platform?: NodeJS.Platform;
  /** Every session, when its daemon listens (tests, leak checks). */
  onSession?(s: RecursiveSession): void;
  /** A connection that ended with an error (protocol violation, the builder died mid-request). */
  onConnectionError?(drvPath: string, err: Error): void;
}

/**
 * The derivation in the graph below `drvPath` that would run with network
 * access (fixed-output or impure, outputs missing), or null.
 */
export function networkDerivationToBuild(store: LocalStore, drvPath: string): string | null {
  const seen = new Set<string>();
  const todo = [drvPath];
  while (todo.length > 0) {
    const d = todo.pop()!;
    if (seen.has(d)) continue;
    seen.add(d);
    if (!store.isValidPath(d)) continue; // the build reports it
    let drv;
    let type;
    let missing;
    try {
      drv = store.readDerivation(d);
      missing = [...store.queryPartialDerivationOutputMap(d).values()].some((p) => p === null || !store.isValidPath(p));
      type = derivationType(drv);
    } catch {
      continue; // malformed: the build reports it
    }
    if (!missing) continue;
    if (type === 'caFixed' || type === 'impure') return d;
    for (const [input, wanted] of drv.inputDrvs) {
      const m = store.isValidPath(input) ? store.queryPartialDerivationOutputMap(input) : new Map<string, string | null>();
      if ([...wanted].some((o) => {
        const p = m.get(o);
        return !p || !store.isValidPath(p);
      })) {
        todo.push(input);
      }
    }
  }
  return null;
}

/** The RecursiveBuildHook the scheduler gives goals of 'recursive-nix' derivations. */
export function createRecursiveHook(o: RecursiveHookOptions): RecursiveBuildHook {
  const platform = o.platform ?? process.platform;
  const hook: RecursiveBuildHook = {
    buildDirName: (parent, drvName) => recursiveBuildDirName(parent, drvName, platform),
    async start(ctx) {
      const [{ WorkerServer }, { RestrictedStore }, { LocalStoreAdapter }, { makeEngineBuild }] = await Promise.all([
        import('../daemon/server.js'),
        import('../daemon/restricted-store.js'),
        import('../daemon/local-store-adapter.js'),
        import('../daemon/build-engine.js'),
      ]);
      const limit = socketPathLimit(platform);
      const socketHost = join(ctx.buildDirHost, NIX_SOCKET_NAME);
      const socketInBuild = posix.join(ctx.buildDirSandbox, NIX_SOCKET_NAME);
      const bytes = (p: string) => Buffer.byteLength(p);
      if (bytes(socketInBuild) > limit) {
        throw new RecursiveSocketPathTooLong(
          `cannot build '${ctx.drvPath}' with recursive-nix: the daemon socket '${socketInBuild}' has ${bytes(socketInBuild)} bytes, ` +
            `more than the ${limit} unix sockets allow on ${platform}; set 'build-dir' (or TMPDIR) to a shorter directory`,
          { drvPath: ctx.drvPath, path: socketInBuild, bytes: bytes(socketInBuild), limit },
        );
      }
      // The host path only matters for bind(); a Linux sandbox under a deep
      // build-dir binds through the directory's fd instead.
      let dirFd = -1;
      let listenPath = socketHost;
      if (bytes(socketHost) > limit) {
        if (platform !== 'linux') {
          throw new RecursiveSocketPathTooLong(
            `cannot build '${ctx.drvPath}' with recursive-nix: the daemon socket '${socketHost}' has ${bytes(socketHost)} bytes, ` +
              `more than the ${limit} unix sockets allow on ${platform}; set 'build-dir' (or TMPDIR) to a shorter directory`,
            { drvPath: ctx.drvPath, path: socketHost, bytes: bytes(socketHost), limit },
          );
        }
        dirFd = openSync(ctx.buildDirHost, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
        listenPath = `/proc/self/fd/${dirFd}/${NIX_SOCKET_NAME}`;
      }

      const settings = o.settings;
      const slots = new Semaphore(Math.max(1, settings.maxJobs));
      const adapter = new LocalStoreAdapter(o.store, {
        build: makeEngineBuild({
          settingsFor: () => ({ run: settings, keepGoing: false }),
          scheduler: {
            recursive: hook, // inner derivations may recurse again, each with a daemon of its own
            slots,
            ...(o.parts ? { parts: o.parts } : {}),
            ...(o.chooseBackend ? { chooseBackend: o.chooseBackend } : {}),
          },
        }),
      });

      // One materialisation per path, even when connections race to add it.
      const inflight = new Map<string, Promise<void>>();
      const materialised = new Set<string>();
      const addDependency = (p: string): Promise<void> => {
        if (materialised.has(p)) return Promise.resolve();
        let pending = inflight.get(p);
        if (!pending) {
          pending = (async () => {
            await o.store.addTempRoot(p);
            await ctx.addPath(p);
            materialised.add(p);
          })().finally(() => inflight.delete(p));
          inflight.set(p, pending);
        }
        return pending;
      };
      const restricted = new RestrictedStore({
        next: adapter,
        inputPaths: ctx.inputClosure,
        addDependency,
        fixedOutputToBuild: async (drvPath) => networkDerivationToBuild(o.store, drvPath),
        allowFixedOutputBuilds: o.allowFixedOutput ?? settings.recursiveAllowFixedOutput ?? false,
      });
      const server = new WorkerServer({
        store: restricted,
        recursive: true,
        trusted: false,
        maxConnections: Math.max(1, o.maxConnections ?? settings.daemonMaxConnections ?? 16),
        maxQueuedConnections: o.maxQueuedConnections ?? 64,
        ...(o.onConnectionError ? { onConnectionError: (e: Error) => o.onConnectionError!(ctx.drvPath, e) } : {}),
      });
      const closeDirFd = () => {
        if (dirFd < 0) return;
        try {
          closeSync(dirFd);
        } catch {
          // already closed
        }
        dirFd = -1;
      };
      try {
        await server.listen(listenPath, { mode: 0o600 });
      } catch (e) {
        closeDirFd();
        adapter.close();
        throw e;
      }

      const session: RecursiveSession = {
        drvPath: ctx.drvPath,
        socketHost,
        socketInBuild,
        server,
        store: restricted,
        addedPaths: restricted.addedPaths,
        stopped: false,
      };
      let stopping: Promise<void> | null = null;
      const stop = (): Promise<void> => {
        stopping ??= (async () => {
          session.stopped = true;
          // each step runs whatever happened before it
          try {
            await server.close();
          } finally {
            try {
              await Promise.allSettled([...inflight.values()]);
            } finally {
              adapter.close();
              closeDirFd();
              try {
                unlinkSync(socketHost);
              } catch {
                // removed by the server already
              }
            }
          }
        })();
        return stopping;
      };
      o.onSession?.(session);
      return {
        socketHost,
        env: { NIX_REMOTE: `unix://${socketInBuild}` },
        stop,
        chownToBuilder(uid: number, gid: number) {
          if (session.stopped) return;
          chownSync(dirFd >= 0 ? listenPath : socketHost, uid, gid);
        },
      };
    },
  };
  return hook;
}
