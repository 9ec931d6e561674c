// What the generated profiles allow, checked with the SBPL evaluator: inputs
// and their parents readable, outputs and the build dir writable, the home
// directory, other store paths and /Users denied, the network only for
// fixed-output or local-networking builds, setugid writes nowhere.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { planDarwin, parentsOf, type DarwinBuildRequest } from '../../../backends/darwin/plan.js';
import { allows, decide, evaluateProfile, type Policy, type Query } from '../../helpers/sbpl/evaluator.js';
import { BASE_PATHS, BASH, BUILD_DIR, BUILDER_SH, COREUTILS, OUT, fakeHost, request, storePath, type Kind } from './fixtures.js';

function policyOf(req: DarwinBuildRequest, paths: Record<string, Kind> = BASE_PATHS): Policy {
  const spec = planDarwin(req, fakeHost(paths));
  return evaluateProfile(spec.profile, Object.fromEntries(spec.params));
}

const read = (path: string): Query => ({ op: 'file-read-data', path });
const meta = (path: string): Query => ({ op: 'file-read-metadata', path });
const create = (path: string): Query => ({ op: 'file-write-create', path });
const setugid = (path: string): Query => ({ op: 'file-write-setugid', path });
const LOCAL = { proto: 'tcp' as const, host: '192.168.1.20', port: 50123 };
const outbound = (host: string, port: number): Query => ({ op: 'network-outbound', local: LOCAL, remote: { proto: 'tcp', host, port } });

const OTHER = storePath('other', 'openssh-9.6');
const DENIED_READS = ['/Users', '/Users/runner', '/Users/runner/.ssh/id_ed25519', OTHER, `${OTHER}/bin/ssh`, '/etc/passwd', '/private/etc/passwd', '/nix/var/nix/db/db.sqlite', '/usr/bin/clang', '/Applications'];

function assertAllowed(p: Policy, q: Query) {
  const d = decide(p, q);
  assert.equal(d.action, 'allow', `${q.op} ${q.path ?? JSON.stringify(q.remote ?? q.globalName ?? q.target)} should be allowed`);
}
function assertDenied(p: Policy, q: Query) {
  const d = decide(p, q);
  assert.equal(d.action, 'deny', `${q.op} ${q.path ?? JSON.stringify(q.remote ?? q.globalName ?? q.target)} should be denied (decided by rule at offset ${d.rule?.offset})`);
}

