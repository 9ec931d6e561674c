// Fixtures of the run-side build tests: a real store dir in a temp dir,
// derivations added as nix-instantiate would, settings, a recording
// reporter and a scriptable fake backend.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { TestContext } from 'node:test';
import type { Backend, BackendChoice, BackendForInput, HeldBuild, PlanHost, RunningBuild, SandboxSpec } from '../../backends/backend.js';
import { realLocation } from '../../src/config/store-location.js';
import { printDerivation } from '../../src/format/aterm.js';
import type { Derivation, DraftOutput } from '../../src/format/derivation.js';
import { completeDerivation, derivationReferences } from '../../src/format/hash-modulo.js';
import { addTextToStore } from '../../src/store/add.js';
import { LocalStore, storeSettingsFrom } from '../../src/store/local-store.js';
import type { LocalStoreLocation } from '../../src/store/layout.js';
import type { GoalResult } from '../../src/build/goal.js';
import type { RunSettings } from '../../src/build/run-settings.js';
import type { Reporter } from '../../src/build/scheduler.js';
import type { BuildLog } from '../../src/build/logs.js';
import { tempDir } from '../helpers/tmp.js';

export const SYSTEM = 'x86_64-linux';

/** A real (not diverted) store under a temp dir, so unsandboxed builders see it. */
export async function realStore(t: TestContext): Promise<{ store: LocalStore; dir: string; buildDir: string }> {
  const dir = tempDir(t);
  const store = await LocalStore.open(realLocation(join(dir, 'store'), 'test') as LocalStoreLocation, storeSettingsFrom(null));
  t.after(() => store.close());
  const buildDir = join(dir, 'tmp');
  mkdirSync(buildDir);
  return { store, dir, buildDir };
}

export interface DrvSpec {
  name: string;
  /** Shell script run by /bin/sh -c. */
  script?: string;
  builder?: string;
  args?: string[];
  env?: Record<string, string>;
  outputs?: string[] | Map<string, DraftOutput>;
  inputDrvs?: Record<string, string[]>;
  inputSrcs?: string[];
  system?: string;
}

/** Completes and writes a derivation (name, system, builder and outputs in env, as nix-instantiate). */
export async function addDrv(store: LocalStore, s: DrvSpec): Promise<{ drvPath: string; drv: Derivation }> {
  const outputs =
    s.outputs instanceof Map
      ? s.outputs
      : new Map<string, DraftOutput>((s.outputs ?? ['out']).map((o) => [o, { kind: 'inputAddressed' as const }]));
  const builder = s.builder ?? '/bin/sh';
  const env = new Map<string, string>([
    ['name', s.name],
    ['system', s.system ?? SYSTEM],
    ['builder', builder],
    ...(outputs.size > 1 || !outputs.has('out') ? [['outputs', [...outputs.keys()].join(' ')] as [string, string]] : []),
    ...Object.entries(s.env ?? {}),
  ]);
  const c = completeDerivation(
    {
      name: s.name,
      outputs,
      inputDrvs: new Map(Object.entries(s.inputDrvs ?? {}).map(([k, v]) => [k, new Set(v)])),
      inputSrcs: new Set(s.inputSrcs ?? []),
      platform: s.system ?? SYSTEM,
      builder,
      args: s.args ?? ['-c', s.script ?? 'echo ok > $out'],
      env,
    },
    { storeDir: store.storeDir, resolve: (p) => store.readDerivation(p) },
  );
  const p = await addTextToStore(store, `${s.name}.drv`, printDerivation(c.drv, { storeDir: store.storeDir }), derivationReferences(c.drv));
  if (p !== c.drvPath) throw new Error(`drv written to ${p}, computed ${c.drvPath}`);
  return { drvPath: c.drvPath, drv: c.drv };
}

export function settings(buildDir: string, over: Partial<RunSettings> = {}): RunSettings {
  return {
    sandboxMode: 'false',
    sandboxFallback: true,
    keepFailed: false,
    timeout: 0,
    maxSilentTime: 0,
    cores: 2,
    maxJobs: 2,
    system: SYSTEM,
    extraPlatforms: [],
    systemFeatures: ['big-parallel', 'kvm'],
    buildDir,
    backendSettings: {
      sandboxBuildDir: '/build',
      sandboxDevShmSize: '50%',
      filterSyscalls: true,
      allowNewPrivileges: false,
      useCgroups: false,
      darwinLogSandboxViolations: false,
      sandboxFallback: true,
    },
    sandboxPaths: [],
    allowedImpureHostDeps: [],
    autoOptimise: false,
    diffHook: '',
    runDiffHook: false,
    preBuildHook: '',
    ...over,
  };
}

/** Records what a run reports. */
export class Recorder implements Reporter {
  planned_: string[] = [];
  started_: string[] = [];
  finished_: GoalResult[] = [];
  messages: string[] = [];
  output = new Map<string, string>();
  planned(p: string[]): void {
    this.planned_.push(...p);
  }
  started(drvPath: string, _info: { name: string; logPath: string | null; log: BuildLog }): void {
    this.started_.push(drvPath);
  }
  chunk(drvPath: string, c: Uint8Array): void {
    this.output.set(drvPath, (this.output.get(drvPath) ?? '') + Buffer.from(c).toString());
  }
  finished(r: GoalResult): void {
    this.finished_.push(r);
  }
  message(text: string): void {
    this.messages.push(text);
  }
  close(): void {}
}

