// The settings a build acts on, read once per invocation from Settings.
// Kept apart from goal.ts so that the CLI's no-op path loads nothing else.
import type { BackendSettings, SandboxMode } from '../../backends/backend.js';
import type { Settings } from '../config/settings.js';

/** The settings a build acts on, resolved once per invocation. */
export interface RunSettings {
  sandboxMode: SandboxMode;
  sandboxFallback: boolean;
  keepFailed: boolean;
  /** Seconds; 0 = no limit. */
  timeout: number;
  maxSilentTime: number;
  /** NIX_BUILD_CORES, 0 already replaced by the CPU count. */
  cores: number;
  maxJobs: number;
  system: string;
  extraPlatforms: string[];
  systemFeatures: string[];
  /** Where build dirs are created on the host. */
  buildDir: string;
  backendSettings: BackendSettings;
  sandboxPaths: string[];
  /** `sandbox-paths` was not set outright: the host's default (a working /bin/sh) comes first, as Nix's built-in one. */
  defaultSandboxPaths?: boolean;
  allowedImpureHostDeps: string[];
  autoOptimise: boolean;
  diffHook: string;
  runDiffHook: boolean;
  /** Run before each sandboxed build; may add sandbox paths. */
  preBuildHook: string;
  /** recursive-nix-allow-fixed-output: inner builds may build fixed-output derivations (default false). */
  recursiveAllowFixedOutput?: boolean;
  /** daemon-max-connections: connection handlers of a recursive build's daemon (default 16). */
  daemonMaxConnections?: number;
  /** Build users (root only; see build-users.ts). Absent = none. */
  buildUsersGroup?: string;
  autoAllocateUids?: boolean;
  startId?: number;
  idCount?: number;
}

export function runSettingsFrom(s: Settings, cpus: number): RunSettings {
  return {
    sandboxMode: s.get('sandbox'),
    sandboxFallback: s.get('sandbox-fallback'),
    keepFailed: s.get('keep-failed'),
    timeout: s.get('timeout'),
    maxSilentTime: s.get('max-silent-time'),
    cores: s.get('cores') === 0 ? cpus : s.get('cores'),
    maxJobs: s.get('max-jobs'),
    system: s.get('system'),
    extraPlatforms: s.get('extra-platforms'),
    systemFeatures: s.get('system-features'),
    buildDir: s.get('build-dir'),
    backendSettings: {
      sandboxBuildDir: s.get('sandbox-build-dir'),
      sandboxDevShmSize: s.get('sandbox-dev-shm-size'),
      filterSyscalls: s.get('filter-syscalls'),
      allowNewPrivileges: s.get('allow-new-privileges'),
      useCgroups: s.get('use-cgroups'),
      darwinLogSandboxViolations: s.get('darwin-log-sandbox-violations'),
      sandboxFallback: s.get('sandbox-fallback'),
    },
    sandboxPaths: s.get('sandbox-paths'),
    defaultSandboxPaths: !s.replaced.has('sandbox-paths'),
    allowedImpureHostDeps: s.get('allowed-impure-host-deps'),
    autoOptimise: s.get('auto-optimise-store'),
    diffHook: s.get('diff-hook'),
    runDiffHook: s.get('run-diff-hook'),
    preBuildHook: s.get('pre-build-hook'),
    recursiveAllowFixedOutput: s.get('recursive-nix-allow-fixed-output'),
    daemonMaxConnections: s.get('daemon-max-connections'),
    buildUsersGroup: s.get('build-users-group'),
    autoAllocateUids: s.get('auto-allocate-uids'),
    startId: s.get('start-id'),
    idCount: s.get('id-count'),
  };
}
