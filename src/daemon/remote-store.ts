// The store as the CLI sees it when `--store` names a daemon (`unix://PATH`,
// `daemon`): a Nix or drvbox daemon driven through the worker protocol. It
// offers the slice of LocalStore's surface the commands use (queries,
// closures, adding a file or tree, building), asynchronous.
//
// The client cannot see the daemon's files: arguments are resolved against
// the logical store directory only (symlinks such as out-links are followed
// on this machine), and content is sent, never a host path.
import { lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import type { StoreLocation } from '../config/store-location.js';
import { defineError } from '../errors.js';
import { parseDerivation, printDerivation } from '../format/aterm.js';
import { derivationNameFromPath, validateDerivation, type Derivation } from '../format/derivation.js';
import { parseDerivationInputs } from '../format/derivation-json.js';
import type { HashAlgo } from '../format/hash.js';
import { completeDerivation, derivationPath, derivationReferences } from '../format/hash-modulo.js';
import { NarParser } from '../format/nar-reader.js';
import { BadStorePath, checkStorePathName, DEFAULT_STORE_DIR, isDerivationPath, parseStorePathBaseName, toStorePath } from '../format/store-path.js';
import { BadAddSource, InvalidPath } from '../store/errors.js';
import { dumpPath, readFileChunks } from '../store/nar-fs.js';
import type { PathInfo as StorePathInfo } from '../store/path-info.js';
import { connectDaemon, DaemonConnectionFailed, type LogEvent, type WorkerClient } from './client.js';
import { BuildMode, BuildStatus, protocolMinor, Since } from './protocol.js';
import type { BuildResult, ContentAddressMethod, DerivedPath, PathInfo } from './store-api.js';

export class BadRemoteTarget extends defineError('BadRemoteTarget', 'E_BAD_REMOTE_TARGET') {}

/** A derivation to build: its .drv path and wanted outputs (null: all). */
export interface RemoteBuildTarget {
  arg: string;
  drvPath: string;
  outputs: string[] | null;
}

/** Largest .drv file read back from a daemon (they are small; this bounds memory). */
const MAX_DRV_BYTES = 64 * 1024 * 1024;

export interface RemoteStoreOptions {
  /** The logical store directory both sides use (default /nix/store). */
  storeDir?: string;
  /** Log lines and activities the daemon sends. */
  onLog?: (ev: LogEvent) => void;
}

export interface RemoteAddOptions {
  /** Store path name; default: the source's base name. */
  name?: string;
  /** recursive (NAR, as nix-store --add), flat (a file's bytes), text. */
  method?: 'recursive' | 'flat' | 'text';
  hashAlgo?: HashAlgo;
  references?: Iterable<string>;
  repair?: boolean;
}

function toStoreInfo(i: PathInfo): StorePathInfo {
  return {
    path: i.path,
    narHash: i.narHash,
    narSize: i.narSize,
    references: [...i.references].sort(),
    deriver: i.deriver,
    registrationTime: i.registrationTime,
    ultimate: i.ultimate,
    sigs: [...i.sigs].sort(),
    ca: i.ca,
  };
}

function sourceStat(src: string, follow: boolean) {
  try {
    return follow ? statSync(src) : lstatSync(src);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (e as Error).message;
    throw new BadAddSource(`cannot add '${src}' to the store: ${why}`, { path: src });
  }
}

export class RemoteStore {
  readonly storeDir: string;

  private constructor(
    readonly client: WorkerClient,
    private readonly sock: Socket | null = null,
  ) {
    this.storeDir = client.storeDir;
  }

  /** Connects to the daemon listening on `socketPath` (handshake and SetOptions done). */
  static async connect(socketPath: string, opts: RemoteStoreOptions = {}): Promise<RemoteStore> {
    // our own socket, so that abort() can hang up with a request in flight
    const sock = createConnection(socketPath);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', (e) => reject(new DaemonConnectionFailed(`cannot connect to daemon at '${socketPath}': ${e.message}`, { path: socketPath })));
    });
    sock.on('error', () => {
      // surfaced through the client's reads and writes
    });
    try {
      const client = await connectDaemon(
        { input: sock, output: sock },
        { storeDir: opts.storeDir ?? DEFAULT_STORE_DIR, ...(opts.onLog ? { onLog: opts.onLog } : {}) },
      );
      return new RemoteStore(client, sock);
    } catch (e) {
      sock.destroy();
      throw e;
    }
  }

  /** Hangs up at once, even with a request in flight (which then fails): the daemon stops its work. */
  abort(): void {
    this.sock?.destroy();
  }

  /** The daemon's Nix version string (protocol >= 1.33), e.g. `2.8.0` or `drvbox 0.1.0`. */
  get daemonVersion(): string | null {
    return this.client.daemonNixVersion;
  }

  async close(): Promise<void> {
    await this.client.close();
    this.sock?.destroy();
  }

  /**
   * A command-line argument to the store path it names: a store path, a path
   * inside one, or a chain of symlinks (an out-link) ending in the store.
   */
  followLinksToStorePath(arg: string, cwd: string = process.cwd()): string {
    let path = isAbsolute(arg) ? resolve(arg) : resolve(cwd, arg);
    const inStore = (p: string): string | null => {
      if (!p.startsWith(this.storeDir + '/')) return null;
      try {
        return toStorePath(this.storeDir, p);
      } catch {
        return null;
      }
    };
    for (let hops = 0; hops < 64; hops++) {
      const sp = inStore(path);
      if (sp) return sp;
      const parts = path.split('/').filter(Boolean);
      let cur = '';
      let replaced = false;
      for (let i = 0; i < parts.length; i++) {
        cur += '/' + parts[i];
        let st;
        try {
          st = lstatSync(cur);
        } catch {
          break;
        }
        if (st.isSymbolicLink()) {
          const rest = parts.slice(i + 1).join('/');
          const base = resolve(dirname(cur), readlinkSync(cur));
          path = rest ? `${base}/${rest}` : base;
          replaced = true;
          break;
        }
      }
      if (!replaced) break;
    }
    throw new BadStorePath(`path '${arg}' is not in the store '${this.storeDir}' (nor a link to it)`, { path: arg });
  }

  isValidPath(path: string): Promise<boolean> {
    return this.client.isValidPath(path);
  }

  async queryPathInfo(path: string): Promise<StorePathInfo | null> {
    const info = await this.client.queryPathInfo(path);
    return info ? toStoreInfo(info) : null;
  }

  async requirePathInfo(path: string): Promise<StorePathInfo> {
    const info = await this.queryPathInfo(path);
    if (!info) throw new InvalidPath(`path '${path}' is not valid`, { path });
    return info;
  }

  /** Every path reachable from `paths` through references (each must be valid). */
  async computeClosure(paths: Iterable<string>): Promise<Set<string>> {
    const seen = new Set<string>();
    const todo = [...paths];
    for (const p of todo) await this.requirePathInfo(p);
    while (todo.length > 0) {
      const p = todo.pop()!;
      if (seen.has(p)) continue;
      seen.add(p);
      for (const r of (await this.requirePathInfo(p)).references) if (!seen.has(r)) todo.push(r);
    }
    return seen;
  }

  /** Sum of the NAR sizes of the closure of `path`. */
  async closureSize(path: string): Promise<number> {
    let total = 0;
    for (const p of await this.computeClosure([path])) total += (await this.requirePathInfo(p)).narSize;
    return total;
  }

  /**
   * Adds a file or tree from this machine, streamed to the daemon: its NAR
   * (recursive), the file's bytes (flat) or its text (text).
   */
  async addPath(src: string, opts: RemoteAddOptions = {}): Promise<string> {
    const method = opts.method ?? 'recursive';
    const name = checkStorePathName(opts.name ?? basename(src));
    const algo = method === 'text' ? 'sha256' : (opts.hashAlgo ?? 'sha256');
    const references = [...new Set(opts.references ?? [])].sort();
    let cam: ContentAddressMethod;
    let contents: AsyncIterable<Uint8Array>;
    if (method === 'recursive') {
      sourceStat(src, false);
      cam = { kind: 'fixed', recursive: true, algo };
      contents = dumpPath(src);
    } else {
      if (!sourceStat(src, true).isFile()) {
        throw new BadAddSource(`cannot add '${src}' ${method === 'text' ? 'as text' : 'with --mode flat'}: it is not a regular file`, { path: src });
      }
      cam = method === 'text' ? { kind: 'text' } : { kind: 'fixed', recursive: false, algo };
      contents = readFileChunks(src, false);
    }
    const info = await this.client.addToStore({ name, method: cam, references, repair: opts.repair ?? false }, contents);
    return info.path;
  }

  // ---- derivations ---------------------------------------------------------------

  private readonly drvCache = new Map<string, Derivation>();

  /** The derivation at a valid .drv path, read from the daemon (NarFromPath). */
  async readDerivation(drvPath: string): Promise<Derivation> {
    const cached = this.drvCache.get(drvPath);
    if (cached) return cached;
    const parts: Uint8Array[] = [];
    let size = 0;
    const parser = new NarParser({
      onEvent: (e) => {
        if (e.type === 'directory' || e.type === 'symlink') throw new BadRemoteTarget(`'${drvPath}' is not a regular file`, { path: drvPath });
        if (e.type !== 'contents') return;
        size += e.data.length;
        if (size > MAX_DRV_BYTES) throw new BadRemoteTarget(`derivation '${drvPath}' is larger than ${MAX_DRV_BYTES} bytes`, { path: drvPath });
        parts.push(Buffer.from(e.data));
      },
    });
    await this.client.narFromPath(drvPath, (chunk) => void parser.push(chunk));
    parser.finish();
    const drv = parseDerivation(Buffer.concat(parts), derivationNameFromPath(this.storeDir, drvPath), { storeDir: this.storeDir });
    this.drvCache.set(drvPath, drv);
    return drv;
  }

  /** Writes `drv` (whose path is `drvPath`) to the daemon's store unless it is there. */
  async addDerivation(drv: Derivation, drvPath: string): Promise<string> {
    if (await this.client.isValidPath(drvPath)) return drvPath;
    const text = printDerivation(drv, { storeDir: this.storeDir });
    const info = await this.client.addToStore({ name: `${drv.name}.drv`, method: { kind: 'text' }, references: derivationReferences(drv) }, Buffer.from(text, 'utf8'));
    if (info.path !== drvPath) {
      throw new BadRemoteTarget(`the daemon stored the derivation as '${info.path}', expected '${drvPath}'`, { expected: drvPath, got: info.path });
    }
    this.drvCache.set(drvPath, drv);
    return drvPath;
  }

  /** Reads every input derivation reachable from `drvs` that the daemon has, for hashing modulo. */
  private async prefetchInputs(drvs: Iterable<Derivation>, known: Map<string, Derivation>): Promise<void> {
    const todo = [...drvs].flatMap((d) => [...d.inputDrvs.keys()]);
    while (todo.length > 0) {
      const p = todo.pop()!;
      if (known.has(p) || !(await this.client.isValidPath(p))) continue;
      const d = await this.readDerivation(p);
      known.set(p, d);
      todo.push(...d.inputDrvs.keys());
    }
  }

  /** The derivations in a .drv or .json file (as `drvbox build FILE` takes them), added to the daemon's store. */
  async addDerivationFile(file: string): Promise<string[]> {
    let text: Buffer;
    try {
      text = readFileSync(file);
    } catch (e) {
      throw new BadRemoteTarget(`cannot read '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, { path: file });
    }
    const storeDir = this.storeDir;
    if (file.endsWith('.drv')) {
      let name: string;
      try {
        name = parseStorePathBaseName(basename(file)).name.slice(0, -'.drv'.length);
      } catch {
        name = basename(file).slice(0, -'.drv'.length);
      }
      const drv = parseDerivation(text, name, { storeDir });
      validateDerivation(drv, { storeDir });
      return [await this.addDerivation(drv, derivationPath(drv, storeDir))];
    }
    const inputs = parseDerivationInputs(text.toString('utf8'), { storeDir });
    const known = new Map<string, Derivation>();
    const paths: string[] = new Array(inputs.length);
    let remaining = inputs.map((x, i) => ({ ...x, i }));
    while (remaining.length > 0) {
      const next: typeof remaining = [];
      for (const x of remaining) {
        // complete in dependency order: an input defined later in the file comes first
        if ([...x.draft.inputDrvs.keys()].some((p) => !known.has(p) && remaining.some((y) => y !== x && y.claimedPath === p))) {
          next.push(x);
          continue;
        }
        const pending = [...x.draft.inputDrvs.keys()].filter((p) => !known.has(p));
        for (const p of pending) if (await this.client.isValidPath(p)) known.set(p, await this.readDerivation(p));
        await this.prefetchInputs([...known.values()], known);
        const c = completeDerivation(x.draft, { storeDir, resolve: (p) => known.get(p) });
        if (x.claimedPath !== undefined && x.claimedPath !== c.drvPath) {
          throw new BadRemoteTarget(`derivation '${x.claimedPath}' in '${file}' is really '${c.drvPath}'`, { claimed: x.claimedPath, actual: c.drvPath });
        }
        known.set(c.drvPath, c.drv);
        paths[x.i] = await this.addDerivation(c.drv, c.drvPath);
      }
      if (next.length === remaining.length) throw new BadRemoteTarget(`the derivations in '${file}' depend on each other in a cycle`, { path: file });
      remaining = next;
    }
    return paths;
  }

  /**
   * `drvbox build` arguments to targets: `<store path>.drv[^out,dev|^*]`, or
   * a .drv / .json file (added to the daemon's store first).
   */
  async resolveBuildTargets(args: readonly string[], cwd: string = process.cwd()): Promise<RemoteBuildTarget[]> {
    const res: RemoteBuildTarget[] = [];
    for (const arg of args) {
      const at = arg.lastIndexOf('^');
      const path = at < 0 ? arg : arg.slice(0, at);
      const sel = at < 0 ? '*' : arg.slice(at + 1);
      const outputs = sel === '*' ? null : sel.split(',').filter(Boolean);
      if (outputs && outputs.length === 0) throw new BadRemoteTarget(`'${arg}': empty output selection after '^'`, { arg });
      let drvPaths: string[];
      if (path.startsWith(this.storeDir + '/')) drvPaths = [path];
      else {
        const abs = resolve(cwd, path);
        let isFile = false;
        try {
          isFile = statSync(abs).isFile();
        } catch {
          isFile = false;
        }
        if (!isFile) throw new BadRemoteTarget(`'${path}' is neither a store derivation nor a .drv or .json file`, { arg });
        drvPaths = await this.addDerivationFile(abs);
      }
      for (const drvPath of drvPaths) {
        try {
          toStorePath(this.storeDir, drvPath);
        } catch {
          throw new BadRemoteTarget(`'${drvPath}' is not a store path of '${this.storeDir}'`, { arg });
        }
        if (!isDerivationPath(drvPath)) throw new BadRemoteTarget(`'${drvPath}' is not a derivation (.drv); build the derivation that produces it`, { arg });
        if (!(await this.client.isValidPath(drvPath))) throw new InvalidPath(`path '${drvPath}' is not valid`, { path: drvPath });
        if (outputs) {
          const drv = await this.readDerivation(drvPath);
          const missing = outputs.filter((o) => !drv.outputs.has(o));
          if (missing.length > 0) {
            throw new BadRemoteTarget(`derivation '${drvPath}' does not have wanted outputs ${missing.map((o) => `'${o}'`).join(', ')}`, { drvPath, outputs: missing });
          }
        }
        res.push({ arg, drvPath, outputs });
      }
    }
    return res;
  }

  /** Output name -> path of the wanted outputs of a built target (from the daemon's output map). */
  async wantedOutputs(t: RemoteBuildTarget): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const [name, p] of await this.client.queryDerivationOutputMap(t.drvPath)) {
      if (p && (t.outputs === null || t.outputs.includes(name))) out.set(name, p);
    }
    return out;
  }

  /**
   * Builds the targets; one result per target. Daemons older than 1.34 only
   * say success or failure: their results are filled in from the output map.
   */
  async buildPaths(targets: DerivedPath[], mode: number = BuildMode.Normal): Promise<BuildResult[]> {
    if (protocolMinor(this.client.version) >= Since.BuildPathsWithResults) return this.client.buildPathsWithResults(targets, mode);
    await this.client.buildPaths(targets, mode);
    const out: BuildResult[] = [];
    for (const t of targets) {
      const builtOutputs = [];
      if (t.kind === 'built') {
        for (const [name, p] of await this.client.queryDerivationOutputMap(t.drvPath)) {
          // the realisation id (the derivation's hash modulo) is not known here
          if (p && (t.outputs.length === 0 || t.outputs.includes(name))) builtOutputs.push({ id: `${t.drvPath}!${name}`, outPath: p, signatures: [], dependentRealisations: {} });
        }
      }
      out.push({ path: t, status: BuildStatus.AlreadyValid, errorMsg: '', timesBuilt: 0, isNonDeterministic: false, startTime: 0, stopTime: 0, builtOutputs });
    }
    return out;
  }
}

/** What a CLI command needs to open a daemon location (CliContext fits). */
export interface RemoteStoreHost {
  readonly location: StoreLocation;
  readonly flags: { storeDir?: string | undefined; verbose: boolean };
  onClose(fn: () => void | Promise<void>): void;
}

/**
 * Opens the daemon at the host's location and closes it when the command
 * ends. Log lines from the daemon go to stderr.
 */
export async function openRemoteStore(host: RemoteStoreHost, onLog?: (ev: LogEvent) => void): Promise<RemoteStore> {
  const loc = host.location;
  if (loc.kind !== 'daemon') throw new Error(`openRemoteStore: '${loc.kind}' is not a daemon location`);
  const store = await RemoteStore.connect(loc.socket, {
    storeDir: host.flags.storeDir ?? DEFAULT_STORE_DIR,
    onLog:
      onLog ??
      ((ev) => {
        if (ev.type === 'next') process.stderr.write(ev.text);
        else if (ev.type === 'startActivity' && ev.text !== '' && host.flags.verbose) process.stderr.write(`${ev.text}\n`);
      }),
  });
  host.onClose(() => store.close());
  return store;
}
