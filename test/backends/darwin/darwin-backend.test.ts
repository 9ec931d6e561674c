// The Backend object: capabilities, plan/explain on any OS, start() with the
// C calls recorded, refusals.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { createDarwinBackend, explainDarwinBuild } from '../../../backends/darwin/darwin-backend.js';
import { DarwinBadSpec, DarwinCannotAddPaths } from '../../../backends/darwin/errors.js';
import { planDarwin, type DarwinSandboxSpec } from '../../../backends/darwin/plan.js';
import type { PlanHost, SandboxSpec } from '../../../backends/backend.js';
import { tempDir } from '../../helpers/tmp.js';
import { BASE_PATHS, BASH, DRV, OUT, SETTINGS, fakeHost, request } from './fixtures.js';
import { fakeLibc } from './fake-libc.js';

function hostWithRealBuildDir(dir: string): PlanHost {
  const f = fakeHost(BASE_PATHS);
  return { ...f, lstat: (p) => f.lstat(p), realpath: (p) => (p.startsWith(dir) ? realpathSync(p) : f.realpath(p)) };
}

describe('darwin backend', () => {
  test('capabilities: hash rewriting always, no uid range, no paths added while running', () => {
    const b = createDarwinBackend();
    assert.equal(b.name, 'darwin');
    assert.deepEqual(b.caps, { needsHashRewrite: true, canAddPathsWhileRunning: false, supportsUidRange: false, sandboxed: true });
    assert.equal(b.buildDirInSandbox('/private/tmp/nix-build-x-1', SETTINGS), '/private/tmp/nix-build-x-1');
    assert.equal(b.realPathOfScratchOutput(planDarwin(request(), fakeHost(BASE_PATHS)), OUT), OUT);
  });

  test('explain: mode, argv, binpref and the whole profile', () => {
    const b = createDarwinBackend();
    const spec = b.plan(request({ fixedOutput: true }), fakeHost(BASE_PATHS));
    const text = b.explain(spec);
    const lines = text.split('\n');
    assert.equal(lines[0], `darwin sandbox plan for ${DRV} (system aarch64-darwin)`);
    assert.equal(lines[1], 'mode: sandboxed (sandbox = true, fixed-output: network allowed)');
    assert.ok(lines.includes(`  argv: sandbox-exec -f /private/tmp/nix-build-hello-2.12-1/.sandbox.sb -D _GLOBAL_TMP_DIR=/private/tmp -D _NIX_BUILD_TOP=/private/tmp/nix-build-hello-2.12-1 ${BASH}/bin/bash -e ${request().args[1]}`));
    assert.ok(lines.includes('  binpref: CPU_TYPE_ARM64 (0x100000c)'));
    assert.ok(lines.includes('  before spawning: sysctlbyname("kern.curproc_arch_affinity") = 0'));
    assert.ok(text.endsWith('--- profile ---\n' + (spec as DarwinSandboxSpec).profile));
  });

  test('explain on a Linux store: a diverted store is described, looked up where it really is', () => {
    const root = '/home/u/.local/share/drvbox';
    const real = `${root}/nix/store`;
    const paths = Object.fromEntries(Object.entries(BASE_PATHS).map(([p, k]) => [p.startsWith('/nix/store/') ? real + p.slice('/nix/store'.length) : p, k]));
    const host = fakeHost(paths);
    const text = explainDarwinBuild(request({ realStoreDir: real }), host);
    assert.ok(text.includes(`note: store '/nix/store' is kept in '${real}' here; a macOS build refuses such a diverted store`));
    assert.ok(text.includes(`\t(subpath "${BASH}")`));
    assert.ok(host.lstatCalls.includes(real + BASH.slice('/nix/store'.length)));
  });

  test('explain elsewhere: mapped and missing macOS paths become notes instead of errors', () => {
    const host = { ...fakeHost(BASE_PATHS), platform: 'linux' as const };
    const text = explainDarwinBuild(
      request({
        sandboxPaths: [
          { target: '/bin/sh', source: '/usr/bin/busybox', optional: false },
          { target: '/System/Library/Frameworks', source: '/System/Library/Frameworks', optional: false },
        ],
      }),
      host,
    );
    assert.ok(text.includes("note: sandbox path '/bin/sh=/usr/bin/busybox' left out: a macOS build refuses paths mapped to another name"));
    assert.ok(text.includes("note: '/System/Library/Frameworks' does not exist on this linux host; shown as a directory"));
    assert.ok(text.includes('\t(subpath "/System/Library/Frameworks")'));
    assert.throws(() => createDarwinBackend().plan(request({ sandboxPaths: [{ target: '/bin/sh', source: '/usr/bin/busybox', optional: false }] }), host), /cannot map/);
  });

  test('addPath is refused with the reason; foreign specs are refused', async () => {
    const b = createDarwinBackend();
    const spec = b.plan(request(), fakeHost(BASE_PATHS));
    await assert.rejects(b.addPath({} as never, spec, OUT), (e: unknown) => e instanceof DarwinCannotAddPaths && /a sandbox-exec profile cannot grow/.test(e.message));
    const foreign: SandboxSpec = { backend: 'linux', request: request() };
    assert.throws(() => b.explain(foreign), DarwinBadSpec);
    await assert.rejects(b.start(foreign), DarwinBadSpec);
  });

  test('start writes the profile into the build dir, spawns, and cleanup removes it', async (t) => {
    const dir = realpathSync(tempDir(t));
    const libc = fakeLibc();
    const log = new PassThrough();
    log.end('built\n');
    const b = createDarwinBackend({ libc: async () => libc, watch: { openLog: () => log, kill: () => { throw Object.assign(new Error('ESRCH'), { code: 'ESRCH' }); }, pollMinMs: 1 } });
    const spec = b.plan(request({ buildDirHost: dir, buildDirSandbox: dir }), hostWithRealBuildDir(dir)) as DarwinSandboxSpec;
    assert.equal(spec.profilePath, `${dir}/.sandbox.sb`);
    const running = await b.start(spec);
    assert.equal(readFileSync(spec.profilePath, 'utf8'), spec.profile);
    assert.equal(statSync(spec.profilePath).mode & 0o777, 0o644);
    assert.deepEqual(await running.wait(), { code: 0, signal: null });
    const spawn = libc.calls.find((c) => c[0] === 'posix_spawn')!;
    assert.deepEqual(spawn[4], spec.spawn.argv);
    // a leftover profile means a reused build dir: refused
    await assert.rejects(b.start(spec), /EEXIST/);
    await b.cleanup(spec);
    assert.equal(existsSync(spec.profilePath), false);
    await b.cleanup(spec);
  });

  test('with a build user: leftovers of the uid killed first, System V objects cleaned after', async (t) => {
    const dir = realpathSync(tempDir(t));
    const libc = fakeLibc();
    const cleaned: number[] = [];
    const sysv = {
      ipcsIter: () => ({ rc: 2, cursor: 0, data: Buffer.alloc(0) }),
      get: () => -1,
      stat: () => null,
      remove: () => 0,
    };
    const log = new PassThrough();
    log.end();
    const b = createDarwinBackend({
      libc: async () => libc,
      sysv: async () => {
        cleaned.push(1);
        return sysv;
      },
      watch: { openLog: () => log, kill: () => { throw Object.assign(new Error('ESRCH'), { code: 'ESRCH' }); }, pollMinMs: 1 },
    });
    const spec = b.plan(request({ buildDirHost: dir, buildDirSandbox: dir, buildUser: { uid: 30001, gid: 30000, uidCount: 1, supplementaryGids: [] } }), hostWithRealBuildDir(dir));
    const running = await b.start(spec);
    await running.wait();
    assert.deepEqual(libc.calls[0], ['listPidsOfUid', 30001]);
    assert.deepEqual(cleaned, [1]);
  });

  test('probe reports the doctor checks', async () => {
    const b = createDarwinBackend({
      facts: async () => ({ platform: 'linux', arch: 'x64', readFile: () => null, exists: () => false, executable: () => false, sysctlInt: () => null }),
    });
    const r = await b.probe();
    assert.equal(r.backend, 'darwin');
    assert.equal(r.usable, false);
    assert.match(r.checks[0]!.detail, /only plans and explains here/);
  });
});
