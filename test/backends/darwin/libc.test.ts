// The koffi binding, over a fake koffi: which C prototypes are declared and
// how arguments are marshalled (the real calls run in *.darwin tests and, for
// the glibc subset, in spawn-real.linux).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { bindLibc, catchableSigset, DARWIN_ABI, LINUX_ABI, type KoffiLike, type KoffiFn } from '../../../backends/darwin/libc.js';
import { DarwinLibcUnavailable } from '../../../backends/darwin/errors.js';
import { applySpawn } from '../../../backends/darwin/spawn-exec.js';
import { describeSpawn } from '../../../backends/darwin/spawn-plan.js';
import { fakeLibc } from './fake-libc.js';

function fakeKoffi(impl: Record<string, (...args: any[]) => unknown> = {}, missing: string[] = []) {
  const loaded: string[] = [];
  const declared: string[] = [];
  const calls: Array<[string, unknown[]]> = [];
  const koffi: KoffiLike = {
    load(path) {
      loaded.push(path);
      return {
        func(proto: string): KoffiFn {
          const name = /\s\*?(\w+)\(/.exec(proto)![1]!;
          if (missing.includes(name)) throw new Error(`cannot find function '${name}'`);
          declared.push(proto);
          const f = ((...args: unknown[]) => {
            calls.push([name, args]);
            return impl[name] ? impl[name]!(...args) : 0;
          }) as KoffiFn;
          f.async = (...args: unknown[]) => {
            const cb = args.pop() as (err: unknown, res: unknown) => void;
            calls.push([name + '.async', args]);
            setImmediate(() => cb(null, impl[name] ? impl[name]!(...args) : 0));
          };
          return f;
        },
      };
    },
    errno: () => 22,
    address: () => 0x1000n,
  };
  return { koffi, loaded, declared, calls };
}

describe('bindLibc (Darwin)', () => {
  test('declares the spawn, binpref, credential, sysctl and proc_listpids prototypes from libSystem', () => {
    const f = fakeKoffi();
    bindLibc(f.koffi, DARWIN_ABI);
    assert.deepEqual(f.loaded, ['/usr/lib/libSystem.B.dylib']);
    for (const p of [
      'int posix_spawn(int *pid, const char *path, void *fa, void *attr, const char **argv, const char **envp)',
      'int posix_spawnattr_setbinpref_np(void *attr, size_t count, int *pref, size_t *ocount)',
      'int posix_spawn_file_actions_addchdir_np(void *fa, const char *path)',
      'int posix_spawnattr_set_uid_np(void *attr, uint32_t uid)',
      'int posix_spawnattr_set_groups_np(void *attr, int ngroups, uint32_t *gids, uint32_t gmuid)',
      'int sysctlbyname(const char *name, void *oldp, void *oldlenp, void *newp, size_t newlen)',
      'int wait4(int pid, int *status, int options, void *rusage)',
      'int proc_listpids(uint32_t type, uint32_t typeinfo, void *buffer, int buffersize)',
    ]) {
      assert.ok(f.declared.includes(p), `missing ${p}`);
    }
    assert.ok(!f.declared.some((p) => p.includes('pipe2') || p.includes('addclosefrom')));
  });

  test('marshalling: binpref count, argv/envp NULL-terminated, sysctl int, wait4 on a worker', async () => {
    const f = fakeKoffi({
      posix_spawnattr_setbinpref_np: (_a, _n, _pref, ocount: Buffer) => {
        ocount.writeBigUInt64LE(1n);
        return 0;
      },
      posix_spawn: (pid: Int32Array) => {
        pid[0] = 777;
        return 0;
      },
      wait4: (_pid, status: Int32Array, _opts, rusage: Buffer) => {
        status[0] = 5 << 8;
        rusage.writeBigInt64LE(2n, 0);
        rusage.writeInt32LE(500_000, 8);
        rusage.writeBigInt64LE(0n, 16);
        rusage.writeInt32LE(7_000, 24);
        return 777;
      },
    });
    const libc = bindLibc(f.koffi, DARWIN_ABI);
    const attr = libc.attrInit();
    assert.equal(attr.buf.length, 8);
    assert.deepEqual(libc.attrSetBinpref(attr, [0x0100000c]), { rc: 0, count: 1 });
    const bp = f.calls.find((c) => c[0] === 'posix_spawnattr_setbinpref_np')![1];
    assert.equal(bp[1], 1);
    assert.deepEqual([...(bp[2] as Int32Array)], [0x0100000c]);
    const fa = libc.fileActionsInit();
    assert.deepEqual(libc.spawn('/usr/bin/sandbox-exec', fa, attr, ['sandbox-exec', '-f', 'p'], ['A=1']), { rc: 0, pid: 777 });
    const sp = f.calls.find((c) => c[0] === 'posix_spawn')![1];
    assert.deepEqual(sp.slice(4), [['sandbox-exec', '-f', 'p', null], ['A=1', null]]);
    assert.equal(libc.sysctlSetInt('kern.curproc_arch_affinity', 0), 0);
    const sc = f.calls.find((c) => c[0] === 'sysctlbyname')![1];
    assert.deepEqual([sc[0], sc[1], sc[2], [...(sc[3] as Int32Array)], sc[4]], ['kern.curproc_arch_affinity', null, null, [0], 4]);
    assert.deepEqual(await libc.waitNoHang(777), { pid: 777, status: 5 << 8, cpuUserMs: 2500, cpuSystemMs: 7 });
    assert.equal(f.calls.find((c) => c[0] === 'wait4.async')![1][2], 1 /* WNOHANG */);
  });

  test('credentials: groups, then gid, then uid, with no membership resolver', () => {
    const f = fakeKoffi();
    const libc = bindLibc(f.koffi, DARWIN_ABI);
    assert.equal(libc.attrSetCredentials(libc.attrInit(), { uid: 301, gid: 30000, groups: [30000] }), 0);
    const seq = f.calls.filter((c) => c[0].startsWith('posix_spawnattr_set_')).map((c) => [c[0], ...c[1].slice(1).map((x) => (x instanceof Uint32Array ? [...x] : x))]);
    assert.deepEqual(seq, [
      ['posix_spawnattr_set_groups_np', 1, [30000], 0xffffffff - 100],
      ['posix_spawnattr_set_gid_np', 30000],
      ['posix_spawnattr_set_uid_np', 301],
    ]);
  });

  test('the catchable signal set excludes SIGKILL and SIGSTOP', () => {
    assert.equal(catchableSigset(DARWIN_ABI).readUInt32LE(0), 0x7ffefeff);
    const linux = catchableSigset(LINUX_ABI);
    assert.equal(linux.readBigUInt64LE(0), 0xfffffffffffbfeffn);
  });

  test('a missing symbol fails at bind time, naming it', () => {
    const f = fakeKoffi({}, ['posix_spawnattr_setbinpref_np']);
    assert.throws(
      () => bindLibc(f.koffi, DARWIN_ABI),
      (e: unknown) => e instanceof DarwinLibcUnavailable && /lacks 'int posix_spawnattr_setbinpref_np/.test(e.message),
    );
  });
});

describe('bindLibc (glibc)', () => {
  test('no binpref or sysctl there; CLOEXEC_DEFAULT becomes closefrom(3) after the dup2s', () => {
    const f = fakeKoffi();
    const libc = bindLibc(f.koffi, LINUX_ABI);
    assert.deepEqual(f.loaded, ['libc.so.6']);
    assert.deepEqual(libc.attrSetBinpref(libc.attrInit(), [7]), { rc: 45, count: 0 });
    assert.equal(libc.sysctlSetInt('kern.x', 0), 45);
    libc.attrSetFlags(libc.attrInit(), 0x400e);
    assert.equal(f.calls.find((c) => c[0] === 'posix_spawnattr_setflags')![1][1], 0xe);

    const fake = fakeLibc({ abi: LINUX_ABI });
    const d = describeSpawn({ drvPath: '/x.drv', system: 'x86_64-linux', builder: '/bin/sh', args: [], env: {}, cwd: '/tmp', profilePath: null, params: [], credentials: null });
    applySpawn(d, fake, 11);
    const names = fake.calls.map((c) => c[0]);
    assert.deepEqual(names.slice(0, 6), ['fileActionsInit', 'addopen', 'adddup2', 'adddup2', 'addchdir_np', 'addclosefrom_np']);
  });
});
