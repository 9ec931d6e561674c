// The builder's spawn, described as plain data: the executable, argv, envp,
// posix_spawn file actions and attributes, the CPU preference and the sysctl
// calls to make first. spawn-exec.ts carries a description out; tests and
// `explain` read it. Pure.
import { posix } from 'node:path';
import { DarwinBadBuilder } from './errors.js';

export const SANDBOX_EXEC = '/usr/bin/sandbox-exec';

// <mach/machine.h>
export const CPU_ARCH_ABI64 = 0x01000000;
export const CPU_TYPE_X86 = 7;
export const CPU_TYPE_ARM = 12;
export const CPU_TYPE_X86_64 = CPU_TYPE_X86 | CPU_ARCH_ABI64;
export const CPU_TYPE_ARM64 = CPU_TYPE_ARM | CPU_ARCH_ABI64;

/** Set to 0 before spawning an aarch64-darwin builder: a Rosetta-translated drvbox would otherwise pass x86_64 preference on to its children. */
export const ARCH_AFFINITY_SYSCTL = 'kern.curproc_arch_affinity';

// <spawn.h> (Darwin values)
export const POSIX_SPAWN_SETPGROUP = 0x0002;
export const POSIX_SPAWN_SETSIGDEF = 0x0004;
export const POSIX_SPAWN_SETSIGMASK = 0x0008;
export const POSIX_SPAWN_CLOEXEC_DEFAULT = 0x4000;

export const O_RDONLY = 0;

/** Where a file action takes its file descriptor from. */
export type FdSource = 'log-write';

export type FileAction =
  | { op: 'open'; fd: number; path: string; oflag: number; mode: number }
  | { op: 'dup2'; from: FdSource; fd: number }
  | { op: 'chdir'; path: string };

export interface SpawnCredentials {
  uid: number;
  gid: number;
  /** Supplementary groups, the primary group first. */
  groups: number[];
}

export interface SpawnDescription {
  /** For messages. */
  drvPath: string;
  /** Executable passed to posix_spawn. */
  path: string;
  argv: string[];
  envp: string[];
  cwd: string;
  fileActions: FileAction[];
  /** posix_spawnattr_setflags, and the names of the bits set. */
  flags: number;
  flagNames: string[];
  /** posix_spawnattr_setpgroup: 0 = the child leads a new group. */
  pgroup: 0;
  /** posix_spawnattr_setsigdefault with every catchable signal: Node ignores SIGPIPE, builders must not inherit that. */
  resetSignals: true;
  /** posix_spawnattr_setsigmask with the empty set. */
  clearSignalMask: true;
  /** posix_spawnattr_setbinpref_np, in order; empty = the kernel's default. */
  binpref: number[];
  /** sysctlbyname writes of an int, made by drvbox itself before spawning. */
  sysctls: Array<{ name: string; value: number }>;
  /** Build user (posix_spawnattr_set_{uid,gid,groups}_np), or null to keep ours. */
  credentials: SpawnCredentials | null;
}

export interface SpawnInput {
  drvPath: string;
  system: string;
  builder: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /** Profile file for sandbox-exec; null runs the builder itself. */
  profilePath: string | null;
  params: Array<[string, string]>;
  credentials: SpawnCredentials | null;
}

/** CPU types to prefer for the derivation's system: the right slice of universal binaries, and Rosetta for x86_64 on Apple silicon. */
export function binprefFor(system: string): number[] {
  if (system === 'aarch64-darwin') return [CPU_TYPE_ARM64];
  if (system === 'x86_64-darwin') return [CPU_TYPE_X86_64];
  return [];
}

export function sysctlsFor(system: string): Array<{ name: string; value: number }> {
  return system === 'aarch64-darwin' ? [{ name: ARCH_AFFINITY_SYSCTL, value: 0 }] : [];
}

function checkCString(value: string, what: string, drvPath: string): void {
  if (value.includes('\0')) {
    throw new DarwinBadBuilder(`derivation '${drvPath}': ${what} ${JSON.stringify(value)} contains a NUL byte`, { drvPath, what, value });
  }
}

/** Refuses what posix_spawn cannot carry or sandbox-exec would misread. */
export function validateBuilder(input: Pick<SpawnInput, 'drvPath' | 'builder' | 'args' | 'env'>): void {
  const { drvPath, builder } = input;
  if (builder.startsWith('builtin:')) {
    throw new DarwinBadBuilder(`derivation '${drvPath}': builtin builder '${builder}' runs inside drvbox, not through a sandbox backend`, { drvPath, builder });
  }
  if (builder === '' || builder.startsWith('-')) {
    // sandbox-exec would read a leading '-' as one of its own options.
    throw new DarwinBadBuilder(`derivation '${drvPath}': builder ${JSON.stringify(builder)} cannot be run (empty or starting with '-')`, { drvPath, builder });
  }
  checkCString(builder, 'builder', drvPath);
  for (const a of input.args) checkCString(a, 'builder argument', drvPath);
  for (const [k, v] of Object.entries(input.env)) {
    if (k === '' || k.includes('=')) {
      throw new DarwinBadBuilder(`derivation '${drvPath}': environment variable name ${JSON.stringify(k)} is empty or contains '='`, { drvPath, name: k });
    }
    checkCString(k, 'environment variable name', drvPath);
    checkCString(v, `value of environment variable '${k}'`, drvPath);
  }
}

export function describeSpawn(input: SpawnInput): SpawnDescription {
  validateBuilder(input);
  let path: string;
  let argv: string[];
  if (input.profilePath !== null) {
    path = SANDBOX_EXEC;
    argv = ['sandbox-exec', '-f', input.profilePath];
    for (const [k, v] of input.params) argv.push('-D', `${k}=${v}`);
    argv.push(input.builder, ...input.args);
  } else {
    path = input.builder;
    argv = [posix.basename(input.builder), ...input.args];
  }
  const flagBits: Array<[string, number]> = [
    ['POSIX_SPAWN_SETPGROUP', POSIX_SPAWN_SETPGROUP],
    ['POSIX_SPAWN_SETSIGDEF', POSIX_SPAWN_SETSIGDEF],
    ['POSIX_SPAWN_SETSIGMASK', POSIX_SPAWN_SETSIGMASK],
    // Only the descriptors set up by the file actions reach the builder.
    ['POSIX_SPAWN_CLOEXEC_DEFAULT', POSIX_SPAWN_CLOEXEC_DEFAULT],
  ];
  return {
    drvPath: input.drvPath,
    path,
    argv,
    envp: Object.entries(input.env).map(([k, v]) => `${k}=${v}`),
    cwd: input.cwd,
    fileActions: [
      { op: 'open', fd: 0, path: '/dev/null', oflag: O_RDONLY, mode: 0 },
      { op: 'dup2', from: 'log-write', fd: 1 },
      { op: 'dup2', from: 'log-write', fd: 2 },
      { op: 'chdir', path: input.cwd },
    ],
    flags: flagBits.reduce((acc, [, bit]) => acc | bit, 0),
    flagNames: flagBits.map(([name]) => name),
    pgroup: 0,
    resetSignals: true,
    clearSignalMask: true,
    binpref: binprefFor(input.system),
    sysctls: sysctlsFor(input.system),
    credentials: input.credentials,
  };
}