/**
 * A backend that runs nothing: each build follows env.FAKE:
 *   "write"          every scratch output becomes a file "<output name>\n"
 *   "fail"           exit code 3
 *   "sleep:<ms>"     wait, then write
 *   "failafter:<ms>" wait, then exit code 3
 *   "planfail"       plan() throws (a preparation error: "fake plan of <name> refused";
 *                    event "refuse <name>")
 * and counts how many run at once. With `hold`, it can also start held
 * (Backend.startHeld) and records what happens to held builds in `events`:
 * "held <name> <visible paths>", "add <name> <paths>", "remove <name> <paths>",
 * "release <name>", "abandon <name>" (paths by name, space-separated).
 * With `isValid`, each path of an "add" or "release" event is followed by
 * "(valid)", "(placed)" (on disk, not yet registered) or "(missing)" as it
 * is then.
 */
export class FakeBackend {
  running = 0;
  maxRunning = 0;
  starts: string[] = [];
  events: string[] = [];
  readonly backend: Backend;
  private readonly isValid: ((p: string) => boolean) | null;
  constructor(opts: { hold?: boolean; isValid?: (p: string) => boolean } = {}) {
    const self = this;
    this.isValid = opts.isValid ?? null;
    this.backend = {
      name: 'dummy',
      caps: { needsHashRewrite: true, canAddPathsWhileRunning: true, supportsUidRange: false, sandboxed: false },
      probe: async () => ({ backend: 'dummy', usable: true, checks: [] }),
      buildDirInSandbox: (h) => h,
      plan: (request) => {
        if (request.env.FAKE === 'planfail') {
          self.events.push(`refuse ${request.drvName}`);
          throw new Error(`fake plan of ${request.drvName} refused`);
        }
        return { backend: 'dummy', request };
      },
      explain: () => 'fake',
      start: async (spec: SandboxSpec) => self.start(spec),
      addPath: async () => {},
      realPathOfScratchOutput: (spec, p) => spec.request.realStoreDir + p.slice(spec.request.storeDir.length),
      cleanup: async () => {},
      ...(opts.hold ? { startHeld: async (spec: SandboxSpec) => self.startHeld(spec) } : {}),
    };
  }

  private startHeld(spec: SandboxSpec): HeldBuild {
    const req = spec.request;
    if (!req.held) throw new Error(`startHeld of '${req.drvPath}' planned without held`);
    const names = (ps: Iterable<string>) =>
      [...ps]
        .map((p) => p.slice(p.lastIndexOf('/') + 1))
        .map((b) => b.slice(b.indexOf('-') + 1))
        .join(' ');
    const isValid = this.isValid;
    const pathState = (p: string) => (isValid!(p) ? 'valid' : existsSync(req.realStoreDir + p.slice(req.storeDir.length)) ? 'placed' : 'missing');
    const states = (ps: Iterable<string>) => (isValid ? [...ps].map((p) => `${names([p])}(${pathState(p)})`).sort().join(' ') : names(ps));
    const visible = new Set(req.inputPaths);
    let state: 'held' | 'released' | 'abandoned' = 'held';
    this.events.push(`held ${req.drvName} ${names(visible)}`.trim());
    return {
      visible,
      addPaths: async (ps) => {
        for (const p of ps) visible.add(p);
        this.events.push(`add ${req.drvName} ${states(ps)}`);
      },
      removePaths: async (ps) => {
        for (const p of ps) visible.delete(p);
        this.events.push(`remove ${req.drvName} ${names(ps)}`);
      },
      release: async () => {
        if (state !== 'held') throw new Error(`release of a ${state} build`);
        state = 'released';
        this.events.push(isValid ? `release ${req.drvName} ${states([...visible].sort())}`.trim() : `release ${req.drvName}`);
        return this.start({ ...spec, request: { ...req, inputPaths: [...visible].sort() } });
      },
      abandon: async () => {
        if (state === 'held') this.events.push(`abandon ${req.drvName}`);
        state = 'abandoned';
      },
    };
  }

  choose = async (_i: BackendForInput): Promise<BackendChoice> => {
    const planHost: PlanHost = { platform: 'linux', arch: 'x64', lstat: () => 'missing', realpath: (p) => p };
    return { backend: this.backend, warning: null, planHost };
  };

  private start(spec: SandboxSpec): RunningBuild {
    const req = spec.request;
    this.starts.push(req.drvPath);
    this.events.push(`start ${req.drvName}`);
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    const log = new PassThrough();
    const action = req.env.FAKE ?? 'write';
    let killed = false;
    let finish!: (s: { code: number | null; signal: NodeJS.Signals | null }) => void;
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => (finish = r));
    const end = (code: number | null, signal: NodeJS.Signals | null = null) => {
      this.running--;
      this.events.push(`exit ${req.drvName}`);
      log.end();
      finish({ code, signal });
    };
    const write = () => {
      for (const [name, p] of Object.entries(req.scratchOutputs)) writeFileSync(req.realStoreDir + p.slice(req.storeDir.length), `${name}\n`);
    };
    log.write(`fake build of ${req.drvName}\n`);
    let timer: NodeJS.Timeout | null = null;
    if (action === 'fail') setImmediate(() => end(3));
    else if (action.startsWith('failafter:')) {
      timer = setTimeout(() => end(3), Number(action.slice(10)));
    }
    else if (action.startsWith('sleep:')) {
      timer = setTimeout(() => {
        if (killed) return;
        write();
        end(0);
      }, Number(action.slice(6)));
    } else
      setImmediate(() => {
        write();
        end(0);
      });
    return {
      pid: 0,
      log,
      wait: () => done,
      kill: async () => {
        if (killed) return;
        killed = true;
        if (timer) {
          clearTimeout(timer);
          end(null, 'SIGKILL');
        }
        await done;
      },
      usage: () => null,
    };
  }
}
