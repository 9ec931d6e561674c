// One derivation's build (Nix's DerivationGoal + LocalDerivationGoal), in
// this order:
//   build slot -> lock outputs (the .drv when an output path is unknown) ->
//   recheck validity (another process may have built them) -> platform and
//   features -> backend -> planOutputs -> clear stale scratch paths -> temp
//   roots -> build dir -> desugar -> write its files -> backend.plan/start
//   (or a builtin, in-process) -> stream the log, enforce timeouts -> wait
//   -> registerOutputs -> teardown, each step in its own try/catch (kill
//   processes, backend cleanup, build dir, leftover scratch outputs, locks,
//   slot).
//
// Hooks for the sandboxes and recursive builds: `onRunning` hands out a
// RunningGoal whose addPath() calls backend.addPath and records the path in
// the `addedPaths` set that registerOutputs scans references against.
import { chmodSync, chownSync, existsSync, lchownSync, lstatSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { defaultSandboxPaths, killBuildUserProcesses } from '../../backends/backend.js';
import type {
  Backend,
  BackendChoice,
  BackendForInput,
  BuildRequest,
  HeldBuild,
  ResourceUsage,
  RunningBuild,
  SandboxPathMapping,
  SandboxSpec,
} from '../../backends/backend.js';
import { compareUtf8, derivationType, isBuiltin, type Derivation } from '../format/derivation.js';
import type { Hash } from '../format/hash.js';
import { staticOutputHashes } from '../format/hash-modulo.js';
import { isStorePath } from '../format/store-path.js';
import type { LocalStore } from '../store/local-store.js';
import type { PathLocks } from '../store/path-locks.js';
import { deletePath } from '../store/fs-util.js';
import { makeBuildDirAsync, removeBuildDirAsync } from './build-dir.js';
import { wantsBuildUsers, type BuildUserLock } from './build-users.js';
import type { Desugared, DesugarInput } from './desugar.js';
import type { PathInfoLike } from './export-references-graph.js';
import { DrvAttrs } from './drv-attrs.js';
import {
  BuilderFailed,
  BuildInterrupted,
  BuildTimedOut,
  DependencyFailed,
  HomeDirExists,
  MissingInputPath,
  PlatformMismatch,
} from './errors-run.js';
import { BuildLog, drvLogPath } from './logs.js';
import type { RunSettings } from './run-settings.js';
export { runSettingsFrom, type RunSettings } from './run-settings.js';
import type { BuildMode, OutputPlan, PlanOutputsInput } from './output-plan.js';
import type { PreBuildHookOptions } from './pre-build-hook.js';
import type { RegisteredOutput, RegisterInput } from './register.js';
import { placedInputPaths, type PlacedOutput, type PlacedOutputsFeed } from './placed.js';

const osSignals = osConstants.signals as Record<string, number>;

/** Where an unsandboxed build's $HOME points; it must not exist (Nix's purity check). */
export const HOMELESS_SHELTER = '/homeless-shelter';

/** What the goal needs from engineer G's modules; injectable so tests can stub them. */
export interface EngineParts {
  planOutputs(p: PlanOutputsInput): OutputPlan;
  scratchPathsToClear(plan: OutputPlan, isValid: (p: string) => boolean): string[];
  rewriteStrings(s: string, rewrites: ReadonlyMap<string, string>): string;
  desugar(i: DesugarInput): Desugared;
  /** exportReferencesGraph's closure data with Nix's rules (roots must be inputs). */
  closureInfosFromStore(store: LocalStore, inputPaths: ReadonlySet<string>): (roots: string[]) => PathInfoLike[];
  registerOutputs(i: RegisterInput): Promise<Map<string, RegisteredOutput>>;
  runPreBuildHook(o: PreBuildHookOptions): Promise<SandboxPathMapping[]>;
}

let partsCache: Promise<EngineParts> | null = null;

/** The real planOutputs/desugar/registerOutputs, loaded on the first build. */
export function defaultParts(): Promise<EngineParts> {
  partsCache ??= Promise.all([
    import('./output-plan.js'),
    import('./desugar.js'),
    import('./export-references-graph.js'),
    import('./register.js'),
    import('./pre-build-hook.js'),
  ]).then(([plan, des, erg, reg, hook]) => ({
    planOutputs: plan.planOutputs,
    scratchPathsToClear: plan.scratchPathsToClear,
    rewriteStrings: plan.rewriteStrings,
    desugar: des.desugar,
    closureInfosFromStore: erg.closureInfosFromStore,
    registerOutputs: reg.registerOutputs,
    runPreBuildHook: hook.runPreBuildHook,
  }));
  return partsCache;
}

/** Build slots (max-jobs). */
export interface Slots {
  acquire(signal?: AbortSignal): Promise<void>;
  release(): void;
}

/** Progress and log events of one goal. */
export interface GoalReporter {
  /** The builder (or builtin) is about to run. */
  started(drvPath: string, info: { name: string; logPath: string | null; log: BuildLog }): void;
  /** Raw builder output, after it reached the log file. */
  chunk(drvPath: string, chunk: Uint8Array): void;
  /** A warning or note for the user (one line, already prefixed). */
  message(text: string): void;
}

/** A build in progress, for the sandbox integrations and the recursive-build daemon. */
export interface RunningGoal {
  drvPath: string;
  backend: Backend;
  spec: SandboxSpec;
  running: RunningBuild;
  /** Paths added while the build runs: visible to the builder, scanned as possible references. */
  addedPaths: Set<string>;
  addPath(storePath: string): Promise<void>;
}

/**
 * Recursive builds (Nix's recursive-nix): for a derivation whose
 * requiredSystemFeatures include 'recursive-nix', start() runs before the
 * backend plans, with the build dir; it returns the socket (host path, given
 * to the backend as daemonSocketHost), the variables to add to the builder's
 * environment (NIX_REMOTE=unix://<buildDirSandbox>/...) and stop(), called
 * once: as soon as the builder exited (before registration scans the
 * outputs), or at teardown when the build ended earlier. Paths the daemon
 * builds or adds go through `addPath`: made visible to the running builder
 * and scanned as possible references by registerOutputs.
 */
export interface RecursiveBuildHook {
  /**
   * The derivation name to use in the build dir's name under `parent`, so
   * that the daemon socket inside fits the unix-socket limit.
   */
  buildDirName?(parent: string, drvName: string): string;
  start(ctx: {
    drvPath: string;
    drv: Derivation;
    buildDirHost: string;
    buildDirSandbox: string;
    inputClosure: ReadonlySet<string>;
    addPath(storePath: string): Promise<void>;
  }): Promise<RecursiveSessionHandle>;
}

/** A recursive build's daemon, as the goal drives it. */
export interface RecursiveSessionHandle {
  socketHost: string;
  env: Record<string, string>;
  /** Ends every connection and removes the socket; idempotent. */
  stop(): Promise<void>;
  /** Gives the socket to the build user the builder runs as (build-users-group). */
  chownToBuilder?(uid: number, gid: number): void;
}

/** Nix's BuildResult statuses that decide nix-build's exit code. */
export type FailureKind =
  | 'permanent' // builder failed (0x04)
  | 'transient' // a fixed-output builder failed, or the disk is full: no bit, exit 1
  | 'timedOut' // 0x01 | 0x04
  | 'hashMismatch' // 0x02 | 0x04
  | 'notDeterministic' // 0x08
  | 'outputRejected' // registration refused the outputs: exit 1
  | 'inputRejected' // refused before the builder ran, as a build error (0x04)
  | 'misc' // a plain error before the build: exit 1
  | 'dependency' // an input failed
  | 'interrupted';

export interface GoalResult {
  drvPath: string;
  status: 'built' | 'valid' | 'failed';
  failure?: FailureKind;
  error?: Error;
  /** Output name -> path, for every output with a known valid path afterwards. */
  outputs: Map<string, string>;
  startTime: number;
  stopTime: number;
  logPath: string | null;
  logTail: string[];
  usage: ResourceUsage | null;
  /** Where the build dir was kept (--keep-failed). */
  keptBuildDir?: string;
  backend?: string;
}

export interface GoalInput {
  store: LocalStore;
  drvPath: string;
  drv: Derivation;
  /** null: all outputs. */
  wantedOutputs: ReadonlySet<string> | null;
  mode: BuildMode;
  settings: RunSettings;
  slots: Slots;
  report: GoalReporter;
  signal: AbortSignal;
  parts: EngineParts;
  chooseBackend(i: BackendForInput): Promise<BackendChoice>;
  /** Hashes to record CA realisations under; default: the derivation's static output hashes. */
  drvHashes?: ReadonlyMap<string, Hash>;
  onRunning?(g: RunningGoal): void;
  /** Recursive builds: a daemon for derivations that require 'recursive-nix' (see RecursiveBuildHook). */
  recursive?: RecursiveBuildHook;
  /** The caller's environment (impureEnvVars of fixed-output derivations); default process.env. */
  callerEnv?: Record<string, string>;
  /** The purity check's path (tests); default /homeless-shelter. */
  homelessShelter?: string;
  /** Started before its inputs are all built (see GoalPrestart). */
  prestart?: GoalPrestart;
  /** The outputs built are in their final place and about to be registered (RegisterInput.onPlaced). */
  onOutputsPlaced?(outputs: readonly PlacedOutput[]): void;
}

/**
 * A goal started while some of its inputs are still being built, so that
 * what does not depend on them (locks, log, build dir, output plan, and
 * with a backend that can hold one, the whole sandbox) is ready when they
 * are. It takes no build slot until `inputsReady` resolves; a rejection
 * (a dependency failed, the run was cancelled) ends it without building.
 */
export interface GoalPrestart {
  inputsReady: Promise<void>;
  /**
   * Outputs of its input derivations as they are placed, before they are
   * valid: a held sandbox gets the paths it will need at once, and is
   * released only after `inputsReady` (with the whole input closure).
   */
  placed?: PlacedOutputsFeed;
}

const SIGNAL_TEXT: Record<string, string> = {
  SIGHUP: 'Hangup',
  SIGINT: 'Interrupt',
  SIGQUIT: 'Quit',
  SIGILL: 'Illegal instruction',
  SIGTRAP: 'Trace/breakpoint trap',
  SIGABRT: 'Aborted',
  SIGBUS: 'Bus error',
  SIGFPE: 'Floating point exception',
  SIGKILL: 'Killed',
  SIGUSR1: 'User defined signal 1',
  SIGSEGV: 'Segmentation fault',
  SIGUSR2: 'User defined signal 2',
  SIGPIPE: 'Broken pipe',
  SIGALRM: 'Alarm clock',
  SIGTERM: 'Terminated',
  SIGXCPU: 'CPU time limit exceeded',
  SIGXFSZ: 'File size limit exceeded',
};

/** Nix's statusToString for a builder that did not exit 0. */
export function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) {
    const num = osSignals[signal] ?? 0;
    return `failed due to signal ${num} (${SIGNAL_TEXT[signal] ?? signal})`;
  }
  return `failed with exit code ${code ?? -1}`;
}