describe('sandboxed profile policy', () => {
  const plain = policyOf(request());

  test('every input path, inside and out, and each of its parents is readable', () => {
    for (const p of [BASH, COREUTILS]) {
      assertAllowed(plain, read(p));
      assertAllowed(plain, read(`${p}/bin/tool`));
      assertAllowed(plain, { op: 'process-exec', path: `${p}/bin/tool` });
      // file-write* too: access(W_OK) must answer EACCES from the permissions, not EPERM.
      assertAllowed(plain, { op: 'file-write-data', path: `${p}/bin/tool` });
    }
    assertAllowed(plain, read(BUILDER_SH));
    assertDenied(plain, read(`${BUILDER_SH}/x`));
    for (const p of [BASH, COREUTILS, BUILDER_SH]) for (const a of parentsOf(p)) assertAllowed(plain, meta(a));
  });

  test('outputs and the build directory are writable, and so is the global temp dir', () => {
    for (const dir of [OUT, BUILD_DIR, '/private/tmp']) {
      assertAllowed(plain, create(`${dir}/sub/file`));
      assertAllowed(plain, { op: 'file-write-unlink', path: `${dir}/sub/file` });
      assertAllowed(plain, { op: 'process-exec', path: `${dir}/bin/a.out` });
    }
    for (const a of parentsOf(BUILD_DIR)) assertAllowed(plain, meta(a));
  });

  test('$HOME, /Users, other store paths and host files are denied', () => {
    for (const p of DENIED_READS) {
      assertDenied(plain, read(p));
      assertDenied(plain, create(`${p}/x`));
    }
    for (const p of ['/Users', '/Users/runner', OTHER]) assertDenied(plain, meta(p));
    // a store path that merely shares a prefix with an input is another path
    assertDenied(plain, read(`${BASH}-dev/include/x.h`));
  });

  test('no network: neither remote hosts, nor localhost, nor the resolver', () => {
    assertDenied(plain, outbound('93.184.216.34', 443));
    assertDenied(plain, outbound('localhost', 8080));
    assertDenied(plain, { op: 'network-inbound', local: { proto: 'tcp', host: '*', port: 8080 } });
    assertDenied(plain, { op: 'network-outbound', path: '/private/var/run/mDNSResponder', remote: { proto: 'unix', path: '/private/var/run/mDNSResponder' } });
    assertDenied(plain, { op: 'mach-lookup', globalName: 'com.apple.trustd' });
    assertDenied(plain, read('/private/etc/hosts'));
  });

  test('unix sockets only in the build and temp dirs', () => {
    const sock = (path: string): Query => ({ op: 'network-outbound', path, remote: { proto: 'unix', path } });
    assertAllowed(plain, sock(`${BUILD_DIR}/.nix-socket`));
    assertAllowed(plain, sock('/private/tmp/x.sock'));
    assertDenied(plain, sock('/private/var/run/docker.sock'));
  });

  test('setugid writes are denied everywhere, writable places included', () => {
    for (const p of [`${OUT}/bin/su`, `${BUILD_DIR}/x`, '/private/tmp/x', `${BASH}/bin/bash`, '/dev/null']) assertDenied(plain, setugid(p));
  });

  test('the top build dir keeps its owner, flags and xattrs; its contents do not', () => {
    for (const op of ['file-write-owner', 'file-write-flags', 'file-write-xattr', 'file-write-mount']) {
      assertDenied(plain, { op, path: BUILD_DIR });
      assertAllowed(plain, { op, path: `${BUILD_DIR}/src` });
    }
    assertAllowed(plain, { op: 'file-write-mode', path: BUILD_DIR });
  });

  test('process basics', () => {
    assertAllowed(plain, { op: 'process-fork' });
    assertAllowed(plain, { op: 'sysctl-read' });
    assertAllowed(plain, { op: 'signal', target: 'same-sandbox' });
    assertDenied(plain, { op: 'signal', target: 'other' });
    assertAllowed(plain, { op: 'mach-lookup', globalName: 'com.apple.system.opendirectoryd.libinfo' });
    assertDenied(plain, { op: 'mach-lookup', globalName: 'com.apple.windowserver' });
    assertAllowed(plain, { op: 'ipc-posix-shm', path: 'x' });
    assertDenied(plain, { op: 'ipc-sysv-shm' });
    assertAllowed(plain, read('/dev/null'));
    assertAllowed(plain, read('/dev/ttys003'));
    assertDenied(plain, read('/dev/disk0'));
    assertAllowed(plain, read('/usr/share/zoneinfo/Europe/Paris'));
    assertAllowed(plain, read('/private/var/select/sh'));
    assertAllowed(plain, read('/System/Library/CoreServices/SystemVersion.plist'));
    assertAllowed(plain, read('/Library/Apple/usr/libexec/oah/libRosettaRuntime'));
  });

  test('violations are not logged unless asked', () => {
    const last = (p: Policy) => p.rules.find((r) => r.ops.includes('default'))!;
    assert.deepEqual(last(plain).modifiers, ['no-log']);
    const logged = policyOf(request({ settings: { ...request().settings, darwinLogSandboxViolations: true } }));
    assert.deepEqual(last(logged).modifiers, []);
  });

  test('a build with no inputs and no sandbox paths still denies the host', () => {
    const bare = policyOf(request({ inputPaths: [], builder: '/bin/sh', args: [] }));
    for (const p of DENIED_READS) assertDenied(bare, read(p));
    assertAllowed(bare, create(`${OUT}/x`));
  });
});

describe('network variants', () => {
  test('fixed-output builds reach any host and resolve names', () => {
    const fod = policyOf(request({ fixedOutput: true }));
    assertAllowed(fod, outbound('93.184.216.34', 443));
    assertAllowed(fod, { op: 'network-outbound', path: '/private/var/run/mDNSResponder', remote: { proto: 'unix', path: '/private/var/run/mDNSResponder' } });
    assertAllowed(fod, { op: 'mach-lookup', globalName: 'com.apple.trustd' });
    assertAllowed(fod, read('/private/etc/hosts'));
    assertDenied(fod, read('/Users/runner/.netrc'));
    assertDenied(fod, setugid(`${OUT}/x`));
  });

  test('local networking: loopback and listening, no other host', () => {
    const local = policyOf(request({ allowLocalNetworking: true }));
    assertAllowed(local, outbound('localhost', 8080));
    assertAllowed(local, { op: 'network-inbound', local: { proto: 'tcp', host: '*', port: 8080 } });
    assertAllowed(local, { op: 'network-bind', local: { proto: 'tcp', host: 'localhost', port: 8080 }, remote: { proto: 'tcp', host: 'localhost', port: 0 } });
    assertDenied(local, outbound('93.184.216.34', 443));
    assertDenied(local, { op: 'mach-lookup', globalName: 'com.apple.trustd' });
  });
});

