// The client side of the worker protocol: talks to a Nix or drvbox daemon over
// a unix socket, a child's stdio (`nix-daemon --stdio`, `drvbox daemon
// --stdio`) or any pair of streams.
//
// One request at a time per connection (calls queue up); log frames go to
// `onLog`. A daemon error (STDERR_ERROR) rejects the call with DaemonError
// and the connection stays usable; any other failure breaks the connection.
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { defineError } from '../errors.js';
import { DEFAULT_STORE_DIR } from '../format/store-path.js';
import { copyNar, NAR_MAGIC } from './nar-copy.js';
import {
  BuildMode,
  formatVersion,
  MIN_SUPPORTED_MINOR,
  Op,
  protocolMajor,
  protocolMinor,
  PROTOCOL_VERSION,
  Since,
  Verbosity,
  WORKER_MAGIC_1,
  WORKER_MAGIC_2,
  type OpName,
} from './protocol.js';
import { StreamReader } from './reader.js';
import type {
  BasicDerivation,
  BuildResult,
  ClientOptions,
  ContentAddressMethod,
  DerivedPath,
  GcRequest,
  GcResult,
  GcRoot,
  MissingInfo,
  PathInfo,
  Realisation,
  SubstitutableInfo,
} from './store-api.js';
import {
  encodeFrame,
  FRAME_END,
  formatDerivedPath,
  readBuildResult,
  readPathInfo,
  readStderrFrame,
  realisationFromJson,
  realisationToJson,
  WireWriter,
  writeBasicDerivation,
  writePathInfo,
  type LogField,
  type RemoteErrorInfo,
  type WireLimits,
  type WireSource,
} from './wire.js';

export class DaemonError extends defineError('DaemonError', 'E_DAEMON') {
  /** The remote error as sent. */
  get remote(): RemoteErrorInfo {
    return this.fields.remote as RemoteErrorInfo;
  }
}
export class DaemonConnectionFailed extends defineError('DaemonConnectionFailed', 'E_DAEMON_CONNECTION') {}
export class DaemonProtocolTooOld extends defineError('DaemonProtocolTooOld', 'E_DAEMON_TOO_OLD') {}

export type LogEvent =
  | { type: 'next'; text: string }
  | { type: 'startActivity'; id: bigint; level: number; activityType: number; text: string; fields: LogField[]; parent: bigint }
  | { type: 'stopActivity'; id: bigint }
  | { type: 'result'; id: bigint; resultType: number; fields: LogField[] };

export type Endpoint =
  | { socketPath: string }
  | { command: string; args?: string[]; env?: NodeJS.ProcessEnv; cwd?: string }
  | { input: Readable; output: Writable };

export interface WorkerClientOptions {
  storeDir?: string;
  /** Version we announce (default 1.34); lower it to exercise older encodings. */
  clientVersion?: number;
  limits?: Partial<WireLimits>;
  onLog?: (ev: LogEvent) => void;
  /** SetOptions sent right after the handshake (as Nix does); false: none. */
  options?: Partial<ClientOptions> | false;
}

export interface AddToStoreArgs {
  name: string;
  method: ContentAddressMethod;
  references?: string[];
  repair?: boolean;
}

type Bytes = Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

const DEFAULT_OPTIONS: ClientOptions = {
  keepFailed: false,
  keepGoing: false,
  tryFallback: false,
  verbosity: Verbosity.Error,
  maxBuildJobs: 1,
  maxSilentTime: 0,
  verboseBuild: true,
  buildCores: 0,
  useSubstitutes: false,
  overrides: {},
};

const FRAME_PIECE = 64 * 1024;