/** Nix's "a 'x' with features {...} is required to build '...', but I am a 'y' with features {...}". */
export function checkPlatform(drvPath: string, drv: Derivation, s: RunSettings): void {
  const attrs = new DrvAttrs(drv);
  const required = attrs.requiredSystemFeatures();
  const platformOk = drv.platform === s.system || s.extraPlatforms.includes(drv.platform) || isBuiltin(drv);
  const have = new Set(s.systemFeatures);
  if (platformOk && required.every((f) => have.has(f))) return;
  throw new PlatformMismatch(
    `a '${drv.platform}' with features {${required.join(', ')}} is required to build '${drvPath}', ` +
      `but I am a '${s.system}' with features {${[...have].sort().join(', ')}}`,
    { drvPath, platform: drv.platform, requiredFeatures: required, system: s.system, systemFeatures: [...have].sort() },
  );
}

/** `sandbox-paths` entries: TARGET=SOURCE or PATH, optional with a trailing `?`. */
export function parseSandboxPathSetting(entries: readonly string[]): SandboxPathMapping[] {
  const res: SandboxPathMapping[] = [];
  for (let e of entries) {
    if (e === '') continue;
    const optional = e.endsWith('?');
    if (optional) e = e.slice(0, -1);
    const eq = e.indexOf('=');
    res.push(eq < 0 ? { target: e, source: e, optional } : { target: e.slice(0, eq), source: e.slice(eq + 1), optional });
  }
  return res;
}

