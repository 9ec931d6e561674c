// The scheduler (Nix's Worker): the DAG of derivations whose wanted outputs
// are missing, built in dependency order, at most max-jobs at once.
//
//   plan     breadth-first from the targets: a derivation needs a build when
//            a wanted output has no valid path (or it is a target in check /
//            repair mode); then each of its input derivations is needed with
//            the outputs it uses. Wanted sets only grow, so a derivation
//            reached again with more outputs is looked at again.
//   run      a derivation starts when its inputs are built; CA-dependent
//            ones are resolved first (resolve.ts). A failure fails its
//            dependents ("N dependencies of derivation ... failed to build");
//            without keep-going it also stops everything else, as Nix does.
//   exit     nix-build's status: 100 + 1 timeout + 2 fixed-output hash
//            mismatch + 4 not deterministic; 1 for failures that are not
//            build failures; 0 when all targets are there.
//
// Nothing heavy loads when every target is already valid: the goal (and with
// it the backends, the launcher, koffi) is imported on the first build.
import { setMaxListeners } from 'node:events';
import type { BackendChoice, BackendForInput, ResourceUsage } from '../../backends/backend.js';
import { isBuiltin, type Derivation } from '../format/derivation.js';
import type { LocalStore } from '../store/local-store.js';
import { DrvAttrs } from './drv-attrs.js';
import { BuildInterrupted, DependencyFailed, MissingInputPath, NoBuildSlots } from './errors-run.js';
import type { EngineParts, FailureKind, GoalPrestart, GoalResult, RecursiveBuildHook, RunningGoal, RunSettings, Slots } from './goal.js';
import type { BuildLog } from './logs.js';
import type { BuildMode } from './output-plan.js';
import type { BuildTarget } from './targets.js';
import { tuneV8ForBuilds } from './v8-tuning.js';
import { PlacedOutputsFeed } from './placed.js';

/** What the user sees of a run (progress.ts implements it). */
export interface Reporter {
  /** The derivations that will be built, before anything starts. */
  planned(drvPaths: string[]): void;
  started(drvPath: string, info: { name: string; logPath: string | null; log: BuildLog }): void;
  chunk(drvPath: string, chunk: Uint8Array): void;
  finished(result: GoalResult): void;
  message(text: string): void;
  close(): void;
}

export interface SchedulerOptions {
  store: LocalStore;
  settings: RunSettings;
  /** Applies to the targets; their inputs are built normally. */
  mode: BuildMode;
  keepGoing: boolean;
  reporter: Reporter;
  /** Ctrl-C: kill every build, stop. */
  signal?: AbortSignal;
  parts?: EngineParts;
  chooseBackend?(i: BackendForInput): Promise<BackendChoice>;
  onRunning?(g: RunningGoal): void;
  /**
   * Recursive builds (recursive-nix): see RecursiveBuildHook. Default: a
   * worker-protocol daemon per 'recursive-nix' derivation (recursive.ts),
   * made only when one is planned; null: none (the feature then does nothing).
   */
  recursive?: RecursiveBuildHook | null;
  /** Build slots to share instead of a fresh max-jobs semaphore (inner builds of one recursive build). */
  slots?: Slots;
  /**
   * Return before the build dirs and sandboxes are removed (they are removed
   * in the background all the same). For long-lived callers such as the
   * daemon, whose replies need not wait for the disk; the CLI waits.
   */
  leaveBackgroundWork?: boolean;
}

export type TargetStatus = 'built' | 'valid' | 'failed' | 'cancelled';

export interface TargetResult {
  target: BuildTarget;
  status: TargetStatus;
  /** Wanted output name -> path (those that are valid). */
  outputs: Map<string, string>;
  error?: Error;
  startTime?: number;
  stopTime?: number;
  logPath?: string | null;
  /** CPU times of the build (cgroup, or rusage of the builder's processes), when known. */
  usage?: ResourceUsage | null;
}

