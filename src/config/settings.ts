// Settings, with Nix's names where Nix has one. Sources, later ones win:
//   built-in defaults < config file (DRVBOX_CONFIG, or $XDG_CONFIG_HOME/drvbox/nix.conf)
//   < command-line `--option NAME VALUE` and dedicated flags.
// `extra-NAME` appends to list settings.
import { defineError } from '../errors.js';
import { BadConfig, parseNixConf, type ConfigAssignment } from './nix-conf.js';

export class UnknownSetting extends defineError('UnknownSetting', 'E_UNKNOWN_SETTING') {}

type Kind = 'bool' | 'int' | 'string' | 'list' | 'sandbox' | 'jobs' | 'path';

interface SettingDef {
  kind: Kind;
  description: string;
}

/** Every setting drvbox knows, with its kind. Defaults are in `defaultValues`. */
export const SETTINGS = {
  sandbox: { kind: 'sandbox', description: 'true, false or relaxed (relaxed honours __noChroot and __sandboxProfile)' },
  'sandbox-paths': { kind: 'list', description: 'host paths visible in the sandbox: TARGET=SOURCE, optional with a trailing ?' },
  'sandbox-fallback': { kind: 'bool', description: 'build unsandboxed (with a warning) when the host cannot sandbox' },
  'sandbox-build-dir': { kind: 'path', description: 'the build directory as the builder sees it' },
  'sandbox-dev-shm-size': { kind: 'string', description: 'size of the /dev/shm tmpfs in the sandbox' },
  'allowed-impure-host-deps': { kind: 'list', description: 'host path prefixes __impureHostDeps may name' },
  'filter-syscalls': { kind: 'bool', description: 'load the seccomp filter (no setuid/setgid bits, no xattrs)' },
  'allow-new-privileges': { kind: 'bool', description: 'let builders gain privileges (setuid programs)' },
  'max-jobs': { kind: 'jobs', description: 'builds run at once (a number, or auto = number of CPUs)' },
  cores: { kind: 'int', description: 'NIX_BUILD_CORES for each build (0 = all CPUs)' },
  system: { kind: 'string', description: 'the platform this machine builds for' },
  'extra-platforms': { kind: 'list', description: 'other platforms this machine can build for' },
  'system-features': { kind: 'list', description: 'features derivations may require (requiredSystemFeatures)' },
  'keep-failed': { kind: 'bool', description: 'keep the build directory of failed builds' },
  'keep-going': { kind: 'bool', description: 'keep building other derivations after a failure' },
  timeout: { kind: 'int', description: 'seconds a build may run (0 = no limit)' },
  'max-silent-time': { kind: 'int', description: 'seconds a build may print nothing (0 = no limit)' },
  'diff-hook': { kind: 'string', description: 'program run with two differing outputs in check mode' },
  'run-diff-hook': { kind: 'bool', description: 'run diff-hook' },
  'pre-build-hook': { kind: 'string', description: 'program that may add extra-sandbox-paths per derivation' },
  'build-users-group': { kind: 'string', description: 'group of the build users (root only; empty = none)' },
  'auto-allocate-uids': { kind: 'bool', description: 'hand out uid ranges to builds instead of build users' },
  'start-id': { kind: 'int', description: 'first uid/gid handed out by auto-allocate-uids' },
  'id-count': { kind: 'int', description: 'how many uids/gids auto-allocate-uids hands out (a multiple of 65536)' },
  'use-cgroups': { kind: 'bool', description: 'run each build in its own cgroup' },
  'darwin-log-sandbox-violations': { kind: 'bool', description: 'log sandbox denials on macOS' },
  'auto-optimise-store': { kind: 'bool', description: 'hard-link identical files in new outputs' },
  'trusted-users': { kind: 'list', description: 'users the daemon trusts' },
  'allowed-users': { kind: 'list', description: 'users that may connect to the daemon' },
  'recursive-nix-allow-fixed-output': {
    kind: 'bool',
    description: 'let recursive builds build fixed-output derivations (gives them the network)',
  },
  'daemon-max-connections': { kind: 'int', description: 'concurrent connection handlers of a daemon' },
  'fsync-metadata': { kind: 'bool', description: 'fsync the database on commit' },
  'experimental-features': { kind: 'list', description: 'accepted for compatibility with nix.conf' },
  'build-dir': { kind: 'path', description: 'where build directories are created on the host (default: TMPDIR)' },
} satisfies Record<string, SettingDef>;

