// The store as the CLI sees it when `--store` names a daemon (`unix://PATH`,
// `daemon`): a Nix or drvbox daemon driven through the worker protocol. It
// offers the slice of LocalStore's surface the commands use (queries,
// closures, adding a file or tree, building), asynchronous.
//
// The client cannot see the daemon's files: arguments are resolved against
// the logical store directory only (symlinks such as out-links are followed
// on this machine), and content is sent, never a host path.
import { lstatSync, readlinkSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import type { StoreLocation } from '../config/store-location.js';
import type { HashAlgo } from '../format/hash.js';
import { BadStorePath, checkStorePathName, DEFAULT_STORE_DIR, toStorePath } from '../format/store-path.js';
import { BadAddSource, InvalidPath } from '../store/errors.js';
import { dumpPath, readFileChunks } from '../store/nar-fs.js';
import type { PathInfo as StorePathInfo } from '../store/path-info.js';
import { connectDaemon, type LogEvent, type WorkerClient } from './client.js';
import { BuildMode, BuildStatus, protocolMinor, Since } from './protocol.js';
import type { BuildResult, ContentAddressMethod, DerivedPath, PathInfo } from './store-api.js';

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

  private constructor(readonly client: WorkerClient) {
    this.storeDir = client.storeDir;
  }

  /** Connects to the daemon listening on `socketPath` (handshake and SetOptions done). */
  static async connect(socketPath: string, opts: RemoteStoreOptions = {}): Promise<RemoteStore> {
    const client = await connectDaemon(
      { socketPath },
      { storeDir: opts.storeDir ?? DEFAULT_STORE_DIR, ...(opts.onLog ? { onLog: opts.onLog } : {}) },
    );
    return new RemoteStore(client);
  }

  /** The daemon's Nix version string (protocol >= 1.33), e.g. `2.8.0` or `drvbox 0.1.0`. */
  get daemonVersion(): string | null {
    return this.client.daemonNixVersion;
  }

  close(): Promise<void> {
    return this.client.close();
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
export async function openRemoteStore(host: RemoteStoreHost): Promise<RemoteStore> {
  const loc = host.location;
  if (loc.kind !== 'daemon') throw new Error(`openRemoteStore: '${loc.kind}' is not a daemon location`);
  const store = await RemoteStore.connect(loc.socket, {
    storeDir: host.flags.storeDir ?? DEFAULT_STORE_DIR,
    onLog: (ev) => {
      if (ev.type === 'next') process.stderr.write(ev.text);
      else if (ev.type === 'startActivity' && ev.text !== '' && host.flags.verbose) process.stderr.write(`${ev.text}\n`);
    },
  });
  host.onClose(() => store.close());
  return store;
}
