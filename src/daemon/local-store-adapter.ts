// The real store behind the worker-protocol server: LocalStore as a
// DaemonStore, for `drvbox daemon` and (wrapped in RestrictedStore) the
// daemon of recursive builds.
//
//   - NARs stream both ways; nothing is held whole in memory. Every stream
//     and long operation watches the connection's AbortSignal, so a client
//     that hangs up frees its handler.
//   - Temp roots belong to the connection, as in Nix (where each connection
//     is a forked process): every connection gets its own flock'ed file
//     `temproots/<pid>-c<n>` in Nix's format, removed when it ends. The
//     store functions that add temp roots get a per-connection view of the
//     store whose addTempRoot writes there, so a long-running daemon does not
//     keep everything it ever added alive.
//   - Building goes through an injected function (the build engine), so the
//     adapter can be tested with a stub. Store paths that are not
//     derivation outputs are never "built": drvbox has no substituters, so an
//     invalid one is reported as Nix reports it without substituters.
//   - There are no signing keys: importing a NAR with signature checking on
//     is only accepted for content-addressed paths (whose name proves their
//     contents), as Nix does with require-sigs and no trusted keys.
import { closeSync, fstatSync, openSync, unlinkSync, writeSync, constants } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defineError } from '../errors.js';
import { isDerivationPath } from '../format/store-path.js';
import { addDumpToStore, addNarToStore as storeAddNar } from '../store/add.js';
import { parseContentAddress, pathMatchesContentAddress } from '../store/content-address.js';
import { drvOutputIdString, parseDrvOutputId } from '../store/db.js';
import { InvalidPath } from '../store/errors.js';
import { narFromPath as storeNarFromPath } from '../store/export.js';
import { lockWait, tryLock, unlock } from '../store/flock.js';
import { collectGarbage as storeCollectGarbage, type GcAction as StoreGcAction } from '../store/gc.js';
import type { StoreLayout } from '../store/layout.js';
import type { LocalStore } from '../store/local-store.js';
import type { PathInfo as StorePathInfo } from '../store/path-info.js';
import { BuildMode, BuildStatus, GcAction, Verbosity } from './protocol.js';
import type {
  AddNarOptions,
  AddToStoreRequest,
  BuildResult,
  DaemonStore,
  DerivedPath,
  GcRequest,
  GcResult,
  GcRoot,
  MissingInfo,
  OpContext,
  PathInfo,
  Realisation,
} from './store-api.js';

export class PathCannotBeCreated extends defineError('PathCannotBeCreated', 'E_PATH_CANNOT_BE_CREATED') {}
export class MissingSignature extends defineError('MissingSignature', 'E_MISSING_SIGNATURE') {}
export class BuildUnavailable extends defineError('BuildUnavailable', 'E_BUILD_UNAVAILABLE') {}
export class RealisationNotTrusted extends defineError('RealisationNotTrusted', 'E_REALISATION_NOT_TRUSTED') {}
export class BadGcAction extends defineError('BadGcAction', 'E_BAD_GC_ACTION') {}

/**
 * What the build engine gets besides the targets: the client's identity,
 * options (keep-failed, max-jobs, …), log channel and AbortSignal (the
 * client hung up: stop the builds), and the store to build in.
 */
export interface DaemonBuildContext extends Pick<OpContext, 'trusted' | 'options' | 'signal' | 'log' | 'startActivity' | 'stopActivity' | 'result'> {
  /** A per-connection view of the store (temp roots end with the connection). */
  store: LocalStore;
}

/**
 * The build engine as the daemon calls it: derivation targets only (kind
 * 'built'), one result per target in order; a failed build is a result, not
 * an exception.
 */
export type DaemonBuildFn = (targets: DerivedPath[], mode: number, ctx: DaemonBuildContext) => Promise<BuildResult[]>;

export interface LocalStoreAdapterOptions {
  /** The build engine; without it, building a derivation fails with BuildUnavailable. */
  build?: DaemonBuildFn;
  /** GC: also protect paths running processes use (Linux /proc scan). Default true. */
  runtimeRoots?: boolean;
}

const GC_ACTIONS: Record<number, StoreGcAction> = {
  [GcAction.ReturnLive]: 'returnLive',
  [GcAction.ReturnDead]: 'returnDead',
  [GcAction.DeleteDead]: 'deleteDead',
  [GcAction.DeleteSpecific]: 'deleteSpecific',
};