export type SettingName = keyof typeof SETTINGS;

export type SandboxSetting = 'true' | 'false' | 'relaxed';

export interface SettingValues {
  sandbox: SandboxSetting;
  'sandbox-paths': string[];
  'sandbox-fallback': boolean;
  'sandbox-build-dir': string;
  'sandbox-dev-shm-size': string;
  'allowed-impure-host-deps': string[];
  'filter-syscalls': boolean;
  'allow-new-privileges': boolean;
  'max-jobs': number;
  cores: number;
  system: string;
  'extra-platforms': string[];
  'system-features': string[];
  'keep-failed': boolean;
  'keep-going': boolean;
  timeout: number;
  'max-silent-time': number;
  'diff-hook': string;
  'run-diff-hook': boolean;
  'pre-build-hook': string;
  'build-users-group': string;
  'auto-allocate-uids': boolean;
  'start-id': number;
  'id-count': number;
  'use-cgroups': boolean;
  'darwin-log-sandbox-violations': boolean;
  'auto-optimise-store': boolean;
  'trusted-users': string[];
  'allowed-users': string[];
  'recursive-nix-allow-fixed-output': boolean;
  'daemon-max-connections': number;
  'fsync-metadata': boolean;
  'experimental-features': string[];
  'build-dir': string;
}

export interface HostFacts {
  platform: NodeJS.Platform;
  arch: string;
  cpus: number;
  tmpdir: string;
  hasKvm: boolean;
}

export function nixSystem(platform: NodeJS.Platform, arch: string): string {
  const a = arch === 'x64' ? 'x86_64' : arch === 'arm64' ? 'aarch64' : arch === 'ia32' ? 'i686' : arch;
  return `${a}-${platform}`;
}

export function defaultValues(host: HostFacts): SettingValues {
  const features = ['nixos-test', 'benchmark', 'big-parallel', 'recursive-nix'];
  if (host.hasKvm) features.push('kvm');
  return {
    sandbox: 'true',
    'sandbox-paths': [],
    'sandbox-fallback': true,
    'sandbox-build-dir': '/build',
    'sandbox-dev-shm-size': '50%',
    'allowed-impure-host-deps': [],
    'filter-syscalls': true,
    'allow-new-privileges': false,
    'max-jobs': host.cpus,
    cores: 0,
    system: nixSystem(host.platform, host.arch),
    'extra-platforms': host.platform === 'linux' && host.arch === 'x64' ? ['i686-linux'] : [],
    'system-features': features,
    'keep-failed': false,
    'keep-going': false,
    timeout: 0,
    'max-silent-time': 0,
    'diff-hook': '',
    'run-diff-hook': false,
    'pre-build-hook': '',
    'build-users-group': '',
    'auto-allocate-uids': false,
    'start-id': 872415232,
    'id-count': 128 * 65536,
    'use-cgroups': false,
    'darwin-log-sandbox-violations': false,
    'auto-optimise-store': false,
    'trusted-users': ['root'],
    'allowed-users': ['*'],
    'recursive-nix-allow-fixed-output': false,
    'daemon-max-connections': 16,
    'fsync-metadata': false,
    'experimental-features': [],
    'build-dir': host.tmpdir,
  };
}

