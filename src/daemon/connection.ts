// One client connection of the worker-protocol server: handshake, then one op
// after another until the client hangs up or breaks the protocol.
//
// Each op first reads all its arguments (an error there leaves the stream
// position unknown: the client gets STDERR_ERROR and the connection closes,
// as in Nix), then does its work between "start work" and STDERR_LAST /
// STDERR_ERROR, then writes its result. An error during the work is reported
// and the connection goes on, unless it came from reading the client's
// stream, which is then out of sync.
import type { Readable, Writable } from 'node:stream';
import { defineError } from '../errors.js';
import { parseStorePath } from '../format/store-path.js';
import { base16Encode } from '../format/hash.js';
import { copyNar } from './nar-copy.js';
import {
  BuildMode,
  buildSucceeded,
  formatVersion,
  MIN_SUPPORTED_MINOR,
  Op,
  opName,
  protocolMajor,
  protocolMinor,
  PROTOCOL_MAJOR,
  PROTOCOL_VERSION,
  Since,
  Stderr,
  Verbosity,
  WORKER_MAGIC_1,
  WORKER_MAGIC_2,
} from './protocol.js';
import { StreamReader } from './reader.js';
import type {
  ActivityFields,
  BuildResult,
  ClientOptions,
  ContentAddressMethod,
  DaemonStore,
  DerivedPath,
  OpContext,
  PathInfo,
  Realisation,
} from './store-api.js';
import {
  FramedSource,
  formatDerivedPath,
  parseDerivedPath,
  readBasicDerivation,
  readPathInfo,
  realisationFromJson,
  realisationToJson,
  WireSource,
  WireWriter,
  writeBuildResult,
  writePathInfo,
  writeStderrFrame,
  type LogField,
  type RemoteErrorInfo,
  type StderrFrame,
  type WireLimits,
} from './wire.js';
import { isHashAlgo } from '../format/hash.js';

export class UnknownOperation extends defineError('UnknownOperation', 'E_UNKNOWN_OPERATION') {}
export class UnsupportedOperation extends defineError('UnsupportedOperation', 'E_UNSUPPORTED_OPERATION') {}
export class NotPrivileged extends defineError('NotPrivileged', 'E_NOT_PRIVILEGED') {}
export class InvalidPath extends defineError('InvalidPath', 'E_INVALID_PATH') {}
export class BuildFailed extends defineError('BuildFailed', 'E_BUILD_FAILED') {}
export class BadArgument extends defineError('BadArgument', 'E_BAD_ARGUMENT') {}
export class ConnectionClosed extends defineError('ConnectionClosed', 'E_CONNECTION_CLOSED') {}

export const DEFAULT_CLIENT_OPTIONS: Readonly<ClientOptions> = {
  keepFailed: false,
  keepGoing: false,
  tryFallback: false,
  verbosity: Verbosity.Info,
  maxBuildJobs: 1,
  maxSilentTime: 0,
  verboseBuild: true,
  buildCores: 0,
  useSubstitutes: true,
  overrides: {},
};

export interface ConnectionConfig {
  store: DaemonStore;
  trusted: boolean;
  recursive: boolean;
  limits: WireLimits;
  nixVersion: string;
  /** Log bytes allowed to wait in the output buffer before lines are dropped. */
  maxPendingLogBytes: number;
}

/** Why a connection ended: null for a clean hang-up at an op boundary. */
export type ConnectionEnd = { error: Error | null; ops: number };

let activityCounter = 0n;
const ACTIVITY_BASE = BigInt(process.pid) << 32n;

type Work<T> = { ok: true; value: T } | { ok: false };

export class Connection {
  private readonly src: StreamReader;
  private minor = 0;
  private options: ClientOptions = { ...DEFAULT_CLIENT_OPTIONS, overrides: {} };
  private readonly abort = new AbortController();
  private canSendStderr = false;
  private droppedLogLines = 0;
  private opsDone = 0;
  /** Set while a raw (unframed) result is being sent: no frame may follow. */
  private rawResultStarted = false;
  private readonly store: DaemonStore;

  constructor(
    input: Readable,
    private readonly output: Writable,
    private readonly cfg: ConnectionConfig,
  ) {
    this.src = new StreamReader(input, { limits: cfg.limits });
    this.store = cfg.store;
    const gone = () => this.abort.abort(new ConnectionClosed('the client closed the connection'));
    output.once('close', gone);
    output.once('error', gone);
    if (input !== (output as unknown)) input.once('error', gone);
  }

