// The Linux namespace backend: plan (pure), explain, probe, start, startHeld, addPath.
import { existsSync, lstatSync, realpathSync } from 'node:fs';
import type {
  Backend,
  BackendCapabilities,
  BackendSettings,
  BuildRequest,
  HeldBuild,
  PlanHost,
  ProbeReport,
  RunningBuild,
  SandboxSpec,
} from '../backend.js';
import { AddPathFailed, SandboxRequestInvalid } from './errors.js';
import { explainLinux } from './explain.js';
import { startHeldLinux } from './held.js';
import { planLinux, type LinuxPlanHost, type LinuxSandboxSpec } from './plan.js';
import { probeLinux } from './probe.js';
import { discardChroot, LinuxRunningBuild, scratchOnHost, startLinux } from './run.js';

export { planLinux, personalityFor, physicalPath, SANDBOX_UID, SANDBOX_GID } from './plan.js';
export type { LinuxPlanHost, LinuxSandboxSpec, SandboxOp, Namespaces } from './plan.js';
export { decideSandbox, type SandboxDecision, type SandboxDecisionInput } from './mode.js';
export { parseSandboxPaths, validateSandboxPath } from './sandbox-paths.js';
export { seccompPolicy, compileSeccomp, describeRule } from './seccomp.js';
export { explainLinux } from './explain.js';
export { probeLinux } from './probe.js';
export { LinuxRunningBuild, sealOutputs, killBuildUser, launcherRequest } from './run.js';
export { apparmorProfile } from './apparmor.js';
export { LinuxHeldBuild, startHeldLinux } from './held.js';
export { addPathsInside, removePathsInside } from './inside-paths.js';
export * from './errors.js';

const kinds = new Map<string, 'directory' | 'file' | 'symlink' | 'other'>();
const realpaths = new Map<string, string>();

/**
 * PlanHost backed by this machine's file system. `systemFeatures`: the
 * `system-features` setting; by default Nix's rule for kvm (offered when
 * /dev/kvm exists).
 */
export function localPlanHost(systemFeatures?: readonly string[]): LinuxPlanHost {
  return {
    systemFeatures: systemFeatures ?? (existsSync('/dev/kvm') ? ['kvm'] : []),
    lstat(p) {
      // What exists keeps its kind (store paths are immutable): remembered
      // for the process, since every build looks up its whole input closure.
      const known = kinds.get(p);
      if (known) return known;
      const st = lstatSync(p, { throwIfNoEntry: false });
      if (!st) return 'missing';
      const kind = st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
      kinds.set(p, kind);
      return kind;
    },
    realpath: (p) => {
      let r = realpaths.get(p);
      if (r === undefined) realpaths.set(p, (r = realpathSync(p)));
      return r;
    },
    platform: 'linux',
    arch: process.arch,
  };
}

function asLinux(spec: SandboxSpec): LinuxSandboxSpec {
  if (spec.backend !== 'linux') {
    throw new SandboxRequestInvalid(`a '${spec.backend}' sandbox spec was handed to the linux backend`, { backend: spec.backend });
  }
  return spec as LinuxSandboxSpec;
}

let probeCache: Promise<ProbeReport> | null = null;

export const linuxCaps: BackendCapabilities = {
  needsHashRewrite: false,
  canAddPathsWhileRunning: true,
  supportsUidRange: process.getuid?.() === 0,
  sandboxed: true,
};

export const linuxBackend: Backend = {
  name: 'linux',
  caps: linuxCaps,
  probe(): Promise<ProbeReport> {
    probeCache ??= probeLinux();
    return probeCache;
  },
  buildDirInSandbox(_hostBuildDir: string, settings: BackendSettings): string {
    return settings.sandboxBuildDir;
  },
  plan(req: BuildRequest, host: PlanHost): LinuxSandboxSpec {
    return planLinux(req, host);
  },
  explain(spec: SandboxSpec): string {
    return explainLinux(asLinux(spec));
  },
  start(spec: SandboxSpec): Promise<RunningBuild> {
    return startLinux(asLinux(spec));
  },
  startHeld(spec: SandboxSpec): Promise<HeldBuild> {
    return startHeldLinux(asLinux(spec));
  },
  async addPath(running: RunningBuild, spec: SandboxSpec, storePath: string): Promise<void> {
    asLinux(spec);
    if (!(running instanceof LinuxRunningBuild)) {
      throw new AddPathFailed(`cannot add '${storePath}': the build was not started by the linux backend`, { path: storePath });
    }
    await running.addPath(storePath);
  },
  realPathOfScratchOutput(spec: SandboxSpec, scratchPath: string): string {
    return scratchOnHost(asLinux(spec), scratchPath);
  },
  async cleanup(spec: SandboxSpec): Promise<void> {
    await discardChroot(asLinux(spec).chrootDir);
  },
};