function toDaemonInfo(i: StorePathInfo): PathInfo {
  return {
    path: i.path,
    deriver: i.deriver,
    narHash: i.narHash,
    references: [...i.references],
    registrationTime: i.registrationTime,
    narSize: i.narSize,
    ultimate: i.ultimate,
    sigs: [...i.sigs],
    ca: i.ca,
  };
}

function sortedUnique(paths: Iterable<string>): string[] {
  return [...new Set(paths)].sort();
}

/** Re-yields `it`, failing as soon as `signal` fires (the client went away). */
async function* watched(it: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  signal.throwIfAborted();
  for await (const chunk of it) {
    signal.throwIfAborted();
    yield chunk;
  }
}

function describeTarget(t: DerivedPath): string {
  return t.kind === 'opaque' ? t.path : t.drvPath;
}

function emptyResult(path: DerivedPath, status: number, errorMsg = ''): BuildResult {
  return { path, status, errorMsg, timesBuilt: 0, isNonDeterministic: false, startTime: 0, stopTime: 0, builtOutputs: [] };
}

interface ConnectionState {
  roots: ConnectionTempRoots;
  view: LocalStore;
}

export class LocalStoreAdapter implements DaemonStore {
  readonly storeDir: string;
  private readonly build: DaemonBuildFn | null;
  private readonly connections = new WeakMap<AbortSignal, ConnectionState>();
  private readonly live = new Set<ConnectionState>();
  private closed = false;

  constructor(
    readonly store: LocalStore,
    private readonly opts: LocalStoreAdapterOptions = {},
  ) {
    this.storeDir = store.storeDir;
    this.build = opts.build ?? null;
  }

  /** Temp-root files of connections still open (for tests and `doctor`). */
  get openConnections(): number {
    return this.live.size;
  }

  /** Releases the temp roots of every connection still open. Idempotent. */
  close(): void {
    this.closed = true;
    for (const c of this.live) c.roots.close();
    this.live.clear();
  }

  /**
   * The per-connection store view: the LocalStore with addTempRoot writing to
   * the connection's own roots file. Made lazily, dropped when the
   * connection's signal fires.
   */
  private conn(ctx: OpContext): ConnectionState {
    ctx.signal.throwIfAborted();
    let c = this.connections.get(ctx.signal);
    if (c) return c;
    const roots = new ConnectionTempRoots(this.store.layout);
    // Prototype delegation: every LocalStore member reads through to the
    // real store; only addTempRoot(s) are this connection's.
    const view = Object.create(this.store, {
      addTempRoot: { value: (p: string) => roots.add(p), enumerable: false },
      addTempRoots: { value: async (ps: readonly string[]) => void (await Promise.all(ps.map((p) => roots.add(p)))), enumerable: false },
    }) as LocalStore;
    const state: ConnectionState = { roots, view };
    this.connections.set(ctx.signal, state);
    if (!this.closed) this.live.add(state);
    ctx.signal.addEventListener(
      'abort',
      () => {
        this.live.delete(state);
        roots.close();
      },
      { once: true },
    );
    return state;
  }

  private requireInfo(path: string): StorePathInfo {
    const info = this.store.queryPathInfo(path);
    if (!info) throw new InvalidPath(`path '${path}' is not valid`, { path });
    return info;
  }

  // ---- queries -------------------------------------------------------------

  async isValidPath(path: string, _ctx: OpContext): Promise<boolean> {
    return this.store.isValidPath(path);
  }

  async queryValidPaths(paths: string[], _substitute: boolean, _ctx: OpContext): Promise<string[]> {
    // no substituters: nothing to substitute first
    return sortedUnique(paths.filter((p) => this.store.isValidPath(p)));
  }

  async queryPathInfo(path: string, _ctx: OpContext): Promise<PathInfo | null> {
    const info = this.store.queryPathInfo(path);
    return info ? toDaemonInfo(info) : null;
  }

  async queryReferrers(path: string, _ctx: OpContext): Promise<string[]> {
    return sortedUnique(this.store.queryReferrers(path));
  }

  async queryValidDerivers(path: string, _ctx: OpContext): Promise<string[]> {
    return sortedUnique(this.store.queryValidDerivers(path));
  }

  async queryDerivationOutputMap(drvPath: string, _ctx: OpContext): Promise<Map<string, string | null>> {
    this.requireInfo(drvPath);
    return this.store.queryPartialDerivationOutputMap(drvPath);
  }