describe('other modes', () => {
  test('relaxed: __sandboxProfile is appended but cannot undo the final denials', () => {
    const extra = '(allow file-write* (subpath "/"))\n(allow network*)\n';
    const p = policyOf(request({ sandboxMode: 'relaxed', additionalSandboxProfile: extra }));
    assertAllowed(p, create('/Users/runner/x'));
    assertAllowed(p, outbound('93.184.216.34', 443));
    assertDenied(p, setugid(`${OUT}/x`));
    assertDenied(p, setugid('/Users/runner/x'));
    assertDenied(p, { op: 'file-write-owner', path: BUILD_DIR });
  });

  test('unsandboxed builds get the minimal profile: all but setugid writes', () => {
    for (const req of [request({ sandboxMode: 'false' }), request({ sandboxMode: 'relaxed', fixedOutput: true }), request({ sandboxMode: 'relaxed', noChroot: true })]) {
      const spec = planDarwin(req, fakeHost(BASE_PATHS));
      assert.equal(spec.sandboxed, false);
      assert.deepEqual(spec.params, []);
      const p = evaluateProfile(spec.profile, {});
      assertAllowed(p, read('/Users/runner/.ssh/id_ed25519'));
      assertAllowed(p, outbound('93.184.216.34', 443));
      assertDenied(p, setugid(`${OUT}/x`));
    }
  });

  test('a build user may use System V IPC; others may not', () => {
    const p = policyOf(request({ buildUser: { uid: 30001, gid: 30000, uidCount: 1, supplementaryGids: [] } }));
    assertAllowed(p, { op: 'ipc-sysv-shm' });
    assertAllowed(p, { op: 'ipc-sysv-sem' });
  });

  test('quoted and unicode paths: the allowed ones exactly, and nothing injected', () => {
    const weird = '/Users/o\'brien "q"/dir ✓/x\\y';
    const evil = '/opt/evil") (allow default) (literal "';
    const p = policyOf(
      request({ sandboxPaths: [weird, evil].map((s) => ({ target: s, source: s, optional: false })) }),
      { ...BASE_PATHS, [weird]: 'directory', [evil]: 'file' },
    );
    assertAllowed(p, read(`${weird}/file`));
    assertAllowed(p, read(evil));
    assertDenied(p, read('/opt/evil'));
    assertDenied(p, read('/etc/passwd'));
    assertDenied(p, read('/Users/o\'brien "q"/other'));
    assert.ok(!p.rules.some((r) => r.action === 'allow' && r.ops.includes('default')));
  });
});

describe('5,000-path closure', () => {
  const closure = Array.from({ length: 5000 }, (_, i) => storePath(`dep-${i}`, `dependency-number-${i}-1.0`));
  const paths = { ...BASE_PATHS, ...Object.fromEntries(closure.map((p) => [p, 'directory'] as const)) };

  test('every group stays under the 64 KiB pattern limit and every path is readable', () => {
    const spec = planDarwin(request({ inputPaths: closure }), fakeHost(paths));
    assert.ok(spec.groups.length > 1, 'a closure this size must be split');
    for (const g of spec.groups) {
      assert.ok(g.filterBytes < 16 * 1024 + 200, `group of ${g.filters} filters has ${g.filterBytes} bytes`);
      assert.ok(g.filterBytes < 65535);
    }
    assert.equal(spec.groups.reduce((n, g) => n + g.filters, 0), 5000 + 1 /* out */ + spec.ancestry.length);
    const p = evaluateProfile(spec.profile, Object.fromEntries(spec.params));
    for (const path of closure) assert.equal(allows(p, read(`${path}/lib/libx.dylib`)), true, path);
    assertDenied(p, read(OTHER));
  });
});
