// What the worker-protocol server needs from a store. The real LocalStore and
// the RestrictedStore of recursive builds implement this; tests use a fake.
//
// Conventions: store paths are full printed paths (`/nix/store/<hash>-<name>`)
// in `storeDir`; path lists are returned sorted; "not valid" is `null`/`false`,
// never an exception; failures throw errors whose `message` is what the Nix
// client prints after "error: ". Every call gets an OpContext last: it carries
// the client's identity and options, a log channel to the client, and an
// AbortSignal that fires when the client disconnects (long operations must
// watch it so the connection handler is freed).
import type { Hash } from '../format/hash.js';

export interface PathInfo {
  path: string;
  deriver: string | null;
  narHash: Hash;
  references: string[];
  /** Seconds since the epoch. */
  registrationTime: number;
  narSize: number;
  ultimate: boolean;
  sigs: string[];
  /** Rendered content address (`text:sha256:…`, `fixed:r:sha256:…`), or null. */
  ca: string | null;
}

/** A store path, or outputs of a derivation (`outputs` empty = all, printed `*`). */
export type DerivedPath = { kind: 'opaque'; path: string } | { kind: 'built'; drvPath: string; outputs: string[] };

/** A built output: `id` is `<drv hash with algo>!<output>`, e.g. `sha256:ab…!out`. */
export interface Realisation {
  id: string;
  outPath: string;
  signatures: string[];
  /** DrvOutput id -> store path */
  dependentRealisations: Record<string, string>;
}

export interface BuildResult {
  path: DerivedPath;
  /** One of protocol.ts BuildStatus. */
  status: number;
  errorMsg: string;
  timesBuilt: number;
  isNonDeterministic: boolean;
  startTime: number;
  stopTime: number;
  builtOutputs: Realisation[];
}

/** How content given to addToStore is hashed and what it is. */
export type ContentAddressMethod =
  /** contents = the text itself; sha256 only */
  | { kind: 'text' }
  /** recursive: contents = a NAR; flat: contents = the file's bytes */
  | { kind: 'fixed'; recursive: boolean; algo: Hash['algo'] };

export interface AddToStoreRequest {
  name: string;
  method: ContentAddressMethod;
  references: string[];
  repair: boolean;
}

export interface AddNarOptions {
  repair: boolean;
  /** false only for trusted clients that asked not to check signatures */
  checkSigs: boolean;
}

export interface MissingInfo {
  willBuild: string[];
  willSubstitute: string[];
  unknown: string[];
  downloadSize: number;
  narSize: number;
}

export interface GcRequest {
  /** protocol.ts GcAction */
  action: number;
  pathsToDelete: string[];
  ignoreLiveness: boolean;
  maxFreed: bigint;
}

export interface GcResult {
  paths: string[];
  bytesFreed: bigint;
}

export interface GcRoot {
  /** where the root lives (a symlink, `{temp:…}`, `{memory:…}`, …) */
  link: string;
  target: string;
}

export interface SubstitutableInfo {
  path: string;
  deriver: string | null;
  references: string[];
  downloadSize: number;
  narSize: number;
}

/** A derivation as sent by BuildDerivation (no inputDrvs). Raw protocol strings. */
export interface BasicDerivation {
  outputs: { name: string; path: string; hashAlgo: string; hash: string }[];
  inputSrcs: string[];
  platform: string;
  builder: string;
  args: string[];
  env: [string, string][];
}

/** The options a client sends with SetOptions. */
export interface ClientOptions {
  keepFailed: boolean;
  keepGoing: boolean;
  tryFallback: boolean;
  verbosity: number;
  maxBuildJobs: number;
  maxSilentTime: number;
  verboseBuild: boolean;
  buildCores: number;
  useSubstitutes: boolean;
  /** name -> value of every other setting the client passed */
  overrides: Record<string, string>;
}

export interface ActivityFields {
  /** numbers are sent as integers, strings as strings */
  fields?: (bigint | number | string)[];
  parent?: bigint;
  level?: number;
}