/** Settings Nix has that drvbox accepts in nix.conf but does not act on. */
const IGNORED = new Set([
  'substituters',
  'extra-substituters',
  'trusted-public-keys',
  'require-sigs',
  'builders',
  'build-use-sandbox',
  'show-trace',
  'warn-dirty',
  'keep-outputs',
  'keep-derivations',
]);

function parseValue(name: SettingName, raw: string, origin: string, host: HostFacts): unknown {
  const kind = (SETTINGS[name] as SettingDef).kind;
  const bad = (what: string) =>
    new BadConfig(`${origin}: setting '${name}' has invalid value '${raw}' (expected ${what})`, { name, value: raw, origin });
  switch (kind) {
    case 'bool':
      if (raw === 'true') return true;
      if (raw === 'false') return false;
      throw bad('true or false');
    case 'int':
      if (!/^\d+$/.test(raw)) throw bad('a non-negative integer');
      return Number(raw);
    case 'jobs':
      if (raw === 'auto') return host.cpus;
      if (!/^\d+$/.test(raw)) throw bad("a number or 'auto'");
      return Number(raw);
    case 'sandbox':
      if (raw === 'true' || raw === 'false' || raw === 'relaxed') return raw;
      throw bad('true, false or relaxed');
    case 'list':
      return raw.split(/\s+/).filter(Boolean);
    case 'path':
      if (!raw.startsWith('/')) throw bad('an absolute path');
      return raw.replace(/\/+$/, '') || '/';
    case 'string':
      return raw;
  }
}

export function isSettingName(name: string): name is SettingName {
  return Object.prototype.hasOwnProperty.call(SETTINGS, name);
}

export class Settings {
  readonly values: SettingValues;
  /** Where each non-default value came from, for `doctor`. */
  readonly origins = new Map<SettingName, string>();
  /** Settings given a value outright (not only `extra-` appends): their default is gone. */
  readonly replaced = new Set<SettingName>();
  readonly warnings: string[] = [];

  constructor(readonly host: HostFacts) {
    this.values = defaultValues(host);
  }

  get<K extends SettingName>(name: K): SettingValues[K] {
    return this.values[name];
  }

  apply(a: ConfigAssignment, strict: boolean): void {
    if (!isSettingName(a.name)) {
      if (IGNORED.has(a.name) || IGNORED.has('extra-' + a.name)) return;
      const msg = `${a.origin}: unknown setting '${a.append ? 'extra-' : ''}${a.name}'`;
      if (strict) throw new UnknownSetting(msg, { name: a.name, origin: a.origin });
      this.warnings.push(msg);
      return;
    }
    const v = parseValue(a.name, a.value, a.origin, this.host);
    const values = this.values as unknown as Record<string, unknown>;
    if (a.append) {
      const cur = values[a.name];
      if (!Array.isArray(cur)) {
        throw new BadConfig(`${a.origin}: 'extra-${a.name}' only works for list settings`, { name: a.name });
      }
      values[a.name] = [...cur, ...(v as string[])];
    } else {
      values[a.name] = v;
      this.replaced.add(a.name);
    }
    this.origins.set(a.name, a.origin);
  }

  /** `--option NAME VALUE` (also `extra-NAME`): unknown names are errors. */
  setOption(name: string, value: string): void {
    const append = name.startsWith('extra-') && !isSettingName(name);
    this.apply({ name: append ? name.slice(6) : name, value, append, origin: `--option ${name}` }, true);
  }

  loadText(text: string, origin: string, readFile: (p: string) => string | null): void {
    const src = {
      readFile,
      dirname: (p: string) => p.slice(0, Math.max(p.lastIndexOf('/'), 0)) || '/',
      resolve: (dir: string, p: string) => (p.startsWith('/') ? p : `${dir}/${p}`),
    };
    for (const a of parseNixConf(text, origin, src)) this.apply(a, false);
  }

  /** Platforms this machine builds: system + extra-platforms (+ builtin). */
  platforms(): string[] {
    return [this.values.system, ...this.values['extra-platforms'], 'builtin'];
  }
}
