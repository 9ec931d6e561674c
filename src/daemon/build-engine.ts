// The build engine (src/build) as the daemon calls it: DerivedPath targets in,
// protocol BuildResults out, the builders' output sent to the client as the
// log lines of a Build activity (what a Nix client prints, and shows the
// tail of on failure).
//
// Client settings apply as in Nix's daemon: keep-failed, keep-going,
// max-jobs, max-silent-time and cores from SetOptions for everyone; other
// overrides only for trusted clients (untrusted ones may still set timeout
// and max-silent-time), each applied to a copy of the daemon's settings for
// this request only.
import { Settings } from '../config/settings.js';
import type { GoalResult } from '../build/goal.js';
import type { RunSettings } from '../build/run-settings.js';
import type { SchedulerOptions, TargetResult } from '../build/scheduler.js';
import type { BuildTarget } from '../build/targets.js';
import { formatHash } from '../format/hash.js';
import { staticOutputHashes } from '../format/hash-modulo.js';
import type { LocalStore } from '../store/local-store.js';
import type { DaemonBuildContext, DaemonBuildFn } from './local-store-adapter.js';
import { ActivityType, BuildMode, BuildStatus, ResultType, Verbosity } from './protocol.js';
import type { BuildResult, ClientOptions, DerivedPath, Realisation } from './store-api.js';

/** Settings an untrusted client may still set (as Nix's daemon allows). */
const UNTRUSTED_OVERRIDES = new Set(['timeout', 'max-silent-time']);

const FAILURE_STATUS: Record<string, number> = {
  permanent: BuildStatus.PermanentFailure,
  transient: BuildStatus.TransientFailure,
  timedOut: BuildStatus.TimedOut,
  hashMismatch: BuildStatus.OutputRejected,
  notDeterministic: BuildStatus.NotDeterministic,
  outputRejected: BuildStatus.OutputRejected,
  inputRejected: BuildStatus.InputRejected,
  misc: BuildStatus.MiscFailure,
  dependency: BuildStatus.DependencyFailed,
  interrupted: BuildStatus.MiscFailure,
};

const MAX_PARTIAL_LINE = 64 * 1024;

/** The daemon's settings with the client's applied (a copy; `base` is untouched). */
export function settingsForClient(base: Settings, o: ClientOptions, trusted: boolean, warn: (msg: string) => void): Settings {
  const s = new Settings(base.host);
  Object.assign(s.values, structuredClone(base.values));
  // Settings given outright in the daemon's config keep their default out (sandbox-paths).
  for (const n of base.replaced) s.replaced.add(n);
  const set = (name: string, value: string) => {
    try {
      s.setOption(name, value);
    } catch (e) {
      warn(`ignoring the client-specified setting '${name}': ${(e as Error).message}`);
    }
  };
  set('keep-failed', String(o.keepFailed));
  set('keep-going', String(o.keepGoing));
  if (o.maxBuildJobs >= 0) set('max-jobs', String(o.maxBuildJobs));
  set('max-silent-time', String(o.maxSilentTime));
  set('cores', String(o.buildCores));
  for (const [name, value] of Object.entries(o.overrides)) {
    if (!trusted && !UNTRUSTED_OVERRIDES.has(name)) {
      warn(`ignoring the client-specified setting '${name}', because it is a restricted setting and you are not a trusted user`);
      continue;
    }
    // a Nix client sends its whole nix.conf: settings drvbox does not know are not errors here
    try {
      s.setOption(name, value);
    } catch {
      // unknown to drvbox, or not for us (substituters, …)
    }
  }
  return s;
}

function toBuildTarget(t: DerivedPath): BuildTarget {
  if (t.kind !== 'built') throw new Error(`the build engine builds derivations, not '${t.path}'`);
  return { arg: t.drvPath, drvPath: t.drvPath, outputs: t.outputs.length === 0 ? null : [...t.outputs] };
}

/** Nix's message for a failed goal: the error, then the last log lines. */
function failureMessage(r: GoalResult | undefined, t: TargetResult): string {
  const base = t.error?.message ?? r?.error?.message ?? `build of '${t.target.drvPath}' failed`;
  if (!r || r.failure === 'dependency' || r.failure === 'interrupted' || r.logTail.length === 0) return base;
  return `${base};\nlast ${r.logTail.length} log lines:\n${r.logTail.map((l) => `> ${l}`).join('\n')}`;
}

function realisations(store: LocalStore, drvPath: string, outputs: Map<string, string>): Realisation[] {
  let hashes: ReadonlyMap<string, import('../format/hash.js').Hash>;
  try {
    hashes = staticOutputHashes(store.readDerivation(drvPath), { storeDir: store.storeDir, resolve: (p) => store.readDerivation(p) });
  } catch {
    return []; // inputs gone: the ids cannot be computed, the paths are still valid
  }
  const out: Realisation[] = [];
  for (const [name, path] of outputs) {
    const h = hashes.get(name);
    if (h) out.push({ id: `${formatHash(h, 'base16')}!${name}`, outPath: path, signatures: [], dependentRealisations: {} });
  }
  return out;
}