export interface OpContext {
  /** Whether this client is trusted (trusted-users, or the stdio daemon). */
  readonly trusted: boolean;
  /** The client's SetOptions (defaults until it sends them). */
  readonly options: ClientOptions;
  /** Fires when the client disconnects or the server shuts down. */
  readonly signal: AbortSignal;
  /** A log line to the client (shown when `level` <= the client's verbosity). */
  log(text: string, level?: number): void;
  /** Starts an activity (for clients >= 1.20); returns its id. */
  startActivity(type: number, text: string, extra?: ActivityFields): bigint;
  stopActivity(id: bigint): void;
  result(id: bigint, type: number, fields: (bigint | number | string)[]): void;
}

/**
 * The operations a builder needs. Optional members answer "not supported by
 * this store" when absent.
 */
export interface DaemonStore {
  readonly storeDir: string;

  isValidPath(path: string, ctx: OpContext): Promise<boolean>;
  /** The valid subset of `paths` (substituting first when `substitute`). */
  queryValidPaths(paths: string[], substitute: boolean, ctx: OpContext): Promise<string[]>;
  /** null when the path is not valid. */
  queryPathInfo(path: string, ctx: OpContext): Promise<PathInfo | null>;
  queryReferrers(path: string, ctx: OpContext): Promise<string[]>;
  /** output name -> path (null when not known yet, e.g. floating CA). */
  queryDerivationOutputMap(drvPath: string, ctx: OpContext): Promise<Map<string, string | null>>;
  queryMissing(targets: DerivedPath[], ctx: OpContext): Promise<MissingInfo>;
  queryAllValidPaths(ctx: OpContext): Promise<string[]>;
  queryPathFromHashPart?(hashPart: string, ctx: OpContext): Promise<string | null>;
  querySubstitutablePaths?(paths: string[], ctx: OpContext): Promise<string[]>;
  querySubstitutablePathInfos?(paths: Map<string, string | null>, ctx: OpContext): Promise<SubstitutableInfo[]>;
  queryValidDerivers?(path: string, ctx: OpContext): Promise<string[]>;

  /**
   * Adds content-addressed data: a NAR (fixed, recursive), the file bytes
   * (fixed, flat) or the text (text). `contents` is streamed from the client;
   * it must be consumed to its end (or the call must throw).
   */
  addToStore(req: AddToStoreRequest, contents: AsyncIterable<Uint8Array>, ctx: OpContext): Promise<PathInfo>;
  /** Imports a NAR with known metadata (`nix copy`, AddToStoreNar, AddMultipleToStore). */
  addNarToStore(info: PathInfo, nar: AsyncIterable<Uint8Array>, opts: AddNarOptions, ctx: OpContext): Promise<void>;
  /**
   * The NAR of a valid path. Reject (before returning the iterable) when the
   * path is invalid or not allowed: the client then gets a clean error.
   */
  narFromPath(path: string, ctx: OpContext): Promise<AsyncIterable<Uint8Array>>;

  /** Builds or substitutes; one result per target, in order. */
  buildPaths(targets: DerivedPath[], mode: number, ctx: OpContext): Promise<BuildResult[]>;
  buildDerivation?(drvPath: string, drv: BasicDerivation, mode: number, ctx: OpContext): Promise<BuildResult>;
  ensurePath(path: string, ctx: OpContext): Promise<void>;

  addTempRoot(path: string, ctx: OpContext): Promise<void>;
  addIndirectRoot(path: string, ctx: OpContext): Promise<void>;
  findRoots(censor: boolean, ctx: OpContext): Promise<GcRoot[]>;
  collectGarbage(req: GcRequest, ctx: OpContext): Promise<GcResult>;

  addSignatures?(path: string, sigs: string[], ctx: OpContext): Promise<void>;
  queryRealisation?(id: string, ctx: OpContext): Promise<Realisation | null>;
  registerDrvOutput?(realisation: Realisation, ctx: OpContext): Promise<void>;
  addBuildLog?(drvPath: string, log: AsyncIterable<Uint8Array>, ctx: OpContext): Promise<void>;
  optimiseStore?(ctx: OpContext): Promise<void>;
  verifyStore?(checkContents: boolean, repair: boolean, ctx: OpContext): Promise<boolean>;
}
