// Shared fixtures of the darwin backend tests: a fake macOS file system for
// PlanHost, deterministic store paths and a BuildRequest to vary.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import type { BackendSettings, PlanHost } from '../../../backends/backend.js';
import type { DarwinBuildRequest } from '../../../backends/darwin/plan.js';
import { nix32Encode } from '../../../src/format/nix32.js';
import { compressHash } from '../../../src/format/hash.js';
import { REPO_ROOT } from '../../helpers/host.js';

export const STORE = '/nix/store';

/** A store path with a hash part derived from `seed`: stable across runs. */
export function storePath(seed: string, name = seed): string {
  const digest = createHash('sha256').update(seed).digest();
  return `${STORE}/${nix32Encode(compressHash(digest, 20))}-${name}`;
}

export const BASH = storePath('bash', 'bash-5.2');
export const COREUTILS = storePath('coreutils', 'coreutils-9.4');
export const BUILDER_SH = storePath('builder', 'builder.sh');
export const OUT = storePath('hello-out', 'hello-2.12');
export const DRV = storePath('hello-drv', 'hello-2.12.drv');
export const BUILD_DIR = '/private/tmp/nix-build-hello-2.12-1';

export type Kind = 'file' | 'directory' | 'symlink' | 'other';

/**
 * PlanHost over a map of existing paths. realpath resolves macOS's /tmp,
 * /var and /etc links into /private, like the real thing.
 */
export function fakeHost(paths: Record<string, Kind>): PlanHost & { lstatCalls: string[] } {
  const calls: string[] = [];
  return {
    platform: 'darwin',
    arch: 'arm64',
    lstatCalls: calls,
    lstat(p) {
      calls.push(p);
      return paths[p] ?? 'missing';
    },
    realpath(p) {
      for (const link of ['/tmp', '/var', '/etc']) {
        if (p === link || p.startsWith(link + '/')) return '/private' + p;
      }
      return p;
    },
  };
}

export const BASE_PATHS: Record<string, Kind> = {
  [BASH]: 'directory',
  [COREUTILS]: 'directory',
  [BUILDER_SH]: 'file',
  '/bin/sh': 'file',
  '/usr/lib': 'directory',
  '/usr/lib/libSystem.B.dylib': 'file',
  '/System/Library/Frameworks/CoreFoundation.framework': 'directory',
  '/private/tmp': 'directory',
  [BUILD_DIR]: 'directory',
};

export const SETTINGS: BackendSettings = {
  sandboxBuildDir: '/build',
  sandboxDevShmSize: '50%',
  filterSyscalls: true,
  allowNewPrivileges: false,
  useCgroups: false,
  darwinLogSandboxViolations: false,
  sandboxFallback: false,
};

export function request(over: Partial<DarwinBuildRequest> = {}): DarwinBuildRequest {
  return {
    drvPath: DRV,
    drvName: 'hello-2.12',
    system: 'aarch64-darwin',
    builder: `${BASH}/bin/bash`,
    args: ['-e', BUILDER_SH],
    env: {
      builder: `${BASH}/bin/bash`,
      name: 'hello-2.12',
      out: OUT,
      system: 'aarch64-darwin',
      NIX_BUILD_TOP: BUILD_DIR,
      TMPDIR: BUILD_DIR,
      HOME: '/homeless-shelter',
      PATH: '/path-not-set',
    },
    storeDir: STORE,
    realStoreDir: STORE,
    buildDirHost: BUILD_DIR,
    buildDirSandbox: BUILD_DIR,
    inputPaths: [BASH, COREUTILS, BUILDER_SH],
    scratchOutputs: { out: OUT },
    fixedOutput: false,
    sandboxPaths: [],
    impureHostDeps: [],
    allowedImpureHostDeps: [],
    requiredSystemFeatures: [],
    additionalSandboxProfile: '',
    allowLocalNetworking: false,
    sandboxMode: 'true',
    settings: SETTINGS,
    buildUser: null,
    daemonSocketHost: null,
    globalTmpDir: '/tmp',
    ...over,
  };
}

export const GOLDEN_DIR = join(REPO_ROOT, 'test', 'fixtures', 'darwin-profiles');

/**
 * Compares `actual` with the golden file, or rewrites it when
 * DRVBOX_ACCEPT_GOLDEN=1.
 */
export function golden(name: string, actual: string): void {
  const file = join(GOLDEN_DIR, name);
  if (process.env.DRVBOX_ACCEPT_GOLDEN === '1') {
    mkdirSync(GOLDEN_DIR, { recursive: true });
    writeFileSync(file, actual);
    return;
  }
  assert.ok(existsSync(file), `golden file ${file} is missing (run with DRVBOX_ACCEPT_GOLDEN=1 to create it)`);
  const expected = readFileSync(file, 'utf8');
  if (expected !== actual) {
    const a = actual.split('\n');
    const e = expected.split('\n');
    const line = a.findIndex((l, i) => l !== e[i]);
    assert.fail(`${name} differs from the golden file at line ${line + 1}:\n  expected: ${JSON.stringify(e[line])}\n  actual:   ${JSON.stringify(a[line])}\n(DRVBOX_ACCEPT_GOLDEN=1 rewrites it)`);
  }
}