/** The plain-data request a backend plans from (also used by `sandbox explain`). */
export function makeBuildRequest(p: {
  store: { storeDir: string; realStoreDir: string };
  drvPath: string;
  drv: Derivation;
  desugared: Desugared;
  plan: OutputPlan;
  buildDirHost: string;
  buildDirSandbox: string;
  inputPaths: Iterable<string>;
  settings: RunSettings;
  extraSandboxPaths?: SandboxPathMapping[];
  globalTmpDir?: string;
}): BuildRequest {
  const attrs = new DrvAttrs(p.drv);
  const type = derivationType(p.drv);
  const scratchOutputs: Record<string, string> = {};
  for (const [name, o] of p.plan.outputs) scratchOutputs[name] = o.scratchPath;
  return {
    drvPath: p.drvPath,
    drvName: p.drv.name,
    system: p.drv.platform,
    builder: p.desugared.builder,
    args: p.desugared.args,
    env: Object.fromEntries(p.desugared.env),
    storeDir: p.store.storeDir,
    realStoreDir: p.store.realStoreDir,
    buildDirHost: p.buildDirHost,
    buildDirSandbox: p.buildDirSandbox,
    inputPaths: [...new Set(p.inputPaths)].sort(),
    scratchOutputs,
    fixedOutput: type === 'caFixed',
    sandboxPaths: [
      ...(p.settings.defaultSandboxPaths ? parseSandboxPathSetting(defaultSandboxPaths().paths) : []),
      ...parseSandboxPathSetting(p.settings.sandboxPaths),
      ...(p.extraSandboxPaths ?? []),
    ],
    impureHostDeps: attrs.strings('__impureHostDeps') ?? [],
    allowedImpureHostDeps: p.settings.allowedImpureHostDeps,
    requiredSystemFeatures: attrs.requiredSystemFeatures(),
    additionalSandboxProfile: attrs.string('__sandboxProfile') ?? '',
    allowLocalNetworking: attrs.bool('__darwinAllowLocalNetworking'),
    sandboxMode: p.settings.sandboxMode,
    noChroot: attrs.bool('__noChroot'),
    globalTmpDir: p.globalTmpDir ?? process.env.TMPDIR ?? '/tmp',
    settings: p.settings.backendSettings,
    buildUser: null,
    daemonSocketHost: null,
  };
}

/** Resolves with `p`, or throws the goal's interruption when the run is cancelled first. */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal, drvPath: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Failure('interrupted', new BuildInterrupted(`build of '${drvPath}' was interrupted`, { drvPath })));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * The paths a build reads: input sources and the wanted outputs of input
 * derivations. With `soFar` (a prestarted goal, whose inputs may still be
 * building) the valid ones only; otherwise a missing one is an error.
 */
export function inputRoots(store: LocalStore, drvPath: string, drv: Derivation, soFar = false): string[] {
  const roots: string[] = [];
  for (const p of drv.inputSrcs) {
    if (!store.isValidPath(p)) {
      if (soFar) continue;
      throw new MissingInputPath(`input path '${p}' of '${drvPath}' is not valid`, { drvPath, path: p });
    }
    roots.push(p);
  }
  for (const [input, outs] of drv.inputDrvs) {
    const map = store.queryPartialDerivationOutputMap(input);
    for (const o of outs) {
      const p = map.get(o);
      if (!p || !store.isValidPath(p)) {
        if (soFar) continue;
        throw new MissingInputPath(`output '${o}' of input derivation '${input}' of '${drvPath}' is not valid`, {
          drvPath,
          input,
          output: o,
        });
      }
      roots.push(p);
    }
  }
  return roots;
}

