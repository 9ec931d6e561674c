// Golden profiles: the exact .sb text and sandbox-exec argv planned for a set
// of derivations, compared with test/fixtures/darwin-profiles/ (rewritten by
// DRVBOX_ACCEPT_GOLDEN=1). Every profile must also read and evaluate.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { planDarwin, type DarwinBuildRequest } from '../../../backends/darwin/plan.js';
import { isDrvboxError } from '../../../src/errors.js';
import { evaluateProfile } from '../../helpers/sbpl/evaluator.js';
import { BASE_PATHS, BUILD_DIR, fakeHost, golden, request, storePath, type Kind } from './fixtures.js';

interface Case {
  name: string;
  req: DarwinBuildRequest;
  paths?: Record<string, Kind>;
  /** Expected error code; the message goes to the golden file. */
  error?: string;
}

const closure = Array.from({ length: 5000 }, (_, i) => storePath(`dep-${i}`, `dependency-number-${i}-1.0`));
const WEIRD_DIR = '/Users/o\'brien "quoted"/build dir ✓/x\\y';
const INJECTION = '/opt/evil") (allow default) (literal "';

const cases: Case[] = [
  { name: 'plain', req: request() },
  { name: 'fixed-output', req: request({ fixedOutput: true, drvName: 'src.tar.gz' }) },
  { name: 'local-networking', req: request({ allowLocalNetworking: true }) },
  {
    name: 'impure-host-deps-allowed',
    req: request({
      impureHostDeps: ['/usr/lib/libSystem.B.dylib', '/System/Library/Frameworks/CoreFoundation.framework'],
      allowedImpureHostDeps: ['/usr/lib', '/System/Library/Frameworks'],
    }),
  },
  {
    name: 'impure-host-deps-disallowed',
    req: request({ impureHostDeps: ['/usr/local/lib/libssl.dylib'], allowedImpureHostDeps: ['/usr/lib', '/System/Library'] }),
    error: 'E_DARWIN_IMPURE_HOST_DEP',
  },
  {
    name: 'impure-host-deps-optional-missing',
    req: request({ impureHostDeps: ['/usr/lib/libSystem.B.dylib', '/usr/lib/system/libunc.dylib'], allowedImpureHostDeps: ['/usr/lib'] }),
    paths: { ...BASE_PATHS, '/usr/lib/libSystem.B.dylib': 'missing' as Kind },
  },
  {
    name: 'files-vs-directories',
    req: request({
      sandboxPaths: [
        { target: '/bin/sh', source: '/bin/sh', optional: false },
        { target: '/usr/lib', source: '/usr/lib', optional: false },
        { target: '/usr/bin/env', source: '/usr/bin/env', optional: false },
        { target: '/opt/not-here', source: '/opt/not-here', optional: true },
      ],
    }),
    paths: { ...BASE_PATHS, '/usr/bin/env': 'symlink' },
  },
  { name: 'relaxed-extra-profile', req: request({ sandboxMode: 'relaxed', additionalSandboxProfile: '(allow mach-lookup (global-name "com.apple.coreservices.launchservicesd"))\n' }) },
  { name: 'strict-extra-profile', req: request({ additionalSandboxProfile: '(allow network*)' }), error: 'E_DARWIN_SANDBOX_PROFILE' },
  { name: 'mismatched-mapping', req: request({ sandboxPaths: [{ target: '/bin/sh', source: '/nix/store/x-busybox/bin/busybox', optional: false }] }), error: 'E_DARWIN_MAPPED_PATH' },
  {
    name: 'quotes-spaces-unicode',
    req: request({
      sandboxPaths: [
        { target: WEIRD_DIR, source: WEIRD_DIR, optional: false },
        { target: INJECTION, source: INJECTION, optional: false },
        { target: '/Library/Application Support/tool ünïcødé', source: '/Library/Application Support/tool ünïcødé', optional: false },
      ],
    }),
    paths: { ...BASE_PATHS, [WEIRD_DIR]: 'directory', [INJECTION]: 'file', '/Library/Application Support/tool ünïcødé': 'directory' },
  },
  {
    name: 'closure-5000',
    req: request({ inputPaths: closure }),
    paths: { ...BASE_PATHS, ...Object.fromEntries(closure.map((p, i) => [p, i % 7 === 0 ? 'file' : 'directory'] as const)) },
  },
  { name: 'unsandboxed', req: request({ sandboxMode: 'false', additionalSandboxProfile: '(allow network*)' }) },
  { name: 'relaxed-fixed-output', req: request({ sandboxMode: 'relaxed', fixedOutput: true }) },
  {
    name: 'build-user-x86_64',
    req: request({ system: 'x86_64-darwin', buildUser: { uid: 30001, gid: 30000, uidCount: 1, supplementaryGids: [] } }),
  },
  { name: 'log-violations', req: request({ settings: { ...request().settings, darwinLogSandboxViolations: true } }) },
  { name: 'no-chroot-strict', req: request({ noChroot: true }), error: 'E_DARWIN_NO_CHROOT' },
  { name: 'recursive-nix-sandboxed', req: request({ requiredSystemFeatures: ['recursive-nix'] }), error: 'E_DARWIN_RECURSIVE_NIX' },
  { name: 'uid-range', req: request({ requiredSystemFeatures: ['uid-range'] }), error: 'E_DARWIN_UID_RANGE' },
  { name: 'diverted-store', req: request({ realStoreDir: '/Users/me/.local/share/drvbox/nix/store' }), error: 'E_DARWIN_DIVERTED_STORE' },
  {
    name: 'unsafe-path-newline',
    req: request({ sandboxPaths: [{ target: '/opt/a\nb', source: '/opt/a\nb', optional: false }] }),
    paths: { ...BASE_PATHS, '/opt/a\nb': 'file' },
    error: 'E_SBPL_UNSAFE_PATH',
  },
];

describe('darwin golden profiles', () => {
  test('there are at least 12 profile cases and the error cases the issue lists', () => {
    assert.ok(cases.filter((c) => !c.error).length >= 12);
    for (const n of ['strict-extra-profile', 'mismatched-mapping', 'impure-host-deps-disallowed']) assert.ok(cases.some((c) => c.name === n && c.error));
  });

  for (const c of cases) {
    test(c.name, () => {
      const host = fakeHost(c.paths ?? BASE_PATHS);
      if (c.error) {
        let err: unknown;
        try {
          planDarwin(c.req, host);
        } catch (e) {
          err = e;
        }
        assert.ok(isDrvboxError(err), `expected a drvbox error, got ${String(err)}`);
        assert.equal(err.code, c.error);
        golden(`${c.name}.error`, `${err.code}\n${err.message}\n`);
        return;
      }
      const spec = planDarwin(c.req, host);
      golden(`${c.name}.sb`, spec.profile);
      golden(`${c.name}.argv`, JSON.stringify({ path: spec.spawn.path, argv: spec.spawn.argv, cwd: spec.spawn.cwd }, null, 2) + '\n');
      const policy = evaluateProfile(spec.profile, Object.fromEntries(spec.params));
      assert.equal(policy.version, 1);
      assert.equal(spec.spawn.cwd, BUILD_DIR);
    });
  }
});
