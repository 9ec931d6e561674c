// plan() decisions beyond the golden files: precedence, optional paths,
// directory safety, socket length, refusals.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { planDarwin, canonPath, parentsOf } from '../../../backends/darwin/plan.js';
import { isDrvboxError } from '../../../src/errors.js';
import { BASE_PATHS, BASH, BUILD_DIR, fakeHost, request, type Kind } from './fixtures.js';

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.ok(isDrvboxError(e), String(e));
    return `${e.code}: ${e.message}`;
  }
  return 'no error';
}

describe('planDarwin', () => {
  test('path helpers', () => {
    assert.equal(canonPath('/a//b/./c/../d/'), '/a/b/d');
    assert.equal(canonPath('/'), '/');
    assert.deepEqual(parentsOf('/nix/store/x'), ['/nix/store', '/nix', '/']);
  });

  test('each path is looked up once, input paths win over an optional sandbox path of the same name', () => {
    const host = fakeHost(BASE_PATHS);
    const spec = planDarwin(request({ sandboxPaths: [{ target: BASH, source: BASH, optional: true }, { target: '/bin/sh', source: '/bin/sh', optional: false }] }), host);
    assert.equal(host.lstatCalls.filter((p) => p === BASH).length, 1);
    assert.deepEqual(spec.allowed.map((a) => `${a.kind} ${a.path}`).slice(0, 1), ['literal /bin/sh']);
    assert.equal(new Set(spec.allowed.map((a) => a.path)).size, spec.allowed.length);
  });

  test('missing: optional skipped and reported, required and inputs refused', () => {
    const spec = planDarwin(request({ sandboxPaths: [{ target: '/opt/x', source: '/opt/x', optional: true }] }), fakeHost(BASE_PATHS));
    assert.deepEqual(spec.skipped, ['/opt/x']);
    assert.ok(!spec.ancestry.includes('/opt'), 'a skipped path adds no parents');
    assert.match(code(() => planDarwin(request({ sandboxPaths: [{ target: '/opt/x', source: '/opt/x', optional: false }] }), fakeHost(BASE_PATHS))), /^E_DARWIN_PATH_MISSING: .*sandbox path '\/opt\/x' does not exist$/);
    const noBash: Record<string, Kind> = { ...BASE_PATHS, [BASH]: 'missing' as Kind };
    assert.match(code(() => planDarwin(request(), fakeHost(noBash))), /^E_DARWIN_PATH_MISSING: .*input path '.*-bash-5.2' does not exist$/);
  });

  test('impure host deps: prefix match by whole components, absolute only, "/" allows all', () => {
    assert.match(code(() => planDarwin(request({ impureHostDeps: ['/usr/libexec/x'], allowedImpureHostDeps: ['/usr/lib'] }), fakeHost(BASE_PATHS))), /^E_DARWIN_IMPURE_HOST_DEP/);
    assert.match(code(() => planDarwin(request({ impureHostDeps: ['usr/lib/x'], allowedImpureHostDeps: ['/'] }), fakeHost(BASE_PATHS))), /^E_DARWIN_BAD_SANDBOX_PATH/);
    const spec = planDarwin(request({ impureHostDeps: ['/usr/lib/libSystem.B.dylib'], allowedImpureHostDeps: ['/'] }), fakeHost(BASE_PATHS));
    assert.ok(spec.allowed.some((a) => a.kind === 'literal' && a.path === '/usr/lib/libSystem.B.dylib'));
  });

  test('temporary and build directories that would open too much are refused', () => {
    assert.match(code(() => planDarwin(request({ globalTmpDir: '/' }), fakeHost(BASE_PATHS))), /^E_DARWIN_UNSAFE_DIR: .*temporary directory '\/' would give the build the whole of '\/'/);
    assert.match(code(() => planDarwin(request({ globalTmpDir: '/nix' }), fakeHost(BASE_PATHS))), /^E_DARWIN_UNSAFE_DIR/);
    assert.match(code(() => planDarwin(request({ globalTmpDir: '/Users' }), fakeHost(BASE_PATHS))), /^E_DARWIN_UNSAFE_DIR/);
    assert.match(code(() => planDarwin(request({ buildDirHost: '/nix/store/tmp-build', buildDirSandbox: '/nix/store/tmp-build' }), fakeHost(BASE_PATHS))), /^E_DARWIN_UNSAFE_DIR: .*build directory/);
    assert.equal(planDarwin(request({ globalTmpDir: '/var/folders/xy/abc/T/' }), fakeHost(BASE_PATHS)).globalTmpDir, '/private/var/folders/xy/abc/T');
    assert.match(code(() => planDarwin(request({ buildDirSandbox: '/build' }), fakeHost(BASE_PATHS))), /^E_DARWIN_MAPPED_PATH: .*cannot appear as '\/build'/);
  });

  test('recursive builds: refused sandboxed; unsandboxed the socket path must fit', () => {
    const ok = planDarwin(request({ sandboxMode: 'false', requiredSystemFeatures: ['recursive-nix'], daemonSocketHost: `${BUILD_DIR}/.nix-socket` }), fakeHost(BASE_PATHS));
    assert.equal(ok.sandboxed, false);
    const long = `/private/var/folders/6z/3kq2vxl94pd3_5g0bb8gm4fr0000gn/T/nix-build-some-long-derivation-name-1.0-1/.nix-socket`;
    assert.match(code(() => planDarwin(request({ sandboxMode: 'false', requiredSystemFeatures: ['recursive-nix'], daemonSocketHost: long }), fakeHost(BASE_PATHS))), /^E_DARWIN_SOCKET_PATH: .* has 110 bytes, more than the 103 macOS allows$/);
  });

  test('__sandboxProfile: must be complete forms; ignored (with a note) when unsandboxed', () => {
    assert.match(code(() => planDarwin(request({ sandboxMode: 'relaxed', additionalSandboxProfile: '(allow network*' }), fakeHost(BASE_PATHS))), /^E_DARWIN_SANDBOX_PROFILE_INVALID: .*\(1 unclosed '\('\)$/);
    const s = planDarwin(request({ sandboxMode: 'relaxed', noChroot: true, additionalSandboxProfile: '(allow network*)', allowLocalNetworking: true }), fakeHost(BASE_PATHS));
    assert.deepEqual(s.notes, ['__sandboxProfile is ignored: this build runs without the sandbox', '__darwinAllowLocalNetworking has no effect: this build runs without the sandbox']);
  });

  test('inputs and outputs must be store paths', () => {
    assert.match(code(() => planDarwin(request({ scratchOutputs: { out: '/Users/me' } }), fakeHost(BASE_PATHS))), /^E_DARWIN_BAD_SPEC: .*'\/Users\/me' is listed as an input or output but is not in the store/);
    assert.match(code(() => planDarwin(request({ inputPaths: ['/nix/store'] }), fakeHost(BASE_PATHS))), /^E_DARWIN_BAD_SPEC/);
  });
});
