// The macOS backend behind the Backend interface: plan() and explain() are
// pure and run anywhere; start() writes the profile into the build dir and
// spawns sandbox-exec through posix_spawn (koffi, loaded on first start).
import { rm, writeFile } from 'node:fs/promises';
import type { Backend, BackendCapabilities, BackendSettings, BuildRequest, PlanHost, ProbeReport, RunningBuild, SandboxSpec } from '../backend.js';
import { darwinDoctorFacts, hostDarwinFacts, type DarwinHostFacts } from './doctor.js';
import { DarwinBadSpec, DarwinCannotAddPaths } from './errors.js';
import { explainDarwin } from './explain.js';
import { hostLibc, type SpawnPrimitives } from './libc.js';
import { isDarwinSpec, planDarwin, type DarwinBuildRequest, type DarwinPlanOptions, type DarwinSandboxSpec } from './plan.js';
import { startSpawn, type WatchOptions } from './spawn-exec.js';
import { hostSignalNames } from './status.js';
import { bindSysv, cleanupSysvIpc, type SysvPrimitives } from './sysv-ipc.js';

export const DARWIN_CAPABILITIES: BackendCapabilities = {
  // Outputs cannot be hidden or renamed by sandbox-exec: always build at scratch paths.
  needsHashRewrite: true,
  canAddPathsWhileRunning: false,
  supportsUidRange: false,
  sandboxed: true,
};

export interface DarwinBackendDeps {
  libc?: () => Promise<SpawnPrimitives>;
  /** System V primitives for cleaning up after build users; null where unavailable. */
  sysv?: () => Promise<SysvPrimitives | null>;
  facts?: () => Promise<DarwinHostFacts>;
  watch?: Omit<WatchOptions, 'uid' | 'afterExit'>;
}

async function hostSysv(): Promise<SysvPrimitives | null> {
  if (process.platform !== 'darwin') return null;
  const koffi = ((await import('koffi')) as unknown as { default: Parameters<typeof bindSysv>[0] }).default;
  return bindSysv(koffi);
}

function asDarwinSpec(spec: SandboxSpec): DarwinSandboxSpec {
  if (!isDarwinSpec(spec)) throw new DarwinBadSpec(`the darwin backend was handed a plan made by the '${spec.backend}' backend`, { backend: spec.backend });
  return spec;
}

/** Kills what a previous build of the same build user left running (before a new build reuses the uid). */
function killLeftovers(prim: SpawnPrimitives, uid: number): void {
  for (const pid of prim.listPidsOfUid(uid) ?? []) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

export function createDarwinBackend(deps: DarwinBackendDeps = {}): Backend {
  const libc = deps.libc ?? hostLibc;
  const sysv = deps.sysv ?? hostSysv;
  const facts = deps.facts ?? hostDarwinFacts;
  return {
    name: 'darwin',
    caps: DARWIN_CAPABILITIES,

    async probe(): Promise<ProbeReport> {
      const f = darwinDoctorFacts(await facts());
      return { backend: 'darwin', usable: f.onDarwin && f.sandboxExec, checks: f.checks };
    },

    // The builder sees host paths: there is no mount namespace to move the build dir.
    buildDirInSandbox(hostBuildDir: string, _settings: BackendSettings): string {
      return hostBuildDir;
    },

    plan(req: BuildRequest, host: PlanHost): SandboxSpec {
      return planDarwin(req as DarwinBuildRequest, host);
    },

    explain(spec: SandboxSpec): string {
      return explainDarwin(asDarwinSpec(spec));
    },

    async start(spec: SandboxSpec): Promise<RunningBuild> {
      const s = asDarwinSpec(spec);
      // 'wx': the build dir is fresh; an existing file there is a bug or an attack.
      await writeFile(s.profilePath, s.profile, { mode: 0o644, flag: 'wx' });
      const prim = await libc();
      const uid = s.spawn.credentials?.uid ?? null;
      if (uid !== null) killLeftovers(prim, uid);
      return startSpawn(s.spawn, prim, {
        ...deps.watch,
        signalNames: deps.watch?.signalNames ?? hostSignalNames(prim.abi.os),
        uid,
        afterExit:
          uid === null
            ? undefined
            : async () => {
                const p = await sysv();
                if (p) cleanupSysvIpc(p, uid);
              },
      });
    },

    async addPath(_running: RunningBuild, spec: SandboxSpec, storePath: string): Promise<void> {
      throw new DarwinCannotAddPaths(
        `cannot make '${storePath}' visible inside the running build of '${spec.request.drvPath}': a sandbox-exec profile cannot grow after the builder started`,
        { drvPath: spec.request.drvPath, storePath },
      );
    },

    // The store dir is never diverted on macOS (plan() refuses it).
    realPathOfScratchOutput(_spec: SandboxSpec, scratchPath: string): string {
      return scratchPath;
    },

    async cleanup(spec: SandboxSpec): Promise<void> {
      await rm(asDarwinSpec(spec).profilePath, { force: true });
    },
  };
}

export const darwinBackend: Backend = createDarwinBackend();

/** Plans and explains in one call, for `drvbox sandbox explain --platform darwin` on any OS. */
export function explainDarwinBuild(req: DarwinBuildRequest, host: PlanHost, opts: DarwinPlanOptions = { explainOnly: true }): string {
  return explainDarwin(planDarwin(req, host, opts));
}