/** Opens a connection, does the handshake and (by default) SetOptions. */
export async function connectDaemon(endpoint: Endpoint, opts: WorkerClientOptions = {}): Promise<WorkerClient> {
  let input: Readable;
  let output: Writable;
  let child: ChildProcess | null = null;
  let childStderr = '';
  let closeRaw: () => void;
  let where: string;
  if ('socketPath' in endpoint) {
    where = `unix://${endpoint.socketPath}`;
    const sock = createConnection(endpoint.socketPath);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', (e) =>
        reject(new DaemonConnectionFailed(`cannot connect to daemon at '${endpoint.socketPath}': ${e.message}`, { path: endpoint.socketPath })),
      );
    });
    sock.on('error', () => {
      // surfaced through reads/writes
    });
    input = sock;
    output = sock;
    closeRaw = () => sock.destroy();
  } else if ('command' in endpoint) {
    where = `${endpoint.command} ${(endpoint.args ?? []).join(' ')}`.trim();
    const c = spawn(endpoint.command, endpoint.args ?? [], { stdio: ['pipe', 'pipe', 'pipe'], env: endpoint.env, cwd: endpoint.cwd });
    child = c;
    c.stderr!.on('data', (d: Buffer) => {
      childStderr = (childStderr + d.toString()).slice(-8192);
    });
    c.stdin!.on('error', () => {
      // surfaced through reads
    });
    await new Promise<void>((resolve, reject) => {
      c.once('spawn', resolve);
      c.once('error', (e) => reject(new DaemonConnectionFailed(`cannot start daemon '${where}': ${e.message}`, { command: where })));
    });
    input = c.stdout!;
    output = c.stdin!;
    closeRaw = () => {
      c.stdin!.end();
    };
  } else {
    where = 'stream';
    input = endpoint.input;
    output = endpoint.output;
    closeRaw = () => {
      output.end();
    };
  }
  const client = new WorkerClient(input, output, opts, closeRaw, child, where);
  try {
    await client.handshake();
    if (opts.options !== false) await client.setOptions(opts.options ?? {});
  } catch (e) {
    await client.close();
    const extra = childStderr.trim() ? ` (daemon said: ${childStderr.trim().split('\n').slice(-3).join(' / ')})` : '';
    if (e instanceof DaemonError) throw e;
    throw new DaemonConnectionFailed(`cannot open connection to '${where}': ${(e as Error).message}${extra}`, { where }, { cause: e });
  }
  return client;
}

export class WorkerClient {
  readonly storeDir: string;
  /** The daemon's announced protocol version. */
  daemonVersion = 0;
  /** The version both sides act on. */
  version = 0;
  daemonNixVersion: string | null = null;
  private readonly src: StreamReader;
  private readonly announce: number;
  private queue: Promise<unknown> = Promise.resolve();
  private broken: Error | null = null;
  private closed = false;

  constructor(
    input: Readable,
    private readonly output: Writable,
    private readonly opts: WorkerClientOptions,
    private readonly closeRaw: () => void,
    private readonly child: ChildProcess | null,
    readonly where: string,
  ) {
    this.storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
    this.announce = opts.clientVersion ?? PROTOCOL_VERSION;
    this.src = new StreamReader(input, { limits: opts.limits });
    output.on('error', (e: Error) => {
      this.broken ??= e;
    });
  }

  private get minor(): number {
    return protocolMinor(this.version);
  }

  // ------------------------------------------------------------ plumbing

  private async send(data: Buffer): Promise<void> {
    if (this.output.destroyed || this.output.writableEnded) throw new DaemonConnectionFailed(`connection to '${this.where}' is closed`, {});
    if (this.output.write(data)) return;
    await new Promise<void>((resolve, reject) => {
      const ok = () => {
        this.output.off('close', gone);
        resolve();
      };
      const gone = () => {
        this.output.off('drain', ok);
        reject(new DaemonConnectionFailed(`connection to '${this.where}' closed while sending`, {}));
      };
      this.output.once('drain', ok);
      this.output.once('close', gone);
    });
  }

