import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { PlanHost } from '../../../backends/backend.js';
import { request } from './fixture.js';
import { explainNone, planNone } from '../../../backends/none/plan.js';
import { createNoneBackend, NONE_CAPABILITIES } from '../../../backends/none/index.js';

const linuxHost: PlanHost = { platform: 'linux', arch: 'x64', lstat: () => 'missing', realpath: (p) => p };
const darwinHost: PlanHost = { ...linuxHost, platform: 'darwin' };

describe('none backend: plan (pure)', () => {
  test('argv[0] is the builder base name; env sorted in byte order; cwd is the host build dir', () => {
    const spec = planNone(request(), linuxHost, { uid: 1000, gid: 100 });
    assert.equal(spec.backend, 'none');
    assert.deepEqual(spec.argv, ['sh', '-c', 'echo hi']);
    assert.deepEqual(
      spec.env.map(([k]) => k),
      ['B', 'HOME', 'PATH', 'Zed', 'a', 'é'],
    );
    assert.equal(spec.cwd, '/tmp/nix-build-x.drv-0');
    assert.equal(spec.containment, 'pid-namespace');
    assert.equal(spec.userNamespace, true);
  });

  test('root needs no user namespace; macOS uses process groups', () => {
    assert.equal(planNone(request(), linuxHost, { uid: 0, gid: 0 }).userNamespace, false);
    const mac = planNone(request(), darwinHost, { uid: 501, gid: 20 });
    assert.equal(mac.containment, 'process-group');
    assert.equal(mac.userNamespace, false);
    assert.match(explainNone(mac), /a process that starts its own session \(setsid\) can outlive the build/);
  });

  test('explain names containment, identity, argv and every variable in order; notes a diverted store', () => {
    const text = explainNone(planNone(request({ realStoreDir: '/root/s/store' }), linuxHost, { uid: 1000, gid: 100 }));
    assert.match(text, /^no sandbox for \/s\/store\/0000000000000000000000000000000a-x\.drv \(x86_64-linux\)/);
    assert.match(text, /containment: PID namespace/);
    assert.match(text, /identity: uid 1000 gid 100, mapped to themselves in a user namespace/);
    assert.match(text, /argv: \["sh","-c","echo hi"\]/);
    assert.match(text, /environment \(6 variables, in this order\):\n  B=b\n  HOME=\/homeless-shelter\n  PATH=\/path-not-set\n  Zed=z\n  a=lower\n  é=e-acute\n/);
    assert.match(text, /note: the store's physical directory '\/root\/s\/store' differs from '\/s\/store'/);
  });

  test("a build user keeps its own supplementary groups through the launcher (none of root's); process groups cannot, and say so", () => {
    const buildUser = { uid: 30001, gid: 30000, uidCount: 1, supplementaryGids: [100, 108] };
    const spec = planNone(request({ buildUser }), linuxHost, { uid: 0, gid: 0 });
    assert.deepEqual([spec.uid, spec.gid, spec.groups, spec.userNamespace], [30001, 30000, [100, 108], false]);
    assert.match(explainNone(spec), /identity: build user uid 30001 gid 30000, its supplementary groups 100, 108 \(none of root's\)/);
    const none = planNone(request({ buildUser: { ...buildUser, supplementaryGids: [] } }), linuxHost, { uid: 0, gid: 0 });
    assert.match(explainNone(none), /identity: build user uid 30001 gid 30000, no supplementary groups \(none of root's\)/);
    const group = planNone(request({ buildUser }), linuxHost, { containment: 'process-group' });
    assert.deepEqual(group.groups, []);
    assert.match(explainNone(group), /note: the build user's supplementary groups \(100, 108\) are not kept in this mode/);
  });

  test('capabilities: hash rewriting, paths visible while running, not sandboxed', () => {
    assert.deepEqual(NONE_CAPABILITIES, { needsHashRewrite: true, canAddPathsWhileRunning: true, supportsUidRange: false, sandboxed: false });
    const be = createNoneBackend();
    assert.equal(be.buildDirInSandbox('/tmp/a', request().settings), '/tmp/a');
    const spec = be.plan(request({ realStoreDir: '/r/store' }), linuxHost);
    assert.equal(be.realPathOfScratchOutput(spec, '/s/store/0000000000000000000000000000000b-x'), '/r/store/0000000000000000000000000000000b-x');
  });

  test('a spec of another backend is refused', () => {
    const be = createNoneBackend();
    assert.throws(() => be.explain({ backend: 'linux', request: request() }), /a 'linux' sandbox spec was handed to the unsandboxed backend/);
  });
});