/** Maps an error thrown by registerOutputs to Nix's BuildResult status. */
export function registrationFailureKind(e: unknown): FailureKind {
  const code = (e as { code?: string }).code;
  if (code === 'E_NOT_DETERMINISTIC') return 'notDeterministic';
  if (code === 'E_FIXED_OUTPUT_HASH_MISMATCH') return 'hashMismatch';
  return 'outputRejected';
}

/** Maps an error thrown before the builder ran: Nix's BuildErrors reject the input (exit 100), plain errors give 1. */
export function preBuildFailureKind(e: unknown): FailureKind {
  const exit = (e as { exitCode?: number }).exitCode;
  return exit !== undefined && exit >= 100 ? 'inputRejected' : 'misc';
}

class Failure extends Error {
  constructor(
    readonly kind: FailureKind,
    readonly inner: Error,
  ) {
    super(inner.message);
  }
}

function fail(kind: FailureKind, e: unknown): never {
  if (e instanceof Failure) throw e;
  throw new Failure(kind, e instanceof Error ? e : new Error(String(e)));
}

function throwIfAborted(signal: AbortSignal, drvPath: string): void {
  if (signal.aborted) throw new Failure('interrupted', new BuildInterrupted(`build of '${drvPath}' was interrupted`, { drvPath }));
}

/** How long to wait for the log to close after the builder exited (a daemonised process escaping a process group may hold it). */
const LOG_DRAIN_MS = 5000;

function wantedAllValid(store: LocalStore, drvPath: string, wanted: ReadonlySet<string> | null): Map<string, string> | null {
  const map = store.queryPartialDerivationOutputMap(drvPath);
  const res = new Map<string, string>();
  for (const [name, p] of map) {
    if (wanted && !wanted.has(name)) continue;
    if (!p || !store.isValidPath(p)) return null;
    res.set(name, p);
  }
  return res;
}

function validOutputs(store: LocalStore, drvPath: string): Map<string, string> {
  const res = new Map<string, string>();
  for (const [name, p] of store.queryPartialDerivationOutputMap(drvPath)) if (p && store.isValidPath(p)) res.set(name, p);
  return res;
}

const pendingRemovals = new Set<Promise<void>>();

/** Waits for the build dirs and sandboxes still being removed in the background (call before exiting). */
export async function flushBackgroundWork(): Promise<void> {
  while (pendingRemovals.size > 0) await Promise.all([...pendingRemovals]);
}

/** Tracks a removal that must not fail (errors already reported) until flushBackgroundWork. */
function inBackground(removal: Promise<void>): void {
  pendingRemovals.add(removal);
  void removal.finally(() => pendingRemovals.delete(removal));
}

interface LentBuildUser extends BuildUserLock {
  /** No cgroup holds the build: its leftovers are found by uid. */
  killByUid: boolean;
}

/**
 * Locks a build user for one build and readies it: the build dir becomes its
 * (Nix's chownToBuilder), leftovers of an earlier build with that uid are
 * killed unless the build gets a cgroup, and for an unsandboxed build the
 * store dir is made writable by the build group (root:group 1775, as Nix).
 */
async function lendBuildUser(o: {
  settings: RunSettings;
  backend: Backend;
  stateDir: string;
  realStoreDir: string;
  buildDir: string;
  uidRange: boolean;
  signal: AbortSignal;
  message(m: string): void;
}): Promise<LentBuildUser> {
  const { acquireBuildUser } = await import('./build-users.js');
  const { BuildUsersUnavailable } = await import('./errors-run.js');
  const s = o.settings;
  const sandboxed = o.backend.caps.sandboxed;
  const cgroup = sandboxed && s.backendSettings.useCgroups;
  if (o.uidRange && !(s.autoAllocateUids && o.backend.caps.supportsUidRange)) {
    throw new BuildUsersUnavailable("the 'uid-range' feature needs 'auto-allocate-uids = true' and the sandbox", {});
  }
  if (o.uidRange && !cgroup) {
    // 65536 uids cannot be searched for leftovers one by one.
    throw new BuildUsersUnavailable("the 'uid-range' feature needs 'use-cgroups = true'", {});
  }
  if (s.autoAllocateUids && !sandboxed) {
    throw new BuildUsersUnavailable("'auto-allocate-uids' needs sandboxed builds (its ids own no group the store dir could be shared with)", {});
  }
  const lock = await acquireBuildUser({
    stateDir: o.stateDir,
    group: s.buildUsersGroup ?? '',
    autoAllocate: s.autoAllocateUids === true,
    uidRange: o.uidRange,
    ...(s.startId !== undefined ? { startId: s.startId } : {}),
    ...(s.idCount !== undefined ? { idCount: s.idCount } : {}),
    signal: o.signal,
    onWait: o.message,
  });
  const lent: LentBuildUser = { ...lock, killByUid: !cgroup };
  try {
    const { uid, gid } = lock.user;
    const own = (p: string): void => {
      lchownSync(p, uid, gid);
      if (lstatSync(p).isDirectory()) for (const e of readdirSync(p)) own(join(p, e));
    };
    own(o.buildDir);
    if (!sandboxed) {
      const st = statSync(o.realStoreDir);
      if (st.uid !== 0 || st.gid !== gid) chownSync(o.realStoreDir, 0, gid);
      if ((st.mode & 0o7777) !== 0o1775) chmodSync(o.realStoreDir, 0o1775);
    }
    if (lent.killByUid) await killBuildUserProcesses(uid);
  } catch (e) {
    lock.release();
    throw e;
  }
  return lent;
}