  async queryAllValidPaths(_ctx: OpContext): Promise<string[]> {
    return sortedUnique(this.store.queryAllValidPaths());
  }

  async queryPathFromHashPart(hashPart: string, _ctx: OpContext): Promise<string | null> {
    return this.store.queryPathFromHashPart(hashPart);
  }

  async querySubstitutablePaths(_paths: string[], _ctx: OpContext): Promise<string[]> {
    return [];
  }

  /**
   * Nix's queryMissing without substituters: an invalid opaque path is
   * unknown; a derivation whose wanted outputs are not all valid will be
   * built, and so (recursively) will the input derivations it needs.
   */
  async queryMissing(targets: DerivedPath[], ctx: OpContext): Promise<MissingInfo> {
    const willBuild = new Set<string>();
    const unknown = new Set<string>();
    const done = new Set<string>();
    const todo = [...targets];
    while (todo.length > 0) {
      ctx.signal.throwIfAborted();
      const t = todo.pop()!;
      const key = t.kind === 'opaque' ? t.path : `${t.drvPath}!${[...t.outputs].sort().join(',')}`;
      if (done.has(key)) continue;
      done.add(key);
      if (t.kind === 'opaque') {
        if (!this.store.isValidPath(t.path)) unknown.add(t.path);
        continue;
      }
      if (!this.store.isValidPath(t.drvPath)) {
        unknown.add(t.drvPath);
        continue;
      }
      let known = true;
      let missing = false;
      for (const [name, p] of this.store.queryPartialDerivationOutputMap(t.drvPath)) {
        if (p === null) {
          known = false;
          break;
        }
        if ((t.outputs.length === 0 || t.outputs.includes(name)) && !this.store.isValidPath(p)) missing = true;
      }
      if (known && !missing) continue;
      willBuild.add(t.drvPath);
      const drv = this.store.readDerivation(t.drvPath);
      for (const [input, outputs] of drv.inputDrvs) todo.push({ kind: 'built', drvPath: input, outputs: [...outputs] });
    }
    return { willBuild: sortedUnique(willBuild), willSubstitute: [], unknown: sortedUnique(unknown), downloadSize: 0, narSize: 0 };
  }

  // ---- adding ----------------------------------------------------------------

  async addToStore(req: AddToStoreRequest, contents: AsyncIterable<Uint8Array>, ctx: OpContext): Promise<PathInfo> {
    const { view } = this.conn(ctx);
    const m = req.method;
    const path = await addDumpToStore(view, watched(contents, ctx.signal), {
      name: req.name,
      method: m.kind === 'text' ? 'text' : m.recursive ? 'recursive' : 'flat',
      ...(m.kind === 'fixed' ? { hashAlgo: m.algo } : {}),
      references: req.references,
      repair: req.repair,
    });
    return toDaemonInfo(this.requireInfo(path));
  }

  async addNarToStore(info: PathInfo, nar: AsyncIterable<Uint8Array>, opts: AddNarOptions, ctx: OpContext): Promise<void> {
    const { view } = this.conn(ctx);
    if (opts.checkSigs && !this.isContentAddressed(info)) {
      throw new MissingSignature(
        `cannot add path '${info.path}' because it lacks a signature by a trusted key (drvbox checks no signatures: only content-addressed paths, or a trusted user with signature checking off, can add it)`,
        { path: info.path },
      );
    }
    await storeAddNar(
      view,
      {
        path: info.path,
        narHash: info.narHash,
        narSize: info.narSize,
        references: info.references,
        deriver: info.deriver,
        ca: info.ca,
        sigs: info.sigs,
        ultimate: info.ultimate,
        registrationTime: info.registrationTime,
      },
      watched(nar, ctx.signal),
      { repair: opts.repair },
    );
  }

  /** Nix's ValidPathInfo::isContentAddressed: the path follows from its `ca`. */
  private isContentAddressed(info: PathInfo): boolean {
    if (!info.ca) return false;
    try {
      return pathMatchesContentAddress(this.storeDir, info.path, parseContentAddress(info.ca), info.references);
    } catch {
      return false;
    }
  }

  async narFromPath(path: string, ctx: OpContext): Promise<AsyncIterable<Uint8Array>> {
    const info = this.requireInfo(path);
    return watched(storeNarFromPath(this.store, info), ctx.signal);
  }

  async addSignatures(path: string, sigs: string[], _ctx: OpContext): Promise<void> {
    this.requireInfo(path);
    this.store.addSignatures(path, sigs);
  }