export interface BuildSummary {
  targets: TargetResult[];
  /** Every goal that ran, by .drv path. */
  goals: Map<string, GoalResult>;
  exitCode: number;
  /** Derivations that needed building. */
  planned: string[];
}

type NodeState = 'valid' | 'waiting' | 'running' | 'built' | 'failed' | 'cancelled';

interface Node {
  drvPath: string;
  drv: Derivation;
  wanted: Set<string> | null;
  mode: BuildMode;
  needs: boolean;
  deps: Set<Node>;
  dependents: Set<Node>;
  pending: number;
  failedDeps: number;
  cancelledDeps: number;
  state: NodeState;
  result?: GoalResult;
  /** Started ahead of its inputs (runDag's prestart) and not yet told to go. */
  prestart?: { go: () => void; stop: (e: Error) => void; placed: PlacedOutputsFeed };
  /** Its preparation failed while prestarted: it starts the ordinary way, after its inputs. */
  noPrestart?: boolean;
}

/** A counting semaphore whose waiters can be aborted. */
export class Semaphore implements Slots {
  private free: number;
  private readonly waiters: Array<{ go: () => void; stop: (e: unknown) => void }> = [];
  constructor(n: number) {
    this.free = n;
  }
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise<void>((go, stop) => {
      const w = {
        go: () => {
          signal?.removeEventListener('abort', onAbort);
          go();
        },
        stop,
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        stop(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(w);
    });
  }
  release(): void {
    const w = this.waiters.shift();
    if (w) w.go();
    else this.free++;
  }
}

/** The result of a goal that failed before (or without) building: no outputs, no log. */
function failedResult(drvPath: string, failure: FailureKind, error: Error, startTime = Date.now()): GoalResult {
  return { drvPath, status: 'failed', failure, error, outputs: new Map(), startTime, stopTime: Date.now(), logPath: null, logTail: [], usage: null };
}

/** Whether a derivation asks for a recursive-build daemon. */
function requiresRecursiveNix(drv: Derivation): boolean {
  return new DrvAttrs(drv).requiredSystemFeatures().includes('recursive-nix');
}

/** nix-build's exit status from the failures of one run (Nix's Worker::exitStatus). */
export function exitStatus(kinds: Iterable<FailureKind>): number {
  let mask = 0;
  let any = false;
  for (const k of kinds) {
    any = true;
    if (k === 'permanent' || k === 'inputRejected') mask |= 0x04;
    if (k === 'timedOut') mask |= 0x05;
    if (k === 'hashMismatch') mask |= 0x06;
    if (k === 'notDeterministic') mask |= 0x08;
  }
  if (mask) return mask | 0x60;
  return any ? 1 : 0;
}

function sameSet(a: Set<string> | null, b: Set<string> | null): boolean {
  if (a === null || b === null) return a === b;
  return a.size === b.size && [...a].every((x) => b.has(x));
}

/** Outputs of `drvPath` wanted by `wanted` that have no valid path. */
function missingOutputs(store: LocalStore, drvPath: string, wanted: Set<string> | null): string[] {
  const missing: string[] = [];
  for (const [name, p] of store.queryPartialDerivationOutputMap(drvPath)) {
    if (wanted && !wanted.has(name)) continue;
    if (!p || !store.isValidPath(p)) missing.push(name);
  }
  return missing;
}

/** The derivations to build for `targets`, with their edges. */
function planBuild(store: LocalStore, targets: BuildTarget[], mode: BuildMode): Map<string, Node> {
  const nodes = new Map<string, Node>();
  const queue: Array<{ drvPath: string; wanted: Set<string> | null; target: boolean }> = targets.map((t) => ({
    drvPath: t.drvPath,
    wanted: t.outputs ? new Set(t.outputs) : null,
    target: true,
  }));
  while (queue.length > 0) {
    const { drvPath, wanted, target } = queue.shift()!;
    let node = nodes.get(drvPath);
    const nodeMode: BuildMode = target ? mode : 'normal';
    if (!node) {
      if (!store.isValidPath(drvPath)) {
        throw new MissingInputPath(`derivation '${drvPath}' is not valid in the store`, { path: drvPath });
      }
      node = {
        drvPath,
        drv: store.readDerivation(drvPath),
        wanted,
        mode: nodeMode,
        needs: false,
        deps: new Set(),
        dependents: new Set(),
        pending: 0,
        failedDeps: 0,
        cancelledDeps: 0,
        state: 'valid',
      };
      nodes.set(drvPath, node);
    } else {
      const merged = node.wanted === null || wanted === null ? null : new Set([...node.wanted, ...wanted]);
      const modeChanged = nodeMode !== 'normal' && node.mode === 'normal';
      if (sameSet(merged, node.wanted) && !modeChanged && (node.needs || !target)) continue;
      node.wanted = merged;
      if (modeChanged) node.mode = nodeMode;
    }
    const needs = node.mode !== 'normal' || missingOutputs(store, drvPath, node.wanted).length > 0;
    if (!needs) continue;
    node.needs = true;
    node.state = 'waiting';
    for (const p of node.drv.inputSrcs) {
      if (!store.isValidPath(p)) {
        throw new MissingInputPath(`path '${p}' is required by '${drvPath}', but it is not valid and drvbox has no substituters`, {
          drvPath,
          path: p,
        });
      }
    }
    for (const [input, outs] of node.drv.inputDrvs) queue.push({ drvPath: input, wanted: new Set(outs), target: false });
  }
  // Edges between derivations that need building.
  for (const node of nodes.values()) {
    if (!node.needs) continue;
    for (const input of node.drv.inputDrvs.keys()) {
      const dep = nodes.get(input);
      if (dep && dep.needs && !node.deps.has(dep)) {
        node.deps.add(dep);
        dep.dependents.add(node);
      }
    }
    node.pending = node.deps.size;
  }
  return nodes;
}

function wantedPaths(store: LocalStore, drvPath: string, wanted: string[] | null): Map<string, string> {
  const res = new Map<string, string>();
  for (const [name, p] of store.queryPartialDerivationOutputMap(drvPath)) {
    if (wanted && !wanted.includes(name)) continue;
    if (p && store.isValidPath(p)) res.set(name, p);
  }
  return res;
}

/** Builds `targets`; never throws for build failures (they are in the summary). */
export async function buildTargets(targets: BuildTarget[], opts: SchedulerOptions): Promise<BuildSummary> {
  const { store, reporter } = opts;
  const nodes = planBuild(store, targets, opts.mode);
  const todo = [...nodes.values()].filter((n) => n.needs);
  const planned = todo.map((n) => n.drvPath).sort();
  const goals = new Map<string, GoalResult>();
  const failures: FailureKind[] = [];

  if (todo.length > 0) {
    if (opts.settings.maxJobs === 0 && todo.some((n) => !isBuiltin(n.drv))) {
      throw new NoBuildSlots("unable to start any build; either increase '--max-jobs' or enable remote builds", { maxJobs: 0 });
    }
    reporter.planned(planned);
    await runDag(todo, goals, failures, opts);
  }

  const results: TargetResult[] = targets.map((t) => {
    const node = nodes.get(t.drvPath)!;
    const outputs = wantedPaths(store, t.drvPath, t.outputs);
    const status: TargetStatus =
      node.state === 'valid' ? 'valid' : node.state === 'built' ? 'built' : node.state === 'cancelled' ? 'cancelled' : 'failed';
    const r: TargetResult = { target: t, status, outputs };
    if (node.result) {
      if (node.result.error) r.error = node.result.error;
      r.startTime = node.result.startTime;
      r.stopTime = node.result.stopTime;
      r.logPath = node.result.logPath;
      r.usage = node.result.usage;
    }
    return r;
  });
  if (opts.signal?.aborted) failures.push('interrupted');
  return { targets: results, goals, exitCode: exitStatus(failures), planned };
}

async function runDag(todo: Node[], goals: Map<string, GoalResult>, failures: FailureKind[], opts: SchedulerOptions): Promise<void> {
  const { store, reporter, settings } = opts;
  if (todo.length > 0) tuneV8ForBuilds();
  let backendFor = opts.chooseBackend;
  if (!backendFor) {
    const backends = await import('../../backends/backend.js');
    backendFor = backends.backendFor;
    // First: the launcher starts (and the sandbox is probed) while the goals are set up.
    if (todo.some((n) => !isBuiltin(n.drv))) backends.warmUp({ sandboxMode: settings.sandboxMode, storeDir: store.storeDir, realStoreDir: store.realStoreDir });
  }
  const goalMod = await import('./goal.js');
  const parts = opts.parts ?? (await goalMod.defaultParts());
  // The choice depends on few inputs: decide once per combination. Choices
  // with a warning are not reused: it names the derivation and is printed for each.
  const choices = new Map<string, BackendChoice>();
  const chooseBackend = async (i: BackendForInput): Promise<BackendChoice> => {
    const key = JSON.stringify([i.sandboxMode, i.noChroot, i.sandboxedDerivation, i.additionalSandboxProfile ?? '', i.storeDir, i.realStoreDir]);
    const known = choices.get(key);
    if (known) return known;
    const c = await backendFor(i);
    if (c.warning === null) choices.set(key, c);
    return c;
  };
  const slots = opts.slots ?? new Semaphore(Math.max(1, settings.maxJobs));
  let recursive = opts.recursive ?? null;
  if (opts.recursive === undefined && todo.some((n) => requiresRecursiveNix(n.drv))) {
    const { createRecursiveHook } = await import('./recursive.js');
    recursive = createRecursiveHook({
      store,
      settings,
      ...(opts.parts ? { parts: opts.parts } : {}),
      ...(opts.chooseBackend ? { chooseBackend: opts.chooseBackend } : {}),
    });
  }
  // Cancels every goal: Ctrl-C, or a failure without keep-going.
  const cancel = new AbortController();
  // Every waiting goal listens to it.
  setMaxListeners(0, cancel.signal);
  const onUserAbort = () => cancel.abort(new BuildInterrupted('interrupted by the user', {}));
  if (opts.signal?.aborted) onUserAbort();
  opts.signal?.addEventListener('abort', onUserAbort, { once: true });
  let running = 0;
  // Prestart: while a derivation builds, its dependent whose other inputs
  // are all there or on their way prepares (and holds its sandbox) so it
  // starts the moment the input is registered. Only with a build slot to
  // spare, which is what a chain leaves idle; never for inner builds of a
  // recursive build. Up to max-jobs of them wait at once: in a chain the
  // link after next is set up too, as setting a sandbox up takes longer
  // than building and registering a trivial link.
  /** Prestarted goals still waiting for their inputs (they hold no build slot). */
  let waitingPrestarts = 0;
  const resolveMod = await import('./resolve.js');
  const prestartOn = !opts.slots && settings.maxJobs > 1 && process.env.DRVBOX_PRESTART !== '0';
  const canPrestart = (d: Node): boolean =>
    prestartOn &&
    d.state === 'waiting' &&
    !d.noPrestart &&
    d.pending > 0 &&
    d.failedDeps === 0 &&
    d.cancelledDeps === 0 &&
    !cancel.signal.aborted &&
    d.mode === 'normal' &&
    !isBuiltin(d.drv) &&
    !requiresRecursiveNix(d.drv) &&
    !resolveMod.needsResolution(d.drv) &&
    running - waitingPrestarts < settings.maxJobs &&
    waitingPrestarts < settings.maxJobs &&
    // Every input builds, is built, or is itself prestarted (state running).
    [...d.deps].every((x) => x.state !== 'waiting') &&
    buildableHere(d);
  /** A derivation that cannot build here fails after its inputs, as without prestart (not while they build). */
  const buildableHere = (d: Node): boolean => {
    try {
      goalMod.checkPlatform(d.drvPath, d.drv, settings);
      return true;
    } catch {
      return false;
    }
  };
  /** Prestarts what can be among the dependents of `node`, and further down the prestarted ones. */
  const prestartDependents = (node: Node) => {
    for (const d of node.dependents) {
      if (canPrestart(d)) prestartNode(d);
      if (d.prestart) prestartDependents(d);
    }
  };
  /** `d` no longer waits as a prestarted goal (told to go or stop, or ended). */
  const clearPrestart = (d: Node) => {
    if (d.prestart === undefined) return;
    d.prestart = undefined;
    waitingPrestarts--;
  };
  let finish!: () => void;
  const allDone = new Promise<void>((r) => (finish = r));
  let unsettled = todo.length;

  const settle = (node: Node, state: NodeState, result?: GoalResult) => {
    node.state = state;
    if (result) {
      node.result = result;
      goals.set(node.drvPath, result);
    }
    unsettled--;
    for (const d of node.dependents) {
      if (d.state !== 'waiting' && !d.prestart) continue;
      d.pending--;
      if (state === 'failed') d.failedDeps++;
      else if (state === 'cancelled') d.cancelledDeps++;
      if (d.prestart) {
        const p = d.prestart;
        if (d.failedDeps > 0 && (d.pending === 0 || !opts.keepGoing)) {
          clearPrestart(d);
          p.stop(dependencyFailed(d));
        } else if (d.pending === 0) {
          clearPrestart(d);
          if (d.cancelledDeps > 0 || cancel.signal.aborted) p.stop(new BuildInterrupted(`build of '${d.drvPath}' was cancelled`, { drvPath: d.drvPath }));
          else p.go();
        }
        continue;
      }
      if (state === 'failed' && !opts.keepGoing) {
        failDependent(d);
        continue;
      }
      if (d.pending === 0) {
        if (d.failedDeps > 0) failDependent(d);
        else if (d.cancelledDeps > 0 || cancel.signal.aborted) settle(d, 'cancelled');
        else start(d);
      }
    }
    if (unsettled === 0 && running === 0) finish();
  };

  /** Nix's error for a derivation whose inputs failed. */
  const dependencyFailed = (d: Node): DependencyFailed => {
    const n = Math.max(1, d.failedDeps);
    return new DependencyFailed(`${n} dependencies of derivation '${d.drvPath}' failed to build`, { drvPath: d.drvPath, failed: n });
  };

  const failDependent = (d: Node, prestarted = false) => {
    if (d.state !== 'waiting' && !prestarted) return;
    const result = failedResult(d.drvPath, 'dependency', dependencyFailed(d));
    failures.push('dependency');
    reporter.finished(result);
    settle(d, 'failed', result);
  };

  const start = (node: Node, prestart?: GoalPrestart) => {
    node.state = 'running';
    running++;
    void runNode(node, prestart).then(
      (result) => {
        running--;
        clearPrestart(node);
        if (prestart && node.failedDeps > 0 && result.status === 'failed' && (result.failure === 'dependency' || result.failure === 'interrupted')) {
          // Prestarted, then an input failed: as if it had never started.
          failDependent(node, true);
          return;
        }
        if (prestart && node.pending > 0 && result.status === 'failed') {
          // Cancelled while its inputs still build (a prestarted link further
          // down a chain): as if it had never started; their outcome decides.
          // Any other failure now is one of preparation (its builder cannot
          // have run): it must not end the run while the inputs build, so
          // the goal is prepared again, the ordinary way, once they are
          // built, and fails then as it would have without prestart.
          if (result.failure !== 'interrupted') node.noPrestart = true;
          node.state = 'waiting';
          return;
        }
        const cancelled =
          result.status === 'failed' && result.failure === 'interrupted' && (cancel.signal.aborted || node.cancelledDeps > 0);
        if (cancelled) {
          settle(node, 'cancelled', result);
          return;
        }
        reporter.finished(result);
        if (result.status === 'failed') {
          failures.push(result.failure ?? 'misc');
          // Without keep-going the first failure ends the run: kill the others.
          if (!opts.keepGoing) cancel.abort(new BuildInterrupted('another build failed', {}));
          settle(node, 'failed', result);
        } else {
          settle(node, 'built', result);
        }
      },
      (e: unknown) => {
        running--;
        clearPrestart(node);
        const result = failedResult(node.drvPath, 'misc', e instanceof Error ? e : new Error(String(e)));
        reporter.finished(result);
        failures.push('misc');
        if (!opts.keepGoing) cancel.abort(new BuildInterrupted('another build failed', {}));
        settle(node, 'failed', result);
      },
    );
  };

  const prestartNode = (d: Node) => {
    let go!: () => void;
    let stop!: (e: Error) => void;
    const inputsReady = new Promise<void>((res, rej) => {
      go = res;
      stop = rej;
    });
    inputsReady.catch(() => {});
    const placed = new PlacedOutputsFeed();
    d.prestart = { go, stop, placed };
    waitingPrestarts++;
    start(d, { inputsReady, placed });
  };

  const goalFor = (drvPath: string, drv: Derivation, node: Node, prestart?: GoalPrestart) =>
    goalMod.runGoal({
      store,
      drvPath,
      drv,
      wantedOutputs: node.wanted,
      mode: node.mode,
      settings,
      slots,
      report: reporter,
      signal: cancel.signal,
      parts,
      chooseBackend,
      // Dependents are prepared once this builder runs: while it runs, not
      // on its way to running (in a chain, that is the critical path).
      onRunning: (r: RunningGoal) => {
        opts.onRunning?.(r);
        prestartDependents(node);
      },
      // Held dependents add the outputs to their sandboxes while they are registered.
      onOutputsPlaced: (outputs) => {
        for (const d of node.dependents) d.prestart?.placed.emit(node.drvPath, outputs);
      },
      ...(recursive ? { recursive } : {}),
      ...(prestart ? { prestart } : {}),
    });

  const runNode = async (node: Node, prestart?: GoalPrestart): Promise<GoalResult> => {
    const resolve = resolveMod;
    if (!resolve.needsResolution(node.drv)) return goalFor(node.drvPath, node.drv, node, prestart);
    const started = Date.now();
    let resolved;
    let resolvedPath: string;
    try {
      resolved = resolve.resolveDerivation(store, node.drvPath, node.drv, parts.rewriteStrings);
      resolvedPath = await resolve.writeResolved(store, resolved);
    } catch (e) {
      return failedResult(node.drvPath, 'misc', e as Error, started);
    }
    reporter.message(`resolved derivation: '${node.drvPath}' -> '${resolvedPath}'`);
    const r = await goalFor(resolvedPath, resolved.drv, node);
    if (r.status !== 'failed') {
      resolve.recordOriginalRealisations(store, node.drvPath, node.drv, r.outputs, node.wanted);
      const outs = new Map<string, string>();
      for (const [name, p] of store.queryPartialDerivationOutputMap(node.drvPath)) if (p && store.isValidPath(p)) outs.set(name, p);
      return { ...r, drvPath: node.drvPath, outputs: outs };
    }
    return { ...r, drvPath: node.drvPath };
  };

  for (const n of todo) if (n.pending === 0 && n.state === 'waiting') start(n);
  if (unsettled === 0 && running === 0) finish();
  try {
    await allDone;
    if (!opts.leaveBackgroundWork) await goalMod.flushBackgroundWork();
  } finally {
    opts.signal?.removeEventListener('abort', onUserAbort);
  }
}