/** Runs one goal to its end; never throws (failures are in the result). */
export async function runGoal(g: GoalInput): Promise<GoalResult> {
  const { store, drvPath, drv, settings, report, signal } = g;
  const result: GoalResult = {
    drvPath,
    status: 'failed',
    outputs: new Map(),
    startTime: Date.now(),
    stopTime: 0,
    logPath: null,
    logTail: [],
    usage: null,
  };
  const real = (p: string) => store.toRealPath(p);
  const isValid = (p: string) => store.isValidPath(p);
  let slotHeld = false;
  let locks: PathLocks | null = null;
  let buildDir: string | null = null;
  let backend: Backend | null = null;
  let spec: SandboxSpec | null = null;
  let running: RunningBuild | null = null;
  let exited = false;
  let log: BuildLog | null = null;
  let plan: OutputPlan | null = null;
  let succeeded = false;
  let adoptPending: (() => Promise<void>) | null = null;
  let buildUser: LentBuildUser | null = null;
  let recursiveStop: (() => Promise<void>) | null = null;
  const prestart = g.prestart ?? null;
  /** A sandbox set up ahead of the inputs, until its builder is released. */
  let held: HeldBuild | null = null;
  try {
    throwIfAborted(signal, drvPath);
    if (!prestart) {
      await g.slots.acquire(signal);
      slotHeld = true;
    }

    // Lock the outputs; a derivation whose output paths are unknown is locked by its .drv.
    const known = store.queryPartialDerivationOutputMap(drvPath);
    const lockTargets = [...known.values()].some((p) => p === null) ? [drvPath] : ([...known.values()] as string[]);
    locks = await store.lockPaths(lockTargets, { wait: false });
    if (!locks) {
      if (slotHeld) g.slots.release();
      slotHeld = false;
      report.message(`waiting for lock on ${lockTargets.map((p) => `'${p}'`).join(', ')}`);
      locks = (await store.lockPaths(lockTargets, { signal }))!;
      if (!prestart) {
        await g.slots.acquire(signal);
        slotHeld = true;
      }
    }
    throwIfAborted(signal, drvPath);

    // Someone (another drvbox or Nix) may have built them while we waited.
    if (g.mode === 'normal') {
      const done = wantedAllValid(store, drvPath, g.wantedOutputs);
      if (done) {
        locks.setDeletion(true);
        result.status = 'valid';
        result.outputs = done;
        succeeded = true;
        return result;
      }
    }

    try {
      checkPlatform(drvPath, drv, settings);
    } catch (e) {
      fail('misc', e);
    }

    // File-system work that only waits on the disk starts now and is awaited
    // where it is needed, so it overlaps the planning below.
    const logPath = drvLogPath(store.layout.drvLogDir, drvPath);
    const logOpening = BuildLog.open(logPath, { onChunk: (c) => report.chunk(drvPath, c) });
    logOpening.catch(() => {});
    // A recursive build's socket lives in the build dir: its name is kept short enough.
    const wantsDaemon = !!g.recursive && new DrvAttrs(drv).requiredSystemFeatures().includes('recursive-nix');
    const dirName = wantsDaemon && g.recursive!.buildDirName ? g.recursive!.buildDirName(settings.buildDir, drv.name) : drv.name;
    const buildDirMaking = isBuiltin(drv) ? null : makeBuildDirAsync(settings.buildDir, dirName);
    buildDirMaking?.catch(() => {});
    // Whatever happens next, these are cleaned up.
    const adopt = async () => {
      try {
        log ??= await logOpening;
      } catch {
        // reported where it is awaited
      }
      try {
        if (buildDirMaking) buildDir ??= await buildDirMaking;
      } catch {
        // idem
      }
    };
    adoptPending = adopt;

    const attrs = new DrvAttrs(drv);
    const type = derivationType(drv);
    const builtin = isBuiltin(drv);
    let choice: BackendChoice | null = null;
    if (!builtin) {
      try {
        choice = await g.chooseBackend({
          drvPath,
          sandboxMode: settings.sandboxMode,
          noChroot: attrs.bool('__noChroot'),
          sandboxedDerivation: type !== 'caFixed' && type !== 'impure',
          additionalSandboxProfile: attrs.string('__sandboxProfile') ?? '',
          storeDir: store.storeDir,
          realStoreDir: store.realStoreDir,
          sandboxFallback: settings.sandboxFallback,
          systemFeatures: settings.systemFeatures,
          warn: (m) => report.message(`warning: ${m}`),
        });
      } catch (e) {
        fail('misc', e);
      }
      if (choice.warning) report.message(choice.warning);
      backend = choice.backend;
      result.backend = backend.name;
    } else {
      result.backend = 'builtin';
    }
    const needsHashRewrite = builtin || backend!.caps.needsHashRewrite;
    const home = g.homelessShelter ?? HOMELESS_SHELTER;
    if (needsHashRewrite && existsSync(home)) {
      fail(
        'misc',
        new HomeDirExists(`home directory '${home}' exists; please remove it to assure purity of builds without sandboxing`, { path: home }),
      );
    }

    const parts = g.parts;
    try {
      plan = parts.planOutputs({
        storeDir: store.storeDir,
        drvPath,
        drv,
        needsHashRewrite,
        mode: g.mode,
        pathExists: (p) => isValid(p) || existsSync(real(p)),
        isValid,
        ...(g.wantedOutputs ? { wantedOutputs: g.wantedOutputs } : {}),
      });
    } catch (e) {
      fail(preBuildFailureKind(e), e);
    }
    // Leftovers of an interrupted build (invalid paths) are in the builder's way.
    for (const p of parts.scratchPathsToClear(plan, isValid)) deletePath(real(p));

    // A prestarted goal waits for its inputs here, unless its sandbox can be
    // set up without them (held) and they are added before the builder starts.
    // (Not when the build dir gets files describing the closure: exportReferencesGraph, structured attrs.)
    const holdable =
      prestart !== null &&
      !builtin &&
      !wantsDaemon &&
      backend!.startHeld !== undefined &&
      !drv.env.has('__json') &&
      !drv.env.has('exportReferencesGraph') &&
      (settings.preBuildHook === '' || !backend!.caps.sandboxed);
    const awaitInputs = async (): Promise<void> => {
      try {
        await unlessAborted(prestart!.inputsReady, signal, drvPath);
      } catch (e) {
        fail(e instanceof DependencyFailed ? 'dependency' : 'interrupted', e);
      }
      await g.slots.acquire(signal);
      slotHeld = true;
      result.startTime = Date.now();
    };
    if (prestart && !holdable) await awaitInputs();
    let holding = holdable;

    // Keep inputs and outputs from a concurrent garbage collector.
    const roots = inputRoots(store, drvPath, drv, holdable);
    const rooted = [drvPath, ...roots];
    for (const o of plan.outputs.values()) {
      rooted.push(o.scratchPath);
      if (o.finalPath) rooted.push(o.finalPath);
    }
    await store.addTempRoots(rooted);
    // Held: the closure of the inputs there so far (always part of the final one).
    let inputClosure = store.computeClosure(roots);

    log = await logOpening;
    const addedPaths = new Set<string>();
    throwIfAborted(signal, drvPath);

    let drvHashes = g.drvHashes;
    if (!drvHashes && (type === 'caFloating' || type === 'impure')) {
      drvHashes = staticOutputHashes(drv, { storeDir: store.storeDir, resolve: (p) => store.readDerivation(p) });
    }

    let realPathOf: (p: string) => string = real;
    let structuredAttrs: Record<string, unknown> | null = null;
    if (builtin) {
      result.logPath = logPath;
      report.started(drvPath, { name: drv.name, logPath, log });
      const { runBuiltin } = await import('./builtins/index.js');
      const env = new Map<string, string>();
      for (const [k, v] of drv.env) env.set(k, parts.rewriteStrings(v, plan.inputRewrites));
      const timeoutMs = settings.timeout > 0 ? settings.timeout * 1000 : 0;
      const ac = new AbortController();
      const onAbort = () => ac.abort();
      signal.addEventListener('abort', onAbort);
      const timer = timeoutMs ? setTimeout(() => ac.abort(new Error('timeout')), timeoutMs) : null;
      try {
        await runBuiltin({ drvPath, drv, env, realPath: real, log, signal: ac.signal });
      } catch (e) {
        throwIfAborted(signal, drvPath);
        if (ac.signal.aborted && timeoutMs) {
          fail('timedOut', new BuildTimedOut(`building of '${drvPath}' timed out after ${settings.timeout} seconds`, { drvPath }));
        }
        log.note(`error: ${(e as Error).message}`);
        fail(
          type === 'caFixed' ? 'transient' : 'permanent',
          new BuilderFailed(`builder for '${drvPath}' failed with exit code 1`, { drvPath, exitCode: 1, detail: (e as Error).message }),
        );
      } finally {
        if (timer) clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      }
    } else {
      const be = backend!;
      buildDir = await buildDirMaking!;
      const buildDirSandbox = be.buildDirInSandbox(buildDir, settings.backendSettings);
      let desugared: Desugared;
      try {
        desugared = parts.desugar({
          storeDir: store.storeDir,
          drvPath,
          drv,
          plan,
          buildDirSandbox,
          cores: settings.cores,
          callerEnv: g.callerEnv ?? (process.env as Record<string, string>),
          closureInfos: parts.closureInfosFromStore(store, inputClosure),
          isStorePath: (p: string) => isStorePath(store.storeDir, p),
        });
      } catch (e) {
        fail(preBuildFailureKind(e), e);
      }
      structuredAttrs = desugared.structuredAttrs;
      for (const f of desugared.files) writeFileSync(join(buildDir, f.name), f.contents, { mode: 0o644, flag: 'wx' });

      // Root with build-users-group / auto-allocate-uids: a build user of its own.
      if (wantsBuildUsers(settings)) {
        try {
          buildUser = await lendBuildUser({ settings, backend: be, stateDir: store.layout.stateDir, realStoreDir: store.realStoreDir, buildDir, uidRange: attrs.requiredSystemFeatures().includes('uid-range'), signal, message: (m) => report.message(m) });
        } catch (e) {
          fail('misc', e);
        }
      }

      // A recursive build's daemon: before the plan (its socket is part of it).
      let runningNow: RunningBuild | null = null;
      let specNow: SandboxSpec | null = null;
      const addPath = async (p: string) => {
        addedPaths.add(p);
        if (runningNow && specNow) await be.addPath(runningNow, specNow, p);
      };
      let daemonSocketHost: string | null = null;
      let session: RecursiveSessionHandle | null = null;
      if (wantsDaemon) {
        try {
          session = await g.recursive!.start({ drvPath, drv, buildDirHost: buildDir, buildDirSandbox, inputClosure, addPath });
          recursiveStop = session.stop;
          daemonSocketHost = session.socketHost;
          const env = new Map(desugared.env);
          for (const [k, v] of Object.entries(session.env)) env.set(k, v);
          desugared = { ...desugared, env: [...env].sort((a, b) => compareUtf8(a[0], b[0])) };
        } catch (e) {
          fail('misc', e);
        }
      }
      const request = (extraSandboxPaths: SandboxPathMapping[]) => ({
        ...makeBuildRequest({
          store,
          drvPath,
          drv,
          desugared,
          plan: plan!,
          buildDirHost: buildDir!,
          buildDirSandbox,
          inputPaths: inputClosure,
          settings,
          extraSandboxPaths,
        }),
        daemonSocketHost,
        buildUser: buildUser?.user ?? null,
        ...(holding ? { held: true } : {}),
      });
      try {
        spec = be.plan(request([]), choice!.planHost);
        const user = spec.request.buildUser;
        if (session?.chownToBuilder && user) session.chownToBuilder(user.uid, user.gid);
        // Nix runs the pre-build hook for sandboxed builds only, with the sandbox root.
        if (settings.preBuildHook !== '' && be.caps.sandboxed) {
          const extra = await parts.runPreBuildHook({
            hook: settings.preBuildHook,
            drvPath,
            sandboxRoot: typeof spec.chrootDir === 'string' ? spec.chrootDir : null,
            log: (line) => report.message(line),
          });
          if (extra.length > 0) spec = be.plan(request(extra), choice!.planHost);
        }
        if (holding) {
          try {
            held = await be.startHeld!(spec);
          } catch {
            // Set up again the ordinary way below, where a real problem shows.
          }
          const early = held;
          if (early && prestart!.placed) {
            prestart!.placed.listen((inputDrv, outputs) => {
              const used = drv.inputDrvs.get(inputDrv);
              if (!used || held !== early) return;
              try {
                const paths = placedInputPaths(used, outputs, (valid) => store.computeClosure(valid)).filter((p) => !early.visible.has(p));
                // A path that fails here is added again below with the rest of the closure.
                if (paths.length > 0) early.addPaths(paths).catch(() => {});
              } catch {
                // idem
              }
            });
          }
          await awaitInputs();
          const allRoots = inputRoots(store, drvPath, drv);
          await store.addTempRoots(allRoots.filter((p) => !roots.includes(p)));
          inputClosure = store.computeClosure(allRoots);
          const h = held as HeldBuild | null;
          if (h) {
            // Now the whole input closure, as a sandbox started now would have.
            const missing = [...inputClosure].filter((p) => !h.visible.has(p)).sort();
            if (missing.length > 0) await h.addPaths(missing);
          } else {
            holding = false;
            spec = be.plan(request([]), choice!.planHost);
          }
        }
        result.logPath = logPath;
      report.started(drvPath, { name: drv.name, logPath, log });
        if (held) {
          const h = held;
          held = null;
          running = await h.release();
        } else {
          running = await be.start(spec);
        }
      } catch (e) {
        fail(e instanceof Failure ? e.kind : preBuildFailureKind(e), e);
      }
      const run = running;
      const runSpec = spec;
      runningNow = run;
      specNow = runSpec;
      realPathOf = (p) => be.realPathOfScratchOutput(runSpec, p);
      g.onRunning?.({
        drvPath,
        backend: be,
        spec: runSpec,
        running: run,
        addedPaths,
        addPath,
      });

      // Stream the log to disk; enforce timeout and max-silent-time.
      const started = Date.now();
      let lastOutput = started;
      let timedOut: 'timeout' | 'silence' | null = null;
      const theLog = log;
      const logEnded = new Promise<void>((resolve) => {
        run.log.on('data', (c: Buffer) => {
          lastOutput = Date.now();
          theLog.write(c);
        });
        run.log.once('end', resolve);
        run.log.once('close', resolve);
        run.log.once('error', () => resolve());
      });
      const killForTimeout = (why: 'timeout' | 'silence') => {
        if (timedOut || exited) return;
        timedOut = why;
        void run.kill();
      };
      const tick = settings.timeout > 0 || settings.maxSilentTime > 0 ? Math.min(250, 1000 * Math.min(...[settings.timeout, settings.maxSilentTime].filter((x) => x > 0))) : 0;
      const timer = tick
        ? setInterval(() => {
            const now = Date.now();
            if (settings.timeout > 0 && now - started >= settings.timeout * 1000) killForTimeout('timeout');
            else if (settings.maxSilentTime > 0 && now - lastOutput >= settings.maxSilentTime * 1000) killForTimeout('silence');
          }, tick)
        : null;
      const onAbort = () => void run.kill();
      signal.addEventListener('abort', onAbort);
      let status;
      try {
        status = await run.wait();
        exited = true;
        let drain: NodeJS.Timeout | null = null;
        await Promise.race([
          logEnded,
          new Promise<void>((resolve) => {
            drain = setTimeout(() => {
              run.log.destroy();
              resolve();
            }, LOG_DRAIN_MS);
          }),
        ]);
        if (drain) clearTimeout(drain);
        // No path may join the build once registration scans the outputs.
        if (recursiveStop) {
          const stopNow = recursiveStop;
          recursiveStop = null;
          try {
            await stopNow();
          } catch (e) {
            report.message(`warning: stopping the recursive-build daemon of '${drvPath}': ${(e as Error).message}`);
          }
        }
      } finally {
        if (timer) clearInterval(timer);
        signal.removeEventListener('abort', onAbort);
      }
      result.usage = run.usage();
      throwIfAborted(signal, drvPath);
      if (timedOut) {
        const what = `building of '${drvPath}!${[...(g.wantedOutputs ?? ['*'])].join(',')}' from .drv file`;
        fail(
          'timedOut',
          new BuildTimedOut(
            timedOut === 'timeout'
              ? `${what} timed out after ${settings.timeout} seconds`
              : `${what} timed out after ${settings.maxSilentTime} seconds of silence`,
            { drvPath, limit: timedOut },
          ),
        );
      }
      if (status.code !== 0) {
        fail(
          type === 'caFixed' || type === 'impure' ? 'transient' : 'permanent',
          new BuilderFailed(`builder for '${drvPath}' ${describeExit(status.code, status.signal)}`, {
            drvPath,
            exitCode: status.code,
            signal: status.signal,
          }),
        );
      }
    }

    throwIfAborted(signal, drvPath);
    const theLog = log;
    try {
      await parts.registerOutputs({
        store,
        drvPath,
        drv,
        plan,
        mode: g.mode,
        realPathOf,
        inputClosure,
        addedPaths,
        structuredAttrs,
        settings: {
          autoOptimise: settings.autoOptimise,
          keepFailed: settings.keepFailed,
          diffHook: settings.diffHook,
          runDiffHook: settings.runDiffHook,
        },
        ...(drvHashes ? { drvHashes } : {}),
        ...(buildDir ? { buildDir } : {}),
        // Without a sandbox the outputs are the build user's until canonicalised (the sandbox hands them back itself).
        ...(buildUser && backend && !backend.caps.sandboxed ? { fromUid: buildUser.user.uid } : {}),
        ...(buildUser ? { buildUser: { uid: buildUser.user.uid, gid: buildUser.user.gid } } : {}),
        log: (line: string) => theLog.note(line),
        ...(g.onOutputsPlaced ? { onPlaced: g.onOutputsPlaced } : {}),
      });
    } catch (e) {
      fail(registrationFailureKind(e), e);
    }
    result.status = 'built';
    result.outputs = validOutputs(store, drvPath);
    succeeded = true;
    return result;
  } catch (e) {
    const f = e instanceof Failure ? e : new Failure(signal.aborted ? 'interrupted' : 'misc', e instanceof Error ? e : new Error(String(e)));
    result.status = 'failed';
    result.failure = f.kind;
    result.error = f.inner;
    return result;
  } finally {
    result.stopTime = Date.now();
    // Teardown: every step runs whatever happened before it.
    if (adoptPending) await adoptPending();
    const unreleased = held as HeldBuild | null;
    if (unreleased) {
      try {
        await unreleased.abandon();
      } catch (e) {
        report.message(`warning: tearing down the sandbox of '${drvPath}': ${(e as Error).message}`);
      }
    }
    const r = running as RunningBuild | null;
    if (r && !exited) {
      try {
        await r.kill();
      } catch (e) {
        report.message(`warning: killing the builder of '${drvPath}': ${(e as Error).message}`);
      }
    }
    if (log) {
      try {
        result.logTail = log.tail();
        log.close();
        // Nothing ran: no log, as with Nix (an old one was truncated already).
        if (result.logPath === null && log.path) unlinkSync(log.path);
      } catch {
        // the log is best effort
      }
    }
    if (recursiveStop) {
      try {
        await recursiveStop();
      } catch (e) {
        report.message(`warning: stopping the recursive-build daemon of '${drvPath}': ${(e as Error).message}`);
      }
    }
    if (backend && spec) {
      // The names are freed at once; the removal itself runs in the background.
      const sandboxPath = drvPath;
      inBackground(
        backend.cleanup(spec).catch((e: unknown) =>
          report.message(`warning: cleaning up the sandbox of '${sandboxPath}': ${(e as Error).message}`),
        ),
      );
    }
    const lent = buildUser as LentBuildUser | null;
    if (lent) {
      try {
        if (lent.killByUid) await killBuildUserProcesses(lent.user.uid);
      } catch (e) {
        report.message(`warning: killing the processes of ${lent.description}: ${(e as Error).message}`);
      }
      lent.release();
    }
    if (!succeeded && plan && !settings.keepFailed) {
      try {
        for (const o of plan.outputs.values()) if (!isValid(o.scratchPath)) deletePath(real(o.scratchPath));
      } catch (e) {
        report.message(`warning: removing the partial outputs of '${drvPath}': ${(e as Error).message}`);
      }
    }
    if (locks) {
      try {
        locks.setDeletion(succeeded);
        locks.release();
      } catch {
        // closing the fds drops the locks anyway
      }
    }
    if (slotHeld) {
      slotHeld = false;
      g.slots.release();
    }
    if (buildDir) {
      try {
        if (!succeeded && settings.keepFailed) {
          result.keptBuildDir = buildDir;
          report.message(`note: keeping build directory '${buildDir}'`);
        } else {
          // Off the critical path: dependents need not wait for the disk.
          const dir = buildDir;
          inBackground(
            removeBuildDirAsync(dir).catch((e: unknown) =>
              report.message(`warning: removing build directory '${dir}': ${(e as Error).message}`),
            ),
          );
        }
      } catch (e) {
        report.message(`warning: removing build directory '${buildDir}': ${(e as Error).message}`);
      }
    }
  }
}