  // ---- building --------------------------------------------------------------

  /**
   * Opaque targets are answered here (valid, or no substituter can make
   * them); derivation targets go to the build engine in one call.
   */
  async buildPaths(targets: DerivedPath[], mode: number, ctx: OpContext): Promise<BuildResult[]> {
    const results: (BuildResult | null)[] = targets.map((t) => {
      if (t.kind !== 'opaque') return null;
      if (this.store.isValidPath(t.path)) return emptyResult(t, BuildStatus.AlreadyValid);
      return emptyResult(t, BuildStatus.NoSubstituters, `path '${t.path}' is required, but there is no substituter that can build it`);
    });
    const drvTargets = targets.filter((t) => t.kind === 'built');
    if (drvTargets.length > 0) {
      if (!this.build) {
        throw new BuildUnavailable(
          `cannot build '${describeTarget(drvTargets[0]!)}': this drvbox daemon has no build engine`,
          { target: describeTarget(drvTargets[0]!) },
        );
      }
      for (const t of drvTargets) if (!isDerivationPath(describeTarget(t))) throw new InvalidPath(`path '${describeTarget(t)}' is not a derivation`, { path: describeTarget(t) });
      const { view } = this.conn(ctx);
      const built = await this.build(drvTargets, mode, {
        store: view,
        trusted: ctx.trusted,
        options: ctx.options,
        signal: ctx.signal,
        log: (text, level) => ctx.log(text, level),
        startActivity: (type, text, extra) => ctx.startActivity(type, text, extra),
        stopActivity: (id) => ctx.stopActivity(id),
        result: (id, type, fields) => ctx.result(id, type, fields),
      });
      if (built.length !== drvTargets.length) {
        throw new Error(`the build engine returned ${built.length} results for ${drvTargets.length} targets`);
      }
      let k = 0;
      for (let i = 0; i < results.length; i++) if (results[i] === null) results[i] = built[k++]!;
    }
    return results as BuildResult[];
  }

  async ensurePath(path: string, ctx: OpContext): Promise<void> {
    if (this.store.isValidPath(path)) return;
    const [r] = await this.buildPaths([{ kind: 'opaque', path }], BuildMode.Normal, ctx);
    if (r && (r.status === BuildStatus.AlreadyValid || r.status === BuildStatus.Substituted)) return;
    throw new PathCannotBeCreated(`path '${path}' does not exist and cannot be created`, { path });
  }

  // ---- realisations ------------------------------------------------------------

  async queryRealisation(id: string, _ctx: OpContext): Promise<Realisation | null> {
    const r = this.store.queryRealisation(parseDrvOutputId(id));
    if (!r) return null;
    return {
      id: drvOutputIdString(r.id),
      outPath: r.outPath,
      signatures: [...r.signatures],
      dependentRealisations: Object.fromEntries(r.dependentRealisations),
    };
  }

  /**
   * Trusted clients only: a realisation maps a CA derivation to an output
   * path, so a forged one would hand other users the wrong output (Nix 2.8's
   * daemon checks nothing here).
   */
  async registerDrvOutput(r: Realisation, ctx: OpContext): Promise<void> {
    if (!ctx.trusted) {
      throw new RealisationNotTrusted(`cannot register realisation '${r.id}': you are not a trusted user of this daemon`, { id: r.id });
    }
    this.store.registerRealisation({
      id: parseDrvOutputId(r.id),
      outPath: r.outPath,
      signatures: [...r.signatures],
      dependentRealisations: new Map(Object.entries(r.dependentRealisations)),
    });
  }

  // ---- roots and GC ------------------------------------------------------------

  async addTempRoot(path: string, ctx: OpContext): Promise<void> {
    await this.conn(ctx).roots.add(path);
  }

  async addIndirectRoot(path: string, _ctx: OpContext): Promise<void> {
    this.store.addIndirectRoot(path);
  }

