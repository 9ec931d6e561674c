// The one interface every sandbox backend implements, and the one factory that
// picks a backend. Callers (src/build) ask the backend for its capabilities and
// hand it a fully decided BuildRequest; they never test the OS themselves.
//
// Flow for one build:
//   1. build/ asks `backendFor(...)` for a backend (sandbox mode, __noChroot,
//      host platform, probe result) and reads `caps`.
//   2. build/ desugars the derivation with `caps.needsHashRewrite` and
//      `buildDirInSandbox()` known, producing a BuildRequest (plain data).
//   3. `plan(req, host)` decides the sandbox: pure but for the PlanHost
//      oracle (lstat, realpath), so it is unit-testable on any OS.
//   4. `start(spec)` carries the plan out; the RunningBuild streams the log
//      and can be killed; `wait()` gives the exit status.
//   5. build/ registers outputs from `realPathOfScratchOutput()`.

import { lstatSync, realpathSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { hostDefaultShell, type DefaultShell } from './linux/default-shell.js';

export type Platform = 'linux' | 'darwin';
export type SandboxMode = 'true' | 'false' | 'relaxed';
export type BackendName = 'linux' | 'darwin' | 'none' | 'dummy';

/** One entry of `sandbox-paths`/`extra-sandbox-paths`/`__impureHostDeps`. */
export interface SandboxPathMapping {
  /** Where the path appears to the builder. */
  target: string;
  /** Where it is on the host. */
  source: string;
  /** `?` suffix: skipped when the source does not exist. */
  optional: boolean;
}

/** Settings that the backends read. Everything else stays in build/. */
export interface BackendSettings {
  sandboxBuildDir: string; // default /build
  sandboxDevShmSize: string; // default 50%
  filterSyscalls: boolean;
  allowNewPrivileges: boolean;
  useCgroups: boolean;
  darwinLogSandboxViolations: boolean;
  sandboxFallback: boolean;
}

/** A build user lent to the build (root with build-users-group). */
export interface BuildUser {
  uid: number;
  gid: number;
  /** 1, or 65536 with auto-allocate-uids + the uid-range feature. */
  uidCount: number;
  supplementaryGids: number[];
}

/** Everything a backend needs to plan one build. Plain, serialisable data. */
export interface BuildRequest {
  drvPath: string; // logical store path of the .drv
  drvName: string;
  system: string; // the derivation's platform, e.g. x86_64-linux
  builder: string;
  args: string[];
  /** The exact environment of the builder, paths as the builder sees them. */
  env: Record<string, string>;
  storeDir: string; // logical, e.g. /nix/store
  realStoreDir: string; // physical directory holding the store paths
  /** Top build dir on the host (0700) and as the builder sees it. */
  buildDirHost: string;
  buildDirSandbox: string;
  /** Logical store paths the builder may read: the input closure, plus the
   *  closures of store paths named in sandbox-paths. */
  inputPaths: string[];
  /** Output name -> logical path the builder writes (scratch path). */
  scratchOutputs: Record<string, string>;
  /** Fixed-output derivations get the network and host name resolution. */
  fixedOutput: boolean;
  /** sandbox-paths + extra-sandbox-paths + pre-build-hook additions. */
  sandboxPaths: SandboxPathMapping[];
  /** __impureHostDeps of the derivation (darwin) */
  impureHostDeps: string[];
  allowedImpureHostDeps: string[];
  requiredSystemFeatures: string[];
  /** darwin: __sandboxProfile (only honoured in relaxed mode). */
  additionalSandboxProfile: string;
  /** darwin: __darwinAllowLocalNetworking */
  allowLocalNetworking: boolean;
  sandboxMode: SandboxMode;
  /** __noChroot (honoured in relaxed mode only). */
  noChroot?: boolean;
  /** The host's temp dir (darwin: _GLOBAL_TMP_DIR); the caller's TMPDIR. */
  globalTmpDir?: string;
  settings: BackendSettings;
  buildUser: BuildUser | null;
  /** Host path of the recursive-build daemon socket, when there is one. */
  daemonSocketHost: string | null;
  /**
   * Planned for startHeld(): the sandbox is set up before the inputs are all
   * built, and store paths are added to or removed from it until release().
   */
  held?: boolean;
}

/** File-system facts plan() may ask for. Injected so plan() stays testable. */
export interface PlanHost {
  lstat(path: string): 'file' | 'directory' | 'symlink' | 'other' | 'missing';
  realpath(path: string): string;
  platform: Platform;
  arch: string; // process.arch
}

/** What a backend decided; the shape is the backend's own. */
export interface SandboxSpec {
  backend: BackendName;
  request: BuildRequest;
  [key: string]: unknown;
}

export interface ExitStatus {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ResourceUsage {
  cpuUserMs: number;
  cpuSystemMs: number;
}

export interface RunningBuild {
  readonly pid: number;
  /** stdout and stderr of the builder, merged, as raw bytes. */
  readonly log: Readable;
  wait(): Promise<ExitStatus>;
  /** Kill every process of the build; resolves when none is left. Idempotent. */
  kill(): Promise<void>;
  /** CPU times, when the backend can tell (cgroups, rusage). */
  usage(): ResourceUsage | null;
}

/**
 * A sandbox set up ahead of time (Backend.startHeld): everything is in place
 * but the builder, which starts on release(). Meanwhile the inputs that were
 * still being built are added, so that at release the builder sees exactly
 * the closure, as with start(). removePaths is for a caller that planned
 * more than the closure (the engine does not: guessing it measured no faster).
 */
export interface HeldBuild {
  /** Store paths (logical) visible inside: the plan's inputs, then what was added or removed. */
  readonly visible: ReadonlySet<string>;
  /**
   * Makes store paths visible, bound read-only like the plan's inputs: valid
   * ones, or outputs of an input in their final place and being registered
   * (the release waits for those to be valid).
   */
  addPaths(storePaths: readonly string[]): Promise<void>;
  /** Hides paths the plan made visible; nothing of them is left inside, not even the mount point. */
  removePaths(storePaths: readonly string[]): Promise<void>;
  /** Starts the builder; resolves or throws as start() would. Once. */
  release(): Promise<RunningBuild>;
  /** Tears the sandbox down without starting the builder; resolves when nothing of it runs. Idempotent. */
  abandon(): Promise<void>;
}

export interface BackendCapabilities {
  /** Outputs are built at scratch paths and rewritten afterwards. */
  needsHashRewrite: boolean;
  /** addPath() works while the builder runs (recursive builds). */
  canAddPathsWhileRunning: boolean;
  /** uid-range feature (65536 uids inside). */
  supportsUidRange: boolean;
  /** The builder cannot see the host beyond what the plan allows. */
  sandboxed: boolean;
}

/** One line of `doctor`: a host facility and whether it works. */
export interface ProbeCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** What to do about a failure. */
  fix?: string;
}

export interface ProbeReport {
  backend: BackendName;
  usable: boolean;
  checks: ProbeCheck[];
}

export interface Backend {
  readonly name: BackendName;
  readonly caps: BackendCapabilities;
  probe(): Promise<ProbeReport>;
  /** The top build dir as the builder will see it. */
  buildDirInSandbox(hostBuildDir: string, settings: BackendSettings): string;
  plan(req: BuildRequest, host: PlanHost): SandboxSpec;
  /** Human-readable plan: mount table and seccomp rules, or the .sb text. */
  explain(spec: SandboxSpec): string;
  start(spec: SandboxSpec): Promise<RunningBuild>;
  /** Optional: start() in two steps for a spec planned with `held` (see HeldBuild). */
  startHeld?(spec: SandboxSpec): Promise<HeldBuild>;
  /** Make a store path visible inside a running build (recursive builds). */
  addPath(running: RunningBuild, spec: SandboxSpec, storePath: string): Promise<void>;
  /** Where a scratch output ended up on the host after the build. */
  realPathOfScratchOutput(spec: SandboxSpec, scratchPath: string): string;
  /**
   * Remove what start() created (chroot dir, profile files). Idempotent.
   * The names are freed before the first await (the same derivation may be
   * started again at once); the promise settles when the removal is done.
   */
  cleanup(spec: SandboxSpec): Promise<void>;
}

// ---------------------------------------------------------------------------
// The factory.

/** What decides the backend of one build. */
export interface BackendForInput {
  drvPath: string;
  sandboxMode: SandboxMode;
  /** `__noChroot` of the derivation (honoured in relaxed mode only; an error in strict mode). */
  noChroot: boolean;
  /** Neither fixed-output nor impure (Nix's isSandboxed()): relaxed mode sandboxes only these. */
  sandboxedDerivation: boolean;
  /** darwin `__sandboxProfile` ('' when absent). */
  additionalSandboxProfile?: string;
  /** Default: process.platform. */
  hostPlatform?: NodeJS.Platform;
  storeDir: string;
  realStoreDir: string;
  sandboxFallback: boolean;
  /** `system-features`, for the Linux plan host (kvm). */
  systemFeatures?: readonly string[];
  /** Told (once per process) when the unsandboxed backend cannot contain builders in a PID namespace. */
  warn?: (message: string) => void;
}

export interface BackendChoice {
  backend: Backend;
  /** Print on EVERY build made with this choice (sandbox-fallback, a sandbox forced by a diverted store). */
  warning: string | null;
  /** The file-system oracle for `backend.plan`. */
  planHost: PlanHost;
}

function genericPlanHost(platform: Platform): PlanHost {
  return {
    lstat(p) {
      try {
        const st = lstatSync(p);
        return st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
      } catch {
        return 'missing';
      }
    },
    realpath: (p) => realpathSync(p),
    platform,
    arch: process.arch,
  };
}

/**
 * Picks linux / darwin / none for one build, as Nix's tryLocalBuild decides
 * useChroot: `sandbox` true (an error with __noChroot), false, or relaxed
 * (sandboxed unless fixed-output, impure or __noChroot); a diverted store
 * forces the sandbox on Linux and is refused elsewhere; a host that cannot
 * sandbox falls back to none only with `sandbox-fallback`, with a warning on
 * every build, and never with a diverted store (Nix issue 16291: the builder
 * could not see the store there). Backend modules load only when chosen.
 */
export async function backendFor(i: BackendForInput): Promise<BackendChoice> {
  const host = i.hostPlatform ?? process.platform;
  const os: Platform | null = host === 'linux' || host === 'darwin' ? host : null;
  const { decideSandbox } = await import('./linux/mode.js');
  const diverted = i.storeDir !== i.realStoreDir;
  const base = {
    drvPath: i.drvPath,
    mode: i.sandboxMode,
    noChroot: i.noChroot,
    sandboxedDerivation: i.sandboxedDerivation,
    additionalSandboxProfile: i.additionalSandboxProfile ?? '',
    platform: os ?? ('linux' as Platform),
    divertedStore: diverted,
    realStoreDir: i.realStoreDir,
    storeDir: i.storeDir,
    sandboxFallback: i.sandboxFallback,
  };
  let decision = decideSandbox({ ...base, sandboxAvailable: os !== null, unavailableReason: `no sandbox backend for '${host}'` });
  let warning = decision.warning;
  if (decision.useSandbox && os !== null) {
    const sandboxed = os === 'linux' ? await import('./linux/index.js') : await import('./darwin/index.js');
    const backend = os === 'linux' ? (sandboxed as typeof import('./linux/index.js')).linuxBackend : (sandboxed as typeof import('./darwin/index.js')).darwinBackend;
    const report = await backend.probe();
    if (report.usable) {
      const unasked = i.sandboxMode === 'false' || (i.sandboxMode === 'relaxed' && (i.noChroot || !i.sandboxedDerivation));
      if (diverted && unasked) {
        warning =
          `warning: building '${i.drvPath}' in the sandbox although 'sandbox' is '${i.sandboxMode}': the store's physical ` +
          `directory '${i.realStoreDir}' differs from '${i.storeDir}', and only the sandbox can show its paths there`;
      }
      const planHost =
        os === 'linux' ? (sandboxed as typeof import('./linux/index.js')).localPlanHost(i.systemFeatures) : genericPlanHost('darwin');
      return { backend, warning, planHost };
    }
    const failed = report.checks.find((c) => !c.ok);
    decision = decideSandbox({ ...base, sandboxAvailable: false, unavailableReason: failed ? `${failed.name}: ${failed.detail}` : 'the probe failed' });
    warning = decision.warning;
  }
  const none = await import('./none/index.js');
  return {
    backend: i.warn ? none.createNoneBackend({ warn: i.warn }) : none.noneBackend,
    warning,
    planHost: genericPlanHost(os ?? 'linux'),
  };
}

/**
 * Starts ahead of the first build what it will need, while the caller goes
 * on planning: on Linux the launcher server (its spare monitors connect
 * meanwhile) and, when builds may be sandboxed, the sandbox probe (cached
 * per process, so backendFor() then finds it done or under way). Nothing is
 * reported here: a problem shows where the build meets it.
 */
export function warmUp(i: { sandboxMode: SandboxMode; storeDir: string; realStoreDir: string }): void {
  if (process.platform !== 'linux') return;
  void (async () => {
    const paths = await import('./linux/launcher-path.js');
    const launcher = paths.launcherStatus();
    if (!launcher.ok) return;
    if (process.env.DRVBOX_LAUNCHER_ONESHOT !== '1') (await import('./linux/server.js')).launcherServer(launcher.path);
    if (i.sandboxMode !== 'false' || i.storeDir !== i.realStoreDir) (await import('./linux/index.js')).linuxBackend.probe().catch(() => {});
  })().catch(() => {});
}

/**
 * A backend by name, for `drvbox sandbox explain --platform ...` (no
 * decision, no probe): the backend, a plan host for it, and `explain(req)`
 * that plans and describes without building. darwin's works on any OS (its
 * explain-only plan describes, instead of refusing, what only macOS has).
 */
export async function backendNamed(
  name: 'linux' | 'darwin' | 'none',
  systemFeatures?: readonly string[],
): Promise<{ backend: Backend; planHost: PlanHost; explain(req: BuildRequest): string }> {
  if (name === 'linux') {
    const m = await import('./linux/index.js');
    const planHost = m.localPlanHost(systemFeatures);
    return { backend: m.linuxBackend, planHost, explain: (req) => m.linuxBackend.explain(m.linuxBackend.plan(req, planHost)) };
  }
  if (name === 'darwin') {
    const m = await import('./darwin/index.js');
    const planHost = genericPlanHost('darwin');
    return { backend: m.darwinBackend, planHost, explain: (req) => m.explainDarwinBuild(req, planHost, { explainOnly: true }) };
  }
  const m = await import('./none/index.js');
  const planHost = genericPlanHost(process.platform === 'darwin' ? 'darwin' : 'linux');
  return { backend: m.noneBackend, planHost, explain: (req) => m.noneBackend.explain(m.noneBackend.plan(req, planHost)) };
}

/**
 * The built-in `sandbox-paths` of this host (used unless the setting is
 * given outright; `extra-sandbox-paths` adds to it): on Linux a `/bin/sh`
 * that works in the sandbox (a static busybox, else the host's shell with its
 * loader and libraries; see linux/default-shell.ts); none elsewhere (the
 * darwin sandbox sees the host's /bin/sh).
 */
export function defaultSandboxPaths(platform: NodeJS.Platform = process.platform): DefaultShell {
  if (platform !== 'linux') return { paths: [], how: 'none on this platform' };
  return hostDefaultShell();
}

/**
 * Kills every process of a build user (a uid locked for one build), for
 * builds without a cgroup: before the build (leftovers of an earlier one) and
 * after it. Refuses root and the caller's own uid.
 */
export async function killBuildUserProcesses(uid: number): Promise<void> {
  const { killBuildUser } = await import('./linux/run.js');
  await killBuildUser(uid);
}

/** One part of `drvbox doctor`: a backend's checks, longer notes, and its facts for --json. */
export interface DoctorSection {
  title: string;
  /** Sandboxed builds can run here. */
  usable: boolean;
  checks: ProbeCheck[];
  /** Multi-line texts (an AppArmor profile to install, what npm install printed). */
  notes: string[];
  data: Record<string, unknown>;
}

/** What `drvbox doctor` says about the sandbox of this host (Linux: the probe and more; macOS: the darwin facts). */
export async function doctorSections(platform: NodeJS.Platform = process.platform): Promise<DoctorSection[]> {
  if (platform === 'linux') {
    const [{ linuxDoctor, localDoctorHost }, { linuxBackend }] = await Promise.all([import('./linux/doctor.js'), import('./linux/index.js')]);
    const r = await linuxDoctor(localDoctorHost(() => linuxBackend.probe()));
    return [
      {
        title: 'Linux namespace sandbox',
        usable: r.usable,
        checks: r.checks,
        notes: r.notes,
        data: { defaultSandboxPaths: r.defaultSandboxPaths, apparmor: r.apparmor, launcher: r.launcher },
      },
    ];
  }
  if (platform === 'darwin') {
    const { darwinDoctorFacts, hostDarwinFacts } = await import('./darwin/doctor.js');
    const f = darwinDoctorFacts(await hostDarwinFacts());
    const { checks, ...facts } = f;
    return [{ title: 'macOS sandbox (sandbox-exec)', usable: f.sandboxExec, checks, notes: [], data: facts }];
  }
  return [{ title: 'sandbox', usable: false, checks: [{ name: 'platform', ok: false, detail: `no sandbox backend for '${platform}'` }], notes: [], data: {} }];
}