  /** Ends the connection from our side (server shutdown). */
  kill(reason: Error): void {
    this.abort.abort(reason);
    this.src.abort(reason);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  async run(): Promise<ConnectionEnd> {
    try {
      const ok = await this.handshake();
      if (!ok) return { error: null, ops: 0 };
      for (;;) {
        if (this.abort.signal.aborted) return { error: this.abort.signal.reason as Error, ops: this.opsDone };
        this.src.resetBudget();
        let op: number;
        try {
          const raw = await this.src.u64('op code');
          if (raw > 0xffffffffn) throw new UnknownOperation(`invalid operation ${raw}`, { op: String(raw) });
          op = Number(raw);
        } catch (e) {
          // a hang-up between ops is the normal way for a client to leave
          if (isTruncated(e) && this.src.bufferedBytes === 0) return { error: null, ops: this.opsDone };
          throw e;
        }
        const keepGoing = await this.perform(op);
        this.opsDone++;
        if (!keepGoing) return { error: this.src.poisoned ?? new Error(`connection closed after a failed op ${op}`), ops: this.opsDone };
      }
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      // best effort: tell the client, unless it is gone or a raw result was under way
      if (!this.abort.signal.aborted && this.minor > 0 && !this.rawResultStarted) {
        try {
          await this.sendFrame({ type: 'error', error: toRemoteError(err) });
        } catch {
          // the client is gone
        }
      }
      return { error: err, ops: this.opsDone };
    } finally {
      this.src.detach();
    }
  }

  // ------------------------------------------------------------ output

  private async send(data: Buffer): Promise<void> {
    if (this.output.destroyed || this.output.writableEnded) throw new ConnectionClosed('the client closed the connection');
    if (this.output.write(data)) return;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        this.output.off('drain', done);
        this.output.off('close', closed);
        resolve();
      };
      const closed = () => {
        this.output.off('drain', done);
        reject(new ConnectionClosed('the client closed the connection'));
      };
      this.output.once('drain', done);
      this.output.once('close', closed);
    });
  }

  private async sendFrame(frame: StderrFrame): Promise<void> {
    const w = new WireWriter(64);
    writeStderrFrame(w, frame, this.minor);
    await this.send(w.take());
  }

  /** Log frames are written without waiting; past the cap they are dropped, counted. */
  private pushLogFrame(frame: StderrFrame): void {
    if (!this.canSendStderr || this.output.destroyed) return;
    if (this.output.writableLength > this.cfg.maxPendingLogBytes) {
      this.droppedLogLines++;
      return;
    }
    const w = new WireWriter(64);
    writeStderrFrame(w, frame, this.minor);
    this.output.write(w.take());
  }

  private makeContext(): OpContext {
    const self = this;
    const minor = this.minor;
    return {
      trusted: this.cfg.trusted,
      options: this.options,
      signal: this.abort.signal,
      log(text: string, level: number = Verbosity.Info) {
        if (level > self.options.verbosity) return;
        self.pushLogFrame({ type: 'next', text: text.endsWith('\n') ? text : text + '\n' });
      },
      startActivity(type: number, text: string, extra: ActivityFields = {}): bigint {
        const id = ACTIVITY_BASE + ++activityCounter;
        const level = extra.level ?? Verbosity.Info;
        if (minor < Since.Activities) {
          if (text !== '' && level <= self.options.verbosity) self.pushLogFrame({ type: 'next', text: text + '...\n' });
          return id;
        }
        self.pushLogFrame({
          type: 'startActivity',
          id,
          level,
          activityType: type,
          text,
          fields: (extra.fields ?? []) as LogField[],
          parent: extra.parent ?? 0n,
        });
        return id;
      },
      stopActivity(id: bigint) {
        if (minor >= Since.Activities) self.pushLogFrame({ type: 'stopActivity', id });
      },
      result(id: bigint, type: number, fields: LogField[]) {
        if (minor >= Since.Activities) self.pushLogFrame({ type: 'result', id, resultType: type, fields });
      },
    };
  }

  /**
   * Runs `fn` as the op's work: STDERR_LAST after success, STDERR_ERROR after
   * a failure. Rethrows only when the connection is out of sync.
   */
  private async work<T>(fn: (ctx: OpContext) => Promise<T>, broken?: () => boolean): Promise<Work<T>> {
    this.canSendStderr = true;
    let result: Work<T>;
    let failure: Error | null = null;
    try {
      result = { ok: true, value: await fn(this.makeContext()) };
    } catch (e) {
      failure = e instanceof Error ? e : new Error(String(e));
      result = { ok: false };
    }
    this.canSendStderr = false;
    if (this.droppedLogLines > 0) {
      const n = this.droppedLogLines;
      this.droppedLogLines = 0;
      const w = new WireWriter(64);
      writeStderrFrame(w, { type: 'next', text: `drvbox: ${n} log lines dropped because the client did not read them\n` }, this.minor);
      await this.send(w.take());
    }
    if (failure) {
      if (this.src.poisoned || broken?.() || this.abort.signal.aborted) throw failure;
      await this.sendFrame({ type: 'error', error: toRemoteError(failure) });
      return result;
    }
    await this.sendFrame({ type: 'last' });
    return result;
  }

  // ------------------------------------------------------------ handshake

  private async handshake(): Promise<boolean> {
    const magic = await this.src.u64('client magic');
    if (magic !== BigInt(WORKER_MAGIC_1)) {
      throw new ProtocolMismatchError(`protocol mismatch: client sent 0x${magic.toString(16)} instead of the worker magic`, {
        got: magic.toString(16),
      });
    }
    await this.send(new WireWriter(16).u64(WORKER_MAGIC_2).u64(PROTOCOL_VERSION).take());
    const clientVersion = await this.src.int('client version');
    if (protocolMajor(clientVersion) !== PROTOCOL_MAJOR) {
      throw new ProtocolMismatchError(`client speaks protocol ${formatVersion(clientVersion)}, not 1.x`, { version: formatVersion(clientVersion) });
    }
    this.minor = Math.min(protocolMinor(clientVersion), protocolMinor(PROTOCOL_VERSION));
    if (this.minor >= Since.CpuAffinity && (await this.src.u64('cpu affinity flag')) !== 0n) await this.src.u64('cpu affinity');
    if (this.minor >= Since.ReserveSpace) await this.src.u64('reserve space');
    if (this.minor >= Since.NixVersionString) await this.send(new WireWriter(64).string(this.cfg.nixVersion).take());
    if (this.minor < MIN_SUPPORTED_MINOR) {
      await this.sendFrame({
        type: 'error',
        error: {
          message: `the Nix client's protocol ${formatVersion(clientVersion)} is too old (drvbox needs 1.${MIN_SUPPORTED_MINOR} or newer)`,
          level: 0,
          traces: [],
        },
      });
      return false;
    }
    await this.sendFrame({ type: 'last' });
    return true;
  }

  // ------------------------------------------------------------ arguments

  private checkPath(p: string): string {
    parseStorePath(this.store.storeDir, p);
    return p;
  }

  private checkPaths(ps: string[]): string[] {
    for (const p of ps) this.checkPath(p);
    return ps;
  }

  private checkDerivedPath(d: DerivedPath): DerivedPath {
    if (d.kind === 'opaque') this.checkPath(d.path);
    else this.checkPath(d.drvPath);
    return d;
  }

  private async readDerivedPaths(): Promise<DerivedPath[]> {
    // >= 1.30 DerivedPath strings, before: StorePathWithOutputs strings; same syntax
    const ss = await this.src.strings('derived paths');
    return ss.map(parseDerivedPath);
  }

  private async readBuildMode(): Promise<number> {
    const mode = await this.src.int('build mode');
    if (mode > BuildMode.Check) throw new BadArgument(`unknown build mode ${mode}`, { mode });
    return mode;
  }

  private requireTrusted(what: string): void {
    if (!this.cfg.trusted) throw new NotPrivileged(`you are not privileged to ${what}`, { what });
  }

  private optional<K extends keyof DaemonStore>(name: K): NonNullable<DaemonStore[K]> {
    const f = this.store[name];
    if (typeof f !== 'function') {
      throw new UnsupportedOperation(`operation '${String(name)}' is not supported by this store`, { op: String(name) });
    }
    return (f as (...a: unknown[]) => unknown).bind(this.store) as NonNullable<DaemonStore[K]>;
  }

  private async pathInfoOrThrow(path: string, ctx: OpContext): Promise<PathInfo> {
    const info = await this.store.queryPathInfo(path, ctx);
    if (!info) throw new InvalidPath(`path '${path}' is not valid`, { path });
    return info;
  }

  // ------------------------------------------------------------ ops

  /** Performs one op; false when the connection must close. */
  private async perform(op: number): Promise<boolean> {
    const out = new WireWriter();
    const store = this.store;
    const minor = this.minor;
    const flush = async () => {
      if (out.length > 0) await this.send(out.take());
    };
    const pathArg = () => this.src.string('store path');

    switch (op) {
      case Op.IsValidPath: {
        const p = await pathArg();
        const r = await this.work((ctx) => store.isValidPath(this.checkPath(p), ctx));
        if (r.ok) out.bool(r.value);
        break;
      }
      case Op.QueryValidPaths: {
        const paths = await this.src.strings('paths');
        const substitute = minor >= Since.QueryValidPathsSubstitute ? await this.src.bool('substitute flag') : false;
        const r = await this.work((ctx) => store.queryValidPaths(this.checkPaths(paths), substitute, ctx));
        if (r.ok) out.strings(r.value);
        break;
      }
      case Op.HasSubstitutes: {
        const p = await pathArg();
        const r = await this.work(async (ctx) => {
          this.checkPath(p);
          if (!store.querySubstitutablePaths) return false;
          return (await store.querySubstitutablePaths([p], ctx)).includes(p);
        });
        if (r.ok) out.bool(r.value);
        break;
      }
      case Op.QuerySubstitutablePaths: {
        const paths = await this.src.strings('paths');
        const r = await this.work(async (ctx) => {
          this.checkPaths(paths);
          return store.querySubstitutablePaths ? store.querySubstitutablePaths(paths, ctx) : [];
        });
        if (r.ok) out.strings(r.value);
        break;
      }
      case Op.QueryPathHash: {
        const p = await pathArg();
        const r = await this.work(async (ctx) => (await this.pathInfoOrThrow(this.checkPath(p), ctx)).narHash);
        if (r.ok) out.string(base16Encode(r.value.digest));
        break;
      }
      case Op.QueryReferences:
      case Op.QueryReferrers:
      case Op.QueryValidDerivers:
      case Op.QueryDerivationOutputs: {
        const p = await pathArg();
        const r = await this.work(async (ctx) => {
          this.checkPath(p);
          if (op === Op.QueryReferences) return (await this.pathInfoOrThrow(p, ctx)).references;
          if (op === Op.QueryReferrers) return store.queryReferrers(p, ctx);
          if (op === Op.QueryValidDerivers) return this.optional('queryValidDerivers')(p, ctx);
          const m = await store.queryDerivationOutputMap(p, ctx);
          return [...m.values()].filter((v): v is string => v !== null).sort();
        });
        if (r.ok) out.strings(r.value);
        break;
      }
      case Op.QueryDerivationOutputNames: {
        const p = await pathArg();
        const r = await this.work(async (ctx) => [...(await store.queryDerivationOutputMap(this.checkPath(p), ctx)).keys()].sort());
        if (r.ok) out.strings(r.value);
        break;
      }
      case Op.QueryDerivationOutputMap: {
        const p = await pathArg();
        const r = await this.work((ctx) => store.queryDerivationOutputMap(this.checkPath(p), ctx));
        if (r.ok) {
          const keys = [...r.value.keys()].sort();
          out.u64(keys.length);
          for (const k of keys) out.string(k).string(r.value.get(k) ?? '');
        }
        break;
      }
      case Op.QueryDeriver: {
        const p = await pathArg();
        const r = await this.work(async (ctx) => (await this.pathInfoOrThrow(this.checkPath(p), ctx)).deriver);
        if (r.ok) out.string(r.value ?? '');
        break;
      }
      case Op.QueryPathFromHashPart: {
        const h = await this.src.string('hash part');
        const r = await this.work(async (ctx) => (store.queryPathFromHashPart ? store.queryPathFromHashPart(h, ctx) : null));
        if (r.ok) out.string(r.value ?? '');
        break;
      }
      case Op.QueryPathInfo: {
        const p = await pathArg();
        const r = await this.work((ctx) => store.queryPathInfo(this.checkPath(p), ctx));
        if (r.ok) {
          if (r.value) {
            out.bool(true);
            writePathInfo(out, r.value, minor, false);
          } else out.bool(false);
        }
        break;
      }
      case Op.QueryAllValidPaths: {
        const r = await this.work((ctx) => store.queryAllValidPaths(ctx));
        if (r.ok) out.strings(r.value);
        break;
      }
      case Op.QuerySubstitutablePathInfo: {
        const p = await pathArg();
        const r = await this.work(async (ctx) => {
          this.checkPath(p);
          if (!store.querySubstitutablePathInfos) return [];
          return store.querySubstitutablePathInfos(new Map([[p, null]]), ctx);
        });
        if (r.ok) {
          const i = r.value.find((x) => x.path === p);
          if (!i) out.u64(0);
          else out.u64(1).string(i.deriver ?? '').strings(i.references).u64(i.downloadSize).u64(i.narSize);
        }
        break;
      }
      case Op.QuerySubstitutablePathInfos: {
        const req = new Map<string, string | null>();
        if (minor < Since.SubstitutableInfosWithCa) {
          for (const p of await this.src.strings('paths')) req.set(p, null);
        } else {
          const n = await this.src.listLength('path map');
          for (let i = 0; i < n; i++) {
            const p = await this.src.string('path');
            const ca = await this.src.string('content address');
            req.set(p, ca || null);
          }
        }
        const r = await this.work(async (ctx) => {
          this.checkPaths([...req.keys()]);
          if (!store.querySubstitutablePathInfos || req.size === 0) return [];
          return store.querySubstitutablePathInfos(req, ctx);
        });
        if (r.ok) {
          out.u64(r.value.length);
          for (const i of r.value) out.string(i.path).string(i.deriver ?? '').strings(i.references).u64(i.downloadSize).u64(i.narSize);
        }
        break;
      }
      case Op.QueryMissing: {
        const targets = await this.readDerivedPaths();
        const r = await this.work((ctx) => store.queryMissing(targets.map((t) => this.checkDerivedPath(t)), ctx));
        if (r.ok) {
          out.strings(r.value.willBuild).strings(r.value.willSubstitute).strings(r.value.unknown);
          out.u64(r.value.downloadSize).u64(r.value.narSize);
        }
        break;
      }

      case Op.AddToStore:
        if (minor >= Since.NewAddToStore) return this.addToStoreFramed();
        return this.addToStoreOld();

      case Op.AddTextToStore: {
        const name = await this.src.string('name');
        const text = await this.src.bytes('text');
        const refs = await this.src.strings('references');
        const r = await this.work(async (ctx) => {
          this.checkPaths(refs);
          const info = await store.addToStore({ name, method: { kind: 'text' }, references: refs, repair: false }, once(text), ctx);
          return info.path;
        });
        if (r.ok) out.string(r.value);
        break;
      }
      case Op.AddToStoreNar:
        return this.addToStoreNar();
      case Op.AddMultipleToStore:
        return this.addMultipleToStore();

      case Op.NarFromPath: {
        const p = await pathArg();
        let nar: AsyncIterable<Uint8Array> | null = null;
        const r = await this.work(async (ctx) => {
          nar = await store.narFromPath(this.checkPath(p), ctx);
        });
        if (!r.ok || !nar) break;
        // after STDERR_LAST the NAR follows raw; a failure now can only close the connection
        this.rawResultStarted = true;
        for await (const chunk of nar as AsyncIterable<Uint8Array>) {
          if (this.abort.signal.aborted) throw this.abort.signal.reason as Error;
          await this.send(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        }
        this.rawResultStarted = false;
        break;
      }

      case Op.BuildPaths: {
        const targets = await this.readDerivedPaths();
        const mode = await this.readBuildMode();
        const r = await this.work(async (ctx) => {
          if (mode === BuildMode.Repair && !this.cfg.trusted) {
            throw new NotPrivileged("repairing is not allowed because you are not in 'trusted-users'", {});
          }
          const results = await store.buildPaths(targets.map((t) => this.checkDerivedPath(t)), mode, ctx);
          throwIfFailed(results, ctx);
        });
        if (r.ok) out.u64(1);
        break;
      }
      case Op.BuildPathsWithResults: {
        const targets = await this.readDerivedPaths();
        const mode = await this.readBuildMode();
        const r = await this.work(async (ctx) => {
          if (mode === BuildMode.Repair && !this.cfg.trusted) {
            throw new NotPrivileged("repairing is not allowed because you are not in 'trusted-users'", {});
          }
          return store.buildPaths(targets.map((t) => this.checkDerivedPath(t)), mode, ctx);
        });
        if (r.ok) {
          out.u64(r.value.length);
          for (const res of r.value) writeBuildResult(out, res, store.storeDir);
        }
        break;
      }
      case Op.BuildDerivation: {
        const drvPath = await pathArg();
        const drv = await readBasicDerivation(this.src);
        const mode = await this.readBuildMode();
        const r = await this.work(async (ctx) => {
          this.checkPath(drvPath);
          const contentAddressed = drv.outputs.length > 0 && drv.outputs.every((o) => o.hashAlgo !== '');
          if (!contentAddressed && !this.cfg.trusted) {
            throw new NotPrivileged('you are not privileged to build input-addressed derivations', { drvPath });
          }
          return this.optional('buildDerivation')(drvPath, drv, mode, ctx);
        });
        if (r.ok) {
          const res = r.value;
          out.u64(res.status).string(res.errorMsg);
          if (minor >= Since.BuildDerivationTimes) out.u64(res.timesBuilt).bool(res.isNonDeterministic).u64(res.startTime).u64(res.stopTime);
          if (minor >= Since.BuildDerivationOutputs) {
            const outs = [...res.builtOutputs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
            out.u64(outs.length);
            for (const o of outs) out.string(o.id).string(realisationToJson(o, store.storeDir));
          }
        }
        break;
      }
      case Op.EnsurePath: {
        const p = await pathArg();
        const r = await this.work((ctx) => store.ensurePath(this.checkPath(p), ctx));
        if (r.ok) out.u64(1);
        break;
      }
      case Op.AddTempRoot: {
        const p = await pathArg();
        const r = await this.work((ctx) => store.addTempRoot(this.checkPath(p), ctx));
        if (r.ok) out.u64(1);
        break;
      }
      case Op.AddIndirectRoot: {
        const p = await this.src.string('root path');
        const r = await this.work(async (ctx) => {
          if (!p.startsWith('/')) throw new BadArgument(`indirect root '${p}' is not an absolute path`, { path: p });
          await store.addIndirectRoot(p, ctx);
        });
        if (r.ok) out.u64(1);
        break;
      }
      case Op.SyncWithGC: {
        const r = await this.work(async () => undefined);
        if (r.ok) out.u64(1);
        break;
      }
      case Op.FindRoots: {
        const r = await this.work((ctx) => store.findRoots(!this.cfg.trusted, ctx));
        if (r.ok) {
          out.u64(r.value.length);
          for (const root of r.value) out.string(root.link).string(root.target);
        }
        break;
      }
      case Op.CollectGarbage: {
        const action = await this.src.int('gc action');
        const pathsToDelete = await this.src.strings('paths to delete');
        const ignoreLiveness = await this.src.bool('ignore liveness');
        const maxFreed = await this.src.u64('max freed');
        for (let i = 0; i < 3; i++) await this.src.u64('obsolete gc field');
        const r = await this.work(async (ctx) => {
          if (ignoreLiveness) throw new NotPrivileged('you are not allowed to ignore liveness', {});
          return store.collectGarbage({ action, pathsToDelete: this.checkPaths(pathsToDelete), ignoreLiveness, maxFreed }, ctx);
        });
        if (r.ok) out.strings(r.value.paths).u64(r.value.bytesFreed).u64(0);
        break;
      }
      case Op.SetOptions: {
        const o: ClientOptions = { ...DEFAULT_CLIENT_OPTIONS, overrides: {} };
        o.keepFailed = (await this.src.u64('keepFailed')) !== 0n;
        o.keepGoing = (await this.src.u64('keepGoing')) !== 0n;
        o.tryFallback = (await this.src.u64('tryFallback')) !== 0n;
        o.verbosity = await this.src.int('verbosity');
        o.maxBuildJobs = await this.src.int('maxBuildJobs');
        o.maxSilentTime = await this.src.num('maxSilentTime');
        await this.src.u64('obsolete useBuildHook');
        o.verboseBuild = (await this.src.int('verboseBuild')) === Verbosity.Error;
        await this.src.u64('obsolete logType');
        await this.src.u64('obsolete printBuildTrace');
        o.buildCores = await this.src.int('buildCores');
        o.useSubstitutes = (await this.src.u64('useSubstitutes')) !== 0n;
        const n = await this.src.listLength('overrides');
        for (let i = 0; i < n; i++) {
          const k = await this.src.string('setting name');
          o.overrides[k] = await this.src.string('setting value');
        }
        await this.work(async () => {
          // verbosity always applies (it filters our log frames); a recursive
          // build's client may not change anything else (as in Nix)
          this.options = this.cfg.recursive ? { ...DEFAULT_CLIENT_OPTIONS, overrides: {}, verbosity: o.verbosity } : o;
        });
        break;
      }
      case Op.OptimiseStore: {
        const r = await this.work((ctx) => this.optional('optimiseStore')(ctx));
        if (r.ok) out.u64(1);
        break;
      }
      case Op.VerifyStore: {
        const checkContents = await this.src.bool('check contents');
        const repair = await this.src.bool('repair');
        const r = await this.work(async (ctx) => {
          if (repair && !this.cfg.trusted) throw new NotPrivileged('you are not privileged to repair paths', {});
          return this.optional('verifyStore')(checkContents, repair, ctx);
        });
        if (r.ok) out.bool(r.value);
        break;
      }
      case Op.AddSignatures: {
        const p = await pathArg();
        const sigs = await this.src.strings('signatures');
        const r = await this.work(async (ctx) => {
          this.checkPath(p);
          this.requireTrusted('add signatures');
          await this.optional('addSignatures')(p, sigs, ctx);
        });
        if (r.ok) out.u64(1);
        break;
      }
      case Op.RegisterDrvOutput: {
        let realisation: Realisation;
        if (minor < Since.RealisationJson) {
          const id = await this.src.string('drv output id');
          const outPath = await this.src.string('output path');
          realisation = { id, outPath: `${store.storeDir}/${outPath}`, signatures: [], dependentRealisations: {} };
        } else {
          realisation = realisationFromJson(await this.src.string('realisation'), store.storeDir);
        }
        await this.work((ctx) => this.optional('registerDrvOutput')(realisation, ctx));
        break;
      }
      case Op.QueryRealisation: {
        const id = await this.src.string('drv output id');
        const r = await this.work(async (ctx) => (store.queryRealisation ? store.queryRealisation(id, ctx) : null));
        if (r.ok) {
          const real = r.value;
          if (minor < Since.RealisationJson) out.strings(real ? [real.outPath] : []);
          else out.strings(real ? [realisationToJson(real, store.storeDir)] : []);
        }
        break;
      }
      case Op.AddBuildLog: {
        const base = await this.src.string('derivation');
        const framed = new FramedSource(this.src);
        const r = await this.work(async (ctx) => {
          try {
            this.requireTrusted('add logs');
            const drvPath = `${store.storeDir}/${base}`;
            this.checkPath(drvPath);
            await this.optional('addBuildLog')(drvPath, framed.chunks(), ctx);
          } finally {
            await framed.finish();
          }
        });
        if (r.ok) out.u64(1);
        break;
      }
      case Op.ExportPath: {
        const p = await pathArg();
        await this.src.u64('obsolete sign flag');
        void p;
        await this.work(async () => {
          throw new UnsupportedOperation("operation 'ExportPath' is obsolete and not supported; use NarFromPath", {});
        });
        break;
      }
      default: {
        const name = opName(op);
        // ImportPaths tunnels its data; others are unknown: either way the
        // arguments cannot be skipped, so the connection ends here
        throw new UnknownOperation(name ? `operation '${name}' (${op}) is not supported` : `invalid operation ${op}`, { op });
      }
    }
    await flush();
    return true;
  }

  /** AddToStore, protocol >= 1.25: CA method string, then the data framed. */
  private async addToStoreFramed(): Promise<boolean> {
    const name = await this.src.string('name');
    const camStr = await this.src.string('content address method');
    const refs = await this.src.strings('references');
    const repair = await this.src.bool('repair');
    const framed = new FramedSource(this.src);
    const r = await this.work(async (ctx) => {
      try {
        const method = parseContentAddressMethod(camStr);
        this.checkPaths(refs);
        if (repair && !this.cfg.trusted) throw new NotPrivileged('you are not privileged to repair paths', {});
        return await this.store.addToStore({ name, method, references: refs, repair }, framed.chunks(), ctx);
      } finally {
        await framed.finish();
      }
    });
    if (r.ok) {
      const w = new WireWriter();
      writePathInfo(w, r.value, this.minor, true);
      await this.send(w.take());
    }
    return true;
  }

  /** AddToStore before 1.25: the data is a NAR with no length; follow its grammar. */
  private async addToStoreOld(): Promise<boolean> {
    const name = await this.src.string('name');
    const fixed = await this.src.bool('fixed flag');
    const recursiveRaw = await this.src.num('ingestion method', 255);
    let algo = await this.src.string('hash algorithm');
    if (recursiveRaw > 1) throw new BadArgument(`unsupported file ingestion method ${recursiveRaw}`, { method: recursiveRaw });
    let recursive = recursiveRaw === 1;
    if (!fixed) {
      algo = 'sha256';
      recursive = true;
    }
    const nar = new DrainableStream(copyNar(this.src, { onlyContents: !recursive }));
    const r = await this.work(
      async (ctx) => {
        try {
          if (!isHashAlgo(algo)) throw new BadArgument(`unknown hash algorithm '${algo}'`, { algo });
          const method: ContentAddressMethod = { kind: 'fixed', recursive, algo };
          return await this.store.addToStore({ name, method, references: [], repair: false }, nar, ctx);
        } finally {
          // consume the rest of the NAR so the next op starts in sync
          await nar.drain();
        }
      },
      () => nar.failed,
    );
    if (r.ok) await this.send(new WireWriter().string(r.value.path).take());
    return true;
  }

  private async addToStoreNar(): Promise<boolean> {
    const info = await readPathInfo(this.src, Since.ValidPathInfoUltimate);
    const repair = await this.src.bool('repair');
    let dontCheckSigs = await this.src.bool('dontCheckSigs');
    if (!this.cfg.trusted) {
      dontCheckSigs = false;
      info.ultimate = false;
    }
    const opts = { repair, checkSigs: !dontCheckSigs };
    if (this.minor >= Since.FramedAddToStoreNar) {
      const framed = new FramedSource(this.src);
      await this.work(async (ctx) => {
        try {
          this.checkNarInfo(info);
          await this.store.addNarToStore(info, framed.chunks(), opts, ctx);
        } finally {
          await framed.finish();
        }
      });
      return true;
    }
    // 1.21/1.22: the NAR is pulled with STDERR_READ requests
    const nar = new DrainableStream(copyNar(new TunnelSource(this)));
    await this.work(
      async (ctx) => {
        try {
          this.checkNarInfo(info);
          await this.store.addNarToStore(info, nar, opts, ctx);
        } finally {
          await nar.drain();
        }
      },
      () => nar.failed,
    );
    return true;
  }

  private async addMultipleToStore(): Promise<boolean> {
    const repair = await this.src.bool('repair');
    let dontCheckSigs = await this.src.bool('dontCheckSigs');
    if (!this.cfg.trusted) dontCheckSigs = false;
    const framed = new FramedSource(this.src);
    await this.work(async (ctx) => {
      try {
        const count = await framed.num('path count');
        for (let i = 0; i < count; i++) {
          const info = await readPathInfo(framed, Since.ValidPathInfoUltimate);
          info.ultimate = false;
          this.checkNarInfo(info);
          const nar = new DrainableStream(copyNar(framed));
          try {
            await this.store.addNarToStore(info, nar, { repair, checkSigs: !dontCheckSigs }, ctx);
          } finally {
            // a store that stopped early leaves the rest of this NAR unread
            await nar.drain();
          }
        }
      } finally {
        await framed.finish();
      }
    });
    return true;
  }

  private checkNarInfo(info: PathInfo): void {
    this.checkPath(info.path);
    this.checkPaths(info.references);
    if (info.deriver) this.checkPath(info.deriver);
  }

  /** Asks the client for `len` bytes of the tunnelled source (protocols < 1.23). */
  async tunnelRead(len: number): Promise<Buffer> {
    await this.send(new WireWriter(16).u64(Stderr.Read).u64(len).take());
    const b = await this.src.bytes('tunnelled data', len);
    if (b.length === 0) throw new ConnectionClosed('unexpected end of tunnelled data', {});
    return b;
  }
}

class ProtocolMismatchError extends defineError('ProtocolMismatch', 'E_PROTOCOL_MISMATCH') {}

/** A WireSource whose bytes are pulled from the client with STDERR_READ. */
class TunnelSource extends WireSource {
  private pending: Buffer = Buffer.alloc(0);
  constructor(private readonly conn: Connection) {
    super();
  }
  protected async readSomeRaw(max: number): Promise<Buffer> {
    if (this.pending.length === 0) this.pending = await this.conn.tunnelRead(Math.max(max, 8));
    const n = Math.min(max, this.pending.length);
    const out = this.pending.subarray(0, n);
    this.pending = this.pending.subarray(n);
    return out;
  }
  unread(b: Buffer): void {
    this.pending = this.pending.length === 0 ? b : Buffer.concat([b, this.pending]);
  }
  protected async readExactRaw(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const b = await this.readSomeRaw(n - got);
      parts.push(b);
      got += b.length;
    }
    return Buffer.concat(parts, n);
  }
}

