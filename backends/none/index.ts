// The unsandboxed backend (sandbox = false, or __noChroot in relaxed mode):
// the builder runs in the build dir on the host with exactly the prepared
// environment and argv. Outputs already present in the store cannot be
// hidden, so builds go to scratch paths and are rewritten (needsHashRewrite),
// as in Nix. See plan.ts for how its processes are contained.
import { existsSync } from 'node:fs';
import type { Backend, BackendCapabilities, BackendSettings, BuildRequest, HeldBuild, PlanHost, ProbeReport, RunningBuild, SandboxSpec } from '../backend.js';
import { BuilderStartFailed } from '../../src/build/errors-run.js';
import { explainNone, isNoneSpec, planNone, type NonePlanOptions, type NoneSandboxSpec } from './plan.js';
import { pidNamespaceProblem, startHeldNone, startNone, type StartNoneOptions } from './run.js';

export { planNone, explainNone, isNoneSpec, type NoneSandboxSpec, type NonePlanOptions, type Containment } from './plan.js';
export { startNone, startHeldNone, pidNamespaceProblem, type StartNoneOptions } from './run.js';

export const NONE_CAPABILITIES: BackendCapabilities = {
  needsHashRewrite: true,
  // The builder sees the whole store: a path added meanwhile is simply there.
  canAddPathsWhileRunning: true,
  supportsUidRange: false,
  sandboxed: false,
};

function asNone(spec: SandboxSpec): NoneSandboxSpec {
  if (!isNoneSpec(spec)) {
    throw new BuilderStartFailed(`a '${spec.backend}' sandbox spec was handed to the unsandboxed backend`, { backend: spec.backend });
  }
  return spec;
}

export interface NoneBackendDeps extends StartNoneOptions {
  plan?: NonePlanOptions;
}

export function createNoneBackend(deps: NoneBackendDeps = {}): Backend {
  return {
    name: 'none',
    caps: NONE_CAPABILITIES,
    async probe(): Promise<ProbeReport> {
      const problem = pidNamespaceProblem();
      const linux = process.platform === 'linux';
      return {
        backend: 'none',
        usable: true,
        checks: [
          {
            name: 'containment',
            ok: !linux || problem === null,
            detail: !linux
              ? 'builders run in their own process group'
              : problem === null
                ? 'builders run in their own PID namespace under a minimal init that reaps them (the launcher in minimal mode)'
                : `builders run in their own process group: ${problem}`,
            ...(linux && problem !== null ? { fix: "build the launcher ('npm run build') and allow user namespaces" } : {}),
          },
        ],
      };
    },
    buildDirInSandbox(hostBuildDir: string, _settings: BackendSettings): string {
      return hostBuildDir;
    },
    plan(req: BuildRequest, host: PlanHost): NoneSandboxSpec {
      return planNone(req, host, deps.plan);
    },
    explain(spec: SandboxSpec): string {
      return explainNone(asNone(spec));
    },
    start(spec: SandboxSpec): Promise<RunningBuild> {
      const s = asNone(spec);
      if (!existsSync(s.cwd)) {
        throw new BuilderStartFailed(`derivation '${s.request.drvPath}': the build directory '${s.cwd}' does not exist`, { path: s.cwd });
      }
      return startNone(s, deps);
    },
    async startHeld(spec: SandboxSpec): Promise<HeldBuild> {
      const s = asNone(spec);
      if (!existsSync(s.cwd)) {
        throw new BuilderStartFailed(`derivation '${s.request.drvPath}': the build directory '${s.cwd}' does not exist`, { path: s.cwd });
      }
      return startHeldNone(s);
    },
    async addPath(): Promise<void> {
      // Nothing to do: the builder sees the host store.
    },
    realPathOfScratchOutput(spec: SandboxSpec, scratchPath: string): string {
      const r = asNone(spec).request;
      return scratchPath.startsWith(r.storeDir + '/') ? r.realStoreDir + scratchPath.slice(r.storeDir.length) : scratchPath;
    },
    async cleanup(): Promise<void> {
      // start() creates nothing beyond the build dir, which the goal owns.
    },
  };
}

export const noneBackend: Backend = createNoneBackend();