function toResult(store: LocalStore, path: DerivedPath, t: TargetResult, goal: GoalResult | undefined): BuildResult {
  const seconds = (ms: number | undefined) => (ms === undefined ? 0 : Math.floor(ms / 1000));
  const ok = t.status === 'built' || t.status === 'valid';
  let status: number;
  if (t.status === 'built') status = BuildStatus.Built;
  else if (t.status === 'valid') status = BuildStatus.AlreadyValid;
  else if (t.status === 'cancelled') status = BuildStatus.MiscFailure;
  else status = FAILURE_STATUS[goal?.failure ?? 'misc'] ?? BuildStatus.MiscFailure;
  return {
    path,
    status,
    errorMsg: ok ? '' : t.status === 'cancelled' ? `build of '${t.target.drvPath}' was cancelled` : failureMessage(goal, t),
    timesBuilt: t.status === 'built' ? 1 : 0,
    isNonDeterministic: goal?.failure === 'notDeterministic',
    startTime: seconds(t.startTime),
    stopTime: seconds(t.stopTime),
    builtOutputs: ok ? realisations(store, t.target.drvPath, t.outputs) : [],
  };
}

/** A Reporter that turns the engine's events into activities and log lines for the client. */
function clientReporter(ctx: DaemonBuildContext) {
  const activities = new Map<string, { id: bigint; partial: string }>();
  const emitLines = (drvPath: string, text: string, flush: boolean) => {
    const a = activities.get(drvPath);
    if (!a) return;
    const lines = (a.partial + text).split('\n');
    a.partial = flush ? '' : lines.pop()!;
    if (a.partial.length > MAX_PARTIAL_LINE) {
      lines.push(a.partial);
      a.partial = '';
    }
    for (const l of flush ? lines.filter((x, i) => i < lines.length - 1 || x !== '') : lines) ctx.result(a.id, ResultType.BuildLogLine, [l]);
  };
  return {
    planned() {
      // the client prints "these derivations will be built" itself (queryMissing)
    },
    started(drvPath: string, info: { name: string }) {
      void info;
      const id = ctx.startActivity(ActivityType.Build, `building '${drvPath}'`, { fields: [drvPath, '', 1, 1], level: Verbosity.Info });
      activities.set(drvPath, { id, partial: '' });
    },
    chunk(drvPath: string, chunk: Uint8Array) {
      emitLines(drvPath, Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8'), false);
    },
    finished(r: GoalResult) {
      emitLines(r.drvPath, '', true);
      const a = activities.get(r.drvPath);
      if (a) ctx.stopActivity(a.id);
      activities.delete(r.drvPath);
    },
    message(text: string) {
      ctx.log(text);
    },
    close() {
      for (const a of activities.values()) ctx.stopActivity(a.id);
      activities.clear();
    },
  };
}

/** What one request's builds run with, besides the targets. */
export interface EngineBuildOptions {
  /** The settings of this request's builds (may depend on the client). */
  settingsFor(ctx: DaemonBuildContext): { run: RunSettings; keepGoing: boolean };
  /**
   * Passed to the scheduler as they are: the recursive-build hook, shared
   * build slots (inner builds of a recursive build), stubs for tests.
   */
  scheduler?: Pick<SchedulerOptions, 'recursive' | 'slots' | 'parts' | 'chooseBackend' | 'onRunning'>;
}

/** The build engine as a DaemonBuildFn: one scheduler run per request. */
export function makeEngineBuild(o: EngineBuildOptions): DaemonBuildFn {
  return async (targets, mode, ctx) => {
    const { buildTargets } = await import('../build/scheduler.js');
    const { run, keepGoing } = o.settingsFor(ctx);
    const reporter = clientReporter(ctx);
    const summary = await buildTargets(targets.map(toBuildTarget), {
      ...o.scheduler,
      store: ctx.store,
      settings: run,
      mode: mode === BuildMode.Check ? 'check' : mode === BuildMode.Repair ? 'repair' : 'normal',
      keepGoing,
      reporter,
      signal: ctx.signal,
      leaveBackgroundWork: true,
    }).finally(() => reporter.close());
    return summary.targets.map((t, i) => toResult(ctx.store, targets[i]!, t, summary.goals.get(t.target.drvPath)));
  };
}

/** The engine behind `drvbox daemon`, acting with `settings` (plus each client's). */
export function makeDaemonBuild(settings: Settings): DaemonBuildFn {
  let runSettingsFrom: typeof import('../build/run-settings.js').runSettingsFrom | null = null;
  const build = makeEngineBuild({
    settingsFor(ctx) {
      const s = settingsForClient(settings, ctx.options, ctx.trusted, (m) => ctx.log(`warning: ${m}`, Verbosity.Warn));
      return { run: runSettingsFrom!(s, s.host.cpus), keepGoing: s.get('keep-going') };
    },
  });
  return async (targets, mode, ctx) => {
    runSettingsFrom ??= (await import('../build/run-settings.js')).runSettingsFrom;
    return build(targets, mode, ctx);
  };
}

/** The engine, loaded lazily; null only if this drvbox has none. */
export async function findBuildEngine(settings: Settings): Promise<DaemonBuildFn | null> {
  return makeDaemonBuild(settings);
}