/**
 * A stream handed to the store that the store cannot close: whatever it leaves
 * unread is read (and dropped) by `drain`, so the protocol stays in sync.
 * `failed` tells whether the underlying read broke (then it is out of sync).
 */
class DrainableStream implements AsyncIterable<Uint8Array> {
  failed = false;
  private finished = false;

  constructor(private readonly gen: AsyncGenerator<Buffer>) {}

  private async next(): Promise<IteratorResult<Uint8Array>> {
    if (this.finished) return { done: true, value: undefined };
    try {
      const r = await this.gen.next();
      if (r.done) this.finished = true;
      return r;
    } catch (e) {
      this.failed = true;
      this.finished = true;
      throw e;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => this.next(),
      return: async () => ({ done: true, value: undefined }),
    };
  }

  /** Reads the rest; rethrows a read failure (the caller's op then fails). */
  async drain(): Promise<void> {
    while (!(await this.next()).done) {
      // discard
    }
  }
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

function isTruncated(e: unknown): boolean {
  return e instanceof Error && (e as { code?: string }).code === 'E_WIRE_TRUNCATED';
}

export function toRemoteError(e: Error): RemoteErrorInfo {
  return { message: e.message, level: Verbosity.Error, status: 1, traces: [] };
}

/** `text:sha256`, `fixed:r:sha256`, `fixed:sha1`, … */
export function parseContentAddressMethod(s: string): ContentAddressMethod {
  if (s === 'text:sha256') return { kind: 'text' };
  if (s.startsWith('text:')) throw new BadArgument(`text content address must use sha256, not '${s.slice(5)}'`, { value: s });
  if (s.startsWith('fixed:')) {
    let rest = s.slice(6);
    let recursive = false;
    if (rest.startsWith('r:')) {
      recursive = true;
      rest = rest.slice(2);
    }
    if (isHashAlgo(rest)) return { kind: 'fixed', recursive, algo: rest };
  }
  throw new BadArgument(`content address method '${s}' is not recognised (expected 'text:sha256' or 'fixed:[r:]<algo>')`, { value: s });
}

export function renderContentAddressMethod(m: ContentAddressMethod): string {
  return m.kind === 'text' ? 'text:sha256' : `fixed:${m.recursive ? 'r:' : ''}${m.algo}`;
}

function describeTarget(p: DerivedPath): string {
  return p.kind === 'opaque' ? p.path : p.drvPath;
}

/** BuildPaths answers only success or one error, as Nix's buildPaths does. */
function throwIfFailed(results: BuildResult[], ctx: OpContext): void {
  const failed = results.filter((r) => !buildSucceeded(r.status));
  if (failed.length === 0) return;
  if (failed.length === 1) {
    const f = failed[0]!;
    throw new BuildFailed(f.errorMsg || `build of '${describeTarget(f.path)}' failed`, { path: formatDerivedPath(f.path), status: f.status });
  }
  for (const f of failed) if (f.errorMsg) ctx.log(f.errorMsg, Verbosity.Error);
  throw new BuildFailed(`build of ${failed.map((f) => `'${describeTarget(f.path)}'`).join(', ')} failed`, {
    paths: failed.map((f) => formatDerivedPath(f.path)),
  });
}