  /** Runs `fn` alone on the connection; a non-daemon failure breaks it. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = async () => {
      if (this.broken) throw new DaemonConnectionFailed(`connection to '${this.where}' is broken: ${this.broken.message}`, {}, { cause: this.broken });
      if (this.closed) throw new DaemonConnectionFailed(`connection to '${this.where}' is closed`, {});
      this.src.resetBudget();
      try {
        return await fn();
      } catch (e) {
        if (!(e instanceof DaemonError)) {
          this.broken ??= e instanceof Error ? e : new Error(String(e));
          this.closeRaw();
        }
        throw e;
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * Reads stderr frames up to STDERR_LAST. `source` answers STDERR_READ
   * (tunnelled uploads of old protocols).
   */
  private async processStderr(source?: (len: number) => Promise<Buffer>): Promise<void> {
    for (;;) {
      const f = await readStderrFrame(this.src, this.minor);
      switch (f.type) {
        case 'last':
          return;
        case 'error':
          // Nix colours the values in its messages; keep the raw text in `remote`
          throw new DaemonError(f.error.message.replace(/\x1b\[[0-9;]*m/g, ''), { remote: f.error });
        case 'read': {
          if (!source) throw new DaemonConnectionFailed('daemon asked for data (STDERR_READ) where none is being sent', {});
          const data = await source(f.length);
          await this.send(new WireWriter(data.length + 16).bytes(data).take());
          break;
        }
        case 'write':
          throw new DaemonConnectionFailed('daemon sent data (STDERR_WRITE) where none was expected', {});
        default:
          try {
            this.opts.onLog?.(f);
          } catch {
            // a log callback must not break the connection
          }
      }
    }
  }

  /** A request with no streamed payload: args, stderr frames, result. */
  private call<T>(op: number, args: (w: WireWriter) => void, result: (src: WireSource) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      const w = new WireWriter();
      w.u64(op);
      args(w);
      await this.send(w.take());
      await this.processStderr();
      return result(this.src);
    });
  }

  /** Sends `data` framed while reading stderr frames concurrently (as Nix does). */
  private async framedUpload(data: Bytes): Promise<void> {
    let stop = false;
    const stderr = this.processStderr().finally(() => {
      stop = true;
    });
    stderr.catch(() => undefined);
    try {
      for await (const chunk of iterate(data)) {
        if (stop) break;
        for (let off = 0; off < chunk.length && !stop; off += FRAME_PIECE) {
          await this.send(encodeFrame(chunk.subarray(off, off + FRAME_PIECE)));
        }
      }
    } finally {
      if (!this.output.destroyed) await this.send(FRAME_END).catch(() => undefined);
    }
    await stderr;
  }

  private requireMinor(minor: number, what: OpName): void {
    if (this.minor < minor) {
      throw new DaemonProtocolTooOld(`daemon protocol ${formatVersion(this.version)} is too old for ${what} (needs 1.${minor})`, { op: what });
    }
  }

  // ------------------------------------------------------------ connection

  /** @internal the greeting; called by connectDaemon */
  async handshake(): Promise<void> {
    await this.send(new WireWriter(8).u64(WORKER_MAGIC_1).take());
    const magic = await this.src.u64('daemon magic');
    if (magic !== BigInt(WORKER_MAGIC_2)) throw new DaemonConnectionFailed(`protocol mismatch: daemon answered 0x${magic.toString(16)}`, {});
    this.daemonVersion = await this.src.int('daemon version');
    if (protocolMajor(this.daemonVersion) !== protocolMajor(PROTOCOL_VERSION)) {
      throw new DaemonConnectionFailed(`daemon protocol version ${formatVersion(this.daemonVersion)} is not supported`, {});
    }
    this.version = Math.min(this.daemonVersion, this.announce);
    if (protocolMinor(this.version) < MIN_SUPPORTED_MINOR) {
      throw new DaemonConnectionFailed(`daemon protocol ${formatVersion(this.daemonVersion)} is too old (need 1.${MIN_SUPPORTED_MINOR})`, {});
    }
    const w = new WireWriter(32).u64(this.announce);
    if (this.minor >= Since.CpuAffinity) w.u64(0);
    if (this.minor >= Since.ReserveSpace) w.u64(0);
    await this.send(w.take());
    if (this.minor >= Since.NixVersionString) this.daemonNixVersion = await this.src.string('daemon version string');
    await this.processStderr();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.catch(() => undefined);
    try {
      this.closeRaw();
    } catch {
      // already closed
    }
    this.src.detach();
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  }

  setOptions(o: Partial<ClientOptions>): Promise<void> {
    const opt = { ...DEFAULT_OPTIONS, ...o, overrides: { ...(o.overrides ?? {}) } };
    return this.call(
      Op.SetOptions,
      (w) => {
        w.bool(opt.keepFailed).bool(opt.keepGoing).bool(opt.tryFallback).u64(opt.verbosity);
        w.u64(opt.maxBuildJobs).u64(opt.maxSilentTime).u64(1);
        w.u64(opt.verboseBuild ? Verbosity.Error : Verbosity.Vomit).u64(0).u64(0);
        w.u64(opt.buildCores).bool(opt.useSubstitutes);
        const keys = Object.keys(opt.overrides).sort();
        w.u64(keys.length);
        for (const k of keys) w.string(k).string(opt.overrides[k]!);
      },
      async () => undefined,
    );
  }

  // ------------------------------------------------------------ queries

  isValidPath(path: string): Promise<boolean> {
    return this.call(Op.IsValidPath, (w) => w.string(path), (s) => s.bool('valid'));
  }

  queryValidPaths(paths: string[], substitute = false): Promise<string[]> {
    return this.call(
      Op.QueryValidPaths,
      (w) => {
        w.strings(paths);
        if (this.minor >= Since.QueryValidPathsSubstitute) w.bool(substitute);
      },
      (s) => s.strings('valid paths'),
    );
  }

  /** null when the path is not valid. */
  queryPathInfo(path: string): Promise<PathInfo | null> {
    return this.call(
      Op.QueryPathInfo,
      (w) => w.string(path),
      async (s) => ((await s.bool('valid')) ? readPathInfo(s, this.minor, path) : null),
    );
  }

  queryReferrers(path: string): Promise<string[]> {
    return this.call(Op.QueryReferrers, (w) => w.string(path), (s) => s.strings('referrers'));
  }

  queryValidDerivers(path: string): Promise<string[]> {
    return this.call(Op.QueryValidDerivers, (w) => w.string(path), (s) => s.strings('derivers'));
  }

  queryDerivationOutputMap(drvPath: string): Promise<Map<string, string | null>> {
    this.requireMinor(Since.QueryDerivationOutputMap, 'QueryDerivationOutputMap');
    return this.call(
      Op.QueryDerivationOutputMap,
      (w) => w.string(drvPath),
      async (s) => {
        const n = await s.listLength('output map');
        const m = new Map<string, string | null>();
        for (let i = 0; i < n; i++) {
          const k = await s.string('output name');
          m.set(k, (await s.string('output path')) || null);
        }
        return m;
      },
    );
  }

  queryMissing(targets: DerivedPath[]): Promise<MissingInfo> {
    return this.call(
      Op.QueryMissing,
      (w) => w.strings(targets.map(formatDerivedPath)),
      async (s) => ({
        willBuild: await s.strings('willBuild'),
        willSubstitute: await s.strings('willSubstitute'),
        unknown: await s.strings('unknown'),
        downloadSize: await s.num('downloadSize'),
        narSize: await s.num('narSize'),
      }),
    );
  }

  queryAllValidPaths(): Promise<string[]> {
    return this.call(Op.QueryAllValidPaths, () => undefined, (s) => s.strings('paths'));
  }

  queryPathFromHashPart(hashPart: string): Promise<string | null> {
    return this.call(Op.QueryPathFromHashPart, (w) => w.string(hashPart), async (s) => (await s.string('path')) || null);
  }

  querySubstitutablePaths(paths: string[]): Promise<string[]> {
    return this.call(Op.QuerySubstitutablePaths, (w) => w.strings(paths), (s) => s.strings('paths'));
  }

  querySubstitutablePathInfos(paths: Map<string, string | null>): Promise<SubstitutableInfo[]> {
    return this.call(
      Op.QuerySubstitutablePathInfos,
      (w) => {
        if (this.minor < Since.SubstitutableInfosWithCa) w.strings(paths.keys());
        else {
          w.u64(paths.size);
          for (const [p, ca] of paths) w.string(p).string(ca ?? '');
        }
      },
      async (s) => {
        const n = await s.listLength('infos');
        const out: SubstitutableInfo[] = [];
        for (let i = 0; i < n; i++) {
          out.push({
            path: await s.string('path'),
            deriver: (await s.string('deriver')) || null,
            references: await s.strings('references'),
            downloadSize: await s.num('downloadSize'),
            narSize: await s.num('narSize'),
          });
        }
        return out;
      },
    );
  }

  queryRealisation(id: string): Promise<Realisation | null> {
    return this.call(
      Op.QueryRealisation,
      (w) => w.string(id),
      async (s) => {
        const items = await s.strings('realisations');
        if (items.length === 0) return null;
        if (this.minor < Since.RealisationJson) return { id, outPath: items[0]!, signatures: [], dependentRealisations: {} };
        return realisationFromJson(items[0]!, this.storeDir);
      },
    );
  }

  // ------------------------------------------------------------ adding

  /**
   * Adds content-addressed data (a NAR for `fixed` recursive, file bytes for
   * flat, the text for `text`). Protocol >= 1.25 streams it framed; older
   * daemons get the old encoding (no references, no text method).
   */
  addToStore(args: AddToStoreArgs, contents: Bytes): Promise<PathInfo> {
    const refs = args.references ?? [];
    if (this.minor >= Since.NewAddToStore) {
      return this.exclusive(async () => {
        const w = new WireWriter();
        w.u64(Op.AddToStore).string(args.name).string(renderMethod(args.method)).strings(refs).bool(args.repair ?? false);
        await this.send(w.take());
        await this.framedUpload(contents);
        return readPathInfo(this.src, this.minor);
      });
    }
    if (args.method.kind === 'text') {
      return (async () => {
        const text = await collect(contents, this.src.limits.maxStringBytes);
        const path = await this.addTextToStore(args.name, text, refs);
        const info = await this.queryPathInfo(path);
        if (!info) throw new DaemonConnectionFailed(`daemon added '${path}' but does not know it`, {});
        return info;
      })();
    }
    const method = args.method;
    return (async () => {
      const path = await this.exclusive(async () => {
        if (refs.length > 0) throw new DaemonProtocolTooOld('daemon protocol is too old to add paths with references', {});
        const w = new WireWriter();
        const compatFixed = !(method.algo === 'sha256' && method.recursive);
        w.u64(Op.AddToStore).string(args.name).bool(compatFixed).u64(method.recursive ? 1 : 0).string(method.algo);
        await this.send(w.take());
        if (method.recursive) {
          for await (const chunk of iterate(contents)) await this.send(Buffer.from(chunk));
        } else {
          // a flat file travels as the NAR of one regular file
          const data = await collect(contents, this.src.limits.maxStringBytes);
          await this.send(narOfFile(data));
        }
        await this.processStderr();
        return this.src.string('path');
      });
      const info = await this.queryPathInfo(path);
      if (!info) throw new DaemonConnectionFailed(`daemon added '${path}' but does not know it`, {});
      return info;
    })();
  }

  /** The obsolete AddTextToStore op (still what `builtins.toFile` used before 1.25). */
  addTextToStore(name: string, text: Uint8Array | string, references: string[] = []): Promise<string> {
    return this.call(
      Op.AddTextToStore,
      (w) => w.string(name).bytes(typeof text === 'string' ? Buffer.from(text) : text).strings(references),
      (s) => s.string('path'),
    );
  }

  /** Imports a NAR with its metadata. */
  addToStoreNar(info: PathInfo, nar: Bytes, opts: { repair?: boolean; checkSigs?: boolean } = {}): Promise<void> {
    return this.exclusive(async () => {
      const w = new WireWriter();
      w.u64(Op.AddToStoreNar);
      writePathInfo(w, info, Since.ValidPathInfoUltimate, true);
      w.bool(opts.repair ?? false).bool(!(opts.checkSigs ?? true));
      await this.send(w.take());
      if (this.minor >= Since.FramedAddToStoreNar) {
        await this.framedUpload(nar);
        return;
      }
      // 1.21/1.22: the daemon pulls the NAR with STDERR_READ
      const it = iterate(nar)[Symbol.asyncIterator]();
      let pending = Buffer.alloc(0);
      await this.processStderr(async (len) => {
        while (pending.length === 0) {
          const r = await it.next();
          if (r.done) return Buffer.alloc(0);
          pending = Buffer.from(r.value);
        }
        const out = pending.subarray(0, len);
        pending = pending.subarray(out.length);
        return out;
      });
    });
  }

  /** Adds several paths in one framed stream: count, then (path info, NAR) each. */
  addMultipleToStore(items: Iterable<{ info: PathInfo; nar: Bytes }> | AsyncIterable<{ info: PathInfo; nar: Bytes }>, count: number, opts: { repair?: boolean; checkSigs?: boolean } = {}): Promise<void> {
    this.requireMinor(Since.AddMultipleToStore, 'AddMultipleToStore');
    return this.exclusive(async () => {
      await this.send(new WireWriter(32).u64(Op.AddMultipleToStore).bool(opts.repair ?? false).bool(!(opts.checkSigs ?? true)).take());
      async function* payload(): AsyncGenerator<Uint8Array> {
        yield new WireWriter(8).u64(count).take();
        let n = 0;
        for await (const item of items as AsyncIterable<{ info: PathInfo; nar: Bytes }>) {
          n++;
          const w = new WireWriter();
          writePathInfo(w, item.info, Since.ValidPathInfoUltimate, true);
          yield w.take();
          yield* iterate(item.nar);
        }
        if (n !== count) throw new Error(`addMultipleToStore: ${n} items given, ${count} announced`);
      }
      await this.framedUpload(payload());
    });
  }

  addBuildLog(drvPath: string, log: Bytes): Promise<void> {
    return this.exclusive(async () => {
      const base = drvPath.startsWith(this.storeDir + '/') ? drvPath.slice(this.storeDir.length + 1) : drvPath;
      await this.send(new WireWriter().u64(Op.AddBuildLog).string(base).take());
      await this.framedUpload(log);
      await this.src.u64('result');
    });
  }

  addSignatures(path: string, sigs: string[]): Promise<void> {
    return this.call(Op.AddSignatures, (w) => w.string(path).strings(sigs), async (s) => void (await s.u64('result')));
  }

  registerDrvOutput(r: Realisation): Promise<void> {
    return this.call(
      Op.RegisterDrvOutput,
      (w) => {
        if (this.minor < Since.RealisationJson) w.string(r.id).string(r.outPath.slice(this.storeDir.length + 1));
        else w.string(realisationToJson(r, this.storeDir));
      },
      async () => undefined,
    );
  }

  /** Streams the NAR of `path` to `onChunk` (awaited: back-pressure). */
  narFromPath(path: string, onChunk: (chunk: Buffer) => void | Promise<void>): Promise<void> {
    return this.exclusive(async () => {
      await this.send(new WireWriter().u64(Op.NarFromPath).string(path).take());
      await this.processStderr();
      for await (const chunk of copyNar(this.src)) await onChunk(chunk);
    });
  }

  // ------------------------------------------------------------ building

  buildPaths(targets: DerivedPath[], mode: number = BuildMode.Normal): Promise<void> {
    return this.call(
      Op.BuildPaths,
      (w) => w.strings(targets.map(formatDerivedPath)).u64(mode),
      async (s) => void (await s.u64('result')),
    );
  }

  buildPathsWithResults(targets: DerivedPath[], mode: number = BuildMode.Normal): Promise<BuildResult[]> {
    this.requireMinor(Since.BuildPathsWithResults, 'BuildPathsWithResults');
    return this.call(
      Op.BuildPathsWithResults,
      (w) => w.strings(targets.map(formatDerivedPath)).u64(mode),
      async (s) => {
        const n = await s.listLength('build results');
        const out: BuildResult[] = [];
        for (let i = 0; i < n; i++) out.push(await readBuildResult(s, this.storeDir));
        return out;
      },
    );
  }

  buildDerivation(drvPath: string, drv: BasicDerivation, mode: number = BuildMode.Normal): Promise<BuildResult> {
    return this.call(
      Op.BuildDerivation,
      (w) => {
        w.string(drvPath);
        writeBasicDerivation(w, drv);
        w.u64(mode);
      },
      async (s) => {
        const res: BuildResult = {
          path: { kind: 'built', drvPath, outputs: [] },
          status: await s.int('status'),
          errorMsg: await s.string('error'),
          timesBuilt: 0,
          isNonDeterministic: false,
          startTime: 0,
          stopTime: 0,
          builtOutputs: [],
        };
        if (this.minor >= Since.BuildDerivationTimes) {
          res.timesBuilt = await s.int('timesBuilt');
          res.isNonDeterministic = await s.bool('isNonDeterministic');
          res.startTime = await s.num('startTime');
          res.stopTime = await s.num('stopTime');
        }
        if (this.minor >= Since.BuildDerivationOutputs) {
          const n = await s.listLength('built outputs');
          for (let i = 0; i < n; i++) {
            await s.string('drv output id');
            res.builtOutputs.push(realisationFromJson(await s.string('realisation'), this.storeDir));
          }
        }
        return res;
      },
    );
  }

  ensurePath(path: string): Promise<void> {
    return this.call(Op.EnsurePath, (w) => w.string(path), async (s) => void (await s.u64('result')));
  }

  // ------------------------------------------------------------ GC

  addTempRoot(path: string): Promise<void> {
    return this.call(Op.AddTempRoot, (w) => w.string(path), async (s) => void (await s.u64('result')));
  }

  addIndirectRoot(path: string): Promise<void> {
    return this.call(Op.AddIndirectRoot, (w) => w.string(path), async (s) => void (await s.u64('result')));
  }

  findRoots(): Promise<GcRoot[]> {
    return this.call(
      Op.FindRoots,
      () => undefined,
      async (s) => {
        const n = await s.listLength('roots');
        const out: GcRoot[] = [];
        for (let i = 0; i < n; i++) out.push({ link: await s.string('root link'), target: await s.string('root target') });
        return out;
      },
    );
  }

  collectGarbage(req: GcRequest): Promise<GcResult> {
    return this.call(
      Op.CollectGarbage,
      (w) => w.u64(req.action).strings(req.pathsToDelete).bool(req.ignoreLiveness).u64(req.maxFreed).u64(0).u64(0).u64(0),
      async (s) => {
        const paths = await s.strings('deleted paths');
        const bytesFreed = await s.u64('bytes freed');
        await s.u64('obsolete');
        return { paths, bytesFreed };
      },
    );
  }

  optimiseStore(): Promise<void> {
    return this.call(Op.OptimiseStore, () => undefined, async (s) => void (await s.u64('result')));
  }

  verifyStore(checkContents: boolean, repair: boolean): Promise<boolean> {
    return this.call(Op.VerifyStore, (w) => w.bool(checkContents).bool(repair), (s) => s.bool('errors'));
  }

  /**
   * Sends raw bytes as a request and reads the daemon's frames up to
   * STDERR_LAST (diagnostics and tests; the result, if any, stays unread).
   */
  rawRequest(bytes: Uint8Array): Promise<void> {
    return this.exclusive(async () => {
      await this.send(Buffer.from(bytes));
      await this.processStderr();
    });
  }
}

function renderMethod(m: ContentAddressMethod): string {
  return m.kind === 'text' ? 'text:sha256' : `fixed:${m.recursive ? 'r:' : ''}${m.algo}`;
}

async function* iterate(data: Bytes): AsyncGenerator<Uint8Array> {
  if (data instanceof Uint8Array) {
    yield data;
    return;
  }
  for await (const c of data as AsyncIterable<Uint8Array>) yield c;
}

async function collect(data: Bytes, max: number): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of iterate(data)) {
    n += c.length;
    if (n > max) throw new Error(`content larger than ${max} bytes cannot be sent with this daemon's protocol`);
    parts.push(c);
  }
  return Buffer.concat(parts);
}

/** The NAR of a single non-executable regular file. */
export function narOfFile(data: Uint8Array): Buffer {
  return new WireWriter(data.length + 128)
    .string(NAR_MAGIC)
    .string('(')
    .string('type')
    .string('regular')
    .string('contents')
    .bytes(data)
    .string(')')
    .take();
}
