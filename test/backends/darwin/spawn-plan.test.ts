// The spawn description: argv, envp, file actions, flags, binpref, sysctls.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { planDarwin } from '../../../backends/darwin/plan.js';
import { describeSpawn, CPU_TYPE_ARM64, CPU_TYPE_X86_64, binprefFor } from '../../../backends/darwin/spawn-plan.js';
import { DarwinBadBuilder } from '../../../backends/darwin/errors.js';
import { BASE_PATHS, BASH, BUILDER_SH, BUILD_DIR, fakeHost, request } from './fixtures.js';

const base = { drvPath: '/nix/store/x-a.drv', builder: '/bin/sh', args: ['-c', 'true'], env: { A: '1' } as Record<string, string>, cwd: '/private/tmp/b', params: [] as Array<[string, string]>, credentials: null };

describe('describeSpawn', () => {
  test('aarch64-darwin: sandbox-exec argv, ARM64 preference, affinity cleared first', () => {
    const s = planDarwin(request({ allowLocalNetworking: true }), fakeHost(BASE_PATHS)).spawn;
    assert.equal(s.path, '/usr/bin/sandbox-exec');
    assert.deepEqual(s.argv, [
      'sandbox-exec',
      '-f',
      `${BUILD_DIR}/.sandbox.sb`,
      '-D',
      '_GLOBAL_TMP_DIR=/private/tmp',
      '-D',
      `_NIX_BUILD_TOP=${BUILD_DIR}`,
      '-D',
      '_ALLOW_LOCAL_NETWORKING=1',
      `${BASH}/bin/bash`,
      '-e',
      BUILDER_SH,
    ]);
    assert.deepEqual(s.binpref, [CPU_TYPE_ARM64]);
    assert.equal(CPU_TYPE_ARM64, 0x0100000c);
    assert.deepEqual(s.sysctls, [{ name: 'kern.curproc_arch_affinity', value: 0 }]);
    assert.deepEqual(s.fileActions, [
      { op: 'open', fd: 0, path: '/dev/null', oflag: 0, mode: 0 },
      { op: 'dup2', from: 'log-write', fd: 1 },
      { op: 'dup2', from: 'log-write', fd: 2 },
      { op: 'chdir', path: BUILD_DIR },
    ]);
    assert.equal(s.flags, 0x2 | 0x4 | 0x8 | 0x4000);
    assert.deepEqual(s.flagNames, ['POSIX_SPAWN_SETPGROUP', 'POSIX_SPAWN_SETSIGDEF', 'POSIX_SPAWN_SETSIGMASK', 'POSIX_SPAWN_CLOEXEC_DEFAULT']);
    assert.equal(s.pgroup, 0);
    assert.equal(s.credentials, null);
    assert.ok(s.envp.includes(`out=${request().env.out}`));
    assert.equal(s.envp.length, Object.keys(request().env).length);
  });

  test('x86_64-darwin: X86_64 preference and no sysctl; other systems: neither', () => {
    const s = describeSpawn({ ...base, system: 'x86_64-darwin', profilePath: '/p.sb' });
    assert.deepEqual(s.binpref, [CPU_TYPE_X86_64]);
    assert.equal(CPU_TYPE_X86_64, 0x01000007);
    assert.deepEqual(s.sysctls, []);
    assert.deepEqual(binprefFor('x86_64-linux'), []);
  });

  test('without a profile the builder runs directly, argv[0] its base name', () => {
    const s = describeSpawn({ ...base, system: 'aarch64-darwin', profilePath: null });
    assert.equal(s.path, '/bin/sh');
    assert.deepEqual(s.argv, ['sh', '-c', 'true']);
  });

  test('build user: credentials with the primary group first', () => {
    const s = planDarwin(request({ buildUser: { uid: 30001, gid: 30000, uidCount: 1, supplementaryGids: [30000, 12] } }), fakeHost(BASE_PATHS)).spawn;
    assert.deepEqual(s.credentials, { uid: 30001, gid: 30000, groups: [30000, 12] });
    assert.ok(s.argv.includes('_ALLOW_SYSV_IPC=1'));
  });

  test('NUL bytes, bad env names, option-like and builtin builders are refused', () => {
    const bad = (over: Partial<typeof base>, re: RegExp) =>
      assert.throws(() => describeSpawn({ ...base, system: 'aarch64-darwin', profilePath: '/p', ...over }), (e: unknown) => e instanceof DarwinBadBuilder && re.test(e.message));
    bad({ args: ['a\0b'] }, /builder argument "a\\u0000b" contains a NUL byte/);
    bad({ env: { 'A=B': '1' } }, /environment variable name "A=B"/);
    bad({ env: { A: 'x\0' } }, /value of environment variable 'A'/);
    bad({ builder: '-n' }, /starting with '-'/);
    bad({ builder: 'builtin:fetchurl' }, /builtin builder 'builtin:fetchurl' runs inside drvbox/);
  });
});