  async findRoots(_censor: boolean, _ctx: OpContext): Promise<GcRoot[]> {
    // drvbox labels runtime roots '{runtime}' already: nothing about other
    // users' processes is revealed, censored or not
    const out: GcRoot[] = [];
    for (const [target, links] of this.store.findRoots()) for (const link of links) out.push({ link, target });
    return out.sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : a.link < b.link ? -1 : a.link > b.link ? 1 : 0));
  }

  async collectGarbage(req: GcRequest, ctx: OpContext): Promise<GcResult> {
    const action = GC_ACTIONS[req.action];
    if (!action) throw new BadGcAction(`unknown garbage collector action ${req.action}`, { action: req.action });
    // the store's collector does not stop a deleteSpecific run at the limit
    // cleanly, and Nix clients send no limit there anyway (2^64-1)
    const maxFreed = action !== 'deleteSpecific' && req.maxFreed < BigInt(Number.MAX_SAFE_INTEGER) ? Number(req.maxFreed) : undefined;
    const res = await storeCollectGarbage(this.store, {
      action,
      ...(action === 'deleteSpecific' ? { paths: req.pathsToDelete } : {}),
      ...(maxFreed !== undefined ? { maxFreed } : {}),
      runtimeRoots: this.opts.runtimeRoots ?? true,
      log: (m) => ctx.log(m, Verbosity.Info),
    });
    return { paths: res.paths, bytesFreed: BigInt(res.bytesFreed) };
  }

  async optimiseStore(_ctx: OpContext): Promise<void> {
    const { optimiseStore } = await import('../store/optimise.js');
    await optimiseStore(this.store);
  }

  async verifyStore(checkContents: boolean, repair: boolean, ctx: OpContext): Promise<boolean> {
    const { verifyStore } = await import('../store/verify.js');
    const res = await verifyStore(this.store, { checkContents, repair, log: (m) => ctx.log(m) });
    for (const p of res.problems) ctx.log(p.repaired ? `${p.message} [repaired: ${p.repaired}]` : p.message, Verbosity.Error);
    return res.errors;
  }
}

// ---- per-connection temp roots -----------------------------------------------------

let connectionSeq = 0;

/** Sends one root to a running collector; false when none answers. */
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

/**
 * One connection's temp roots: `temproots/<pid>-c<n>`, NUL-terminated store
 * paths, exclusively flock'ed while the connection lives (the protocol of
 * store/temp-roots.ts, which both collectors follow: a file they can lock
 * belongs to nobody and is deleted).
 */
export class ConnectionTempRoots {
  readonly path: string;
  private fd = -1;
  private gcFd = -1;
  private opening: Promise<void> | null = null;
  private queue: Promise<void> = Promise.resolve();
  private readonly written = new Set<string>();
  private closed = false;

  constructor(private readonly layout: StoreLayout) {
    this.path = join(layout.tempRootsDir, `${process.pid}-c${++connectionSeq}`);
  }

  private async open(): Promise<void> {
    for (;;) {
      const fd = openSync(this.path, constants.O_RDWR | constants.O_CREAT, 0o600);
      await lockWait(fd, 'exclusive', this.path);
      // a collector that locked it between our open and our lock deleted it
      // and wrote a byte into it: start again with a fresh file
      if (fstatSync(fd).size === 0 && !this.closed) {
        this.fd = fd;
        this.gcFd = openSync(this.layout.gcLockPath, constants.O_RDWR | constants.O_CREAT, 0o600);
        return;
      }
      closeSync(fd);
      if (this.closed) throw new Error(`temp roots of a closed connection ('${this.path}')`);
    }
  }

  /** Protects `storePath` from garbage collection until the connection ends. */
  add(storePath: string): Promise<void> {
    if (this.written.has(storePath)) return Promise.resolve();
    const run = this.queue.then(() => this.addLocked(storePath));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async addLocked(storePath: string): Promise<void> {
    if (this.written.has(storePath)) return;
    if (this.closed) throw new Error(`cannot add temp root '${storePath}': the connection has ended`);
    this.opening ??= this.open();
    await this.opening;
    for (;;) {
      if (tryLock(this.gcFd, 'shared', this.layout.gcLockPath)) {
        try {
          writeSync(this.fd, storePath + '\0');
        } finally {
          unlock(this.gcFd, this.layout.gcLockPath);
        }
        break;
      }
      // a collection is running: it must hear of the root before we go on
      if (await sendToCollector(this.layout.gcSocketPath, storePath)) {
        writeSync(this.fd, storePath + '\0');
        break;
      }
      await sleep(20);
    }
    this.written.add(storePath);
  }

  /** Removes the file: the roots are released. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const release = () => {
      if (this.fd < 0) return;
      try {
        unlinkSync(this.path);
      } catch {
        // already removed
      }
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
      try {
        closeSync(this.gcFd);
      } catch {
        // already closed
      }
      this.fd = -1;
    };
    if (this.fd >= 0) release();
    else if (this.opening) void this.opening.then(release, () => undefined);
  }
}
