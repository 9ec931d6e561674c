// The Linux plan is pure (PlanHost is faked here), so it is tested on any OS.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuildRequest } from '../../../backends/backend.js';
import { planLinux, type LinuxPlanHost, type SandboxOp } from '../../../backends/linux/plan.js';
import {
  ImpureHostDepNotAllowed,
  SandboxInputMissing,
  SandboxPathInvalid,
  SandboxPathMissing,
  SandboxRequestInvalid,
} from '../../../backends/linux/errors.js';
import { CloneFlag } from '../../../backends/linux/protocol.js';
import { defaultSettings } from './fixture.js';

const S = '/nix/store';
const DRV = `${S}/${'d'.repeat(32)}-hello.drv`;
const OUT = `${S}/${'a'.repeat(32)}-hello`;
const DEP = `${S}/${'b'.repeat(32)}-dep`;
const DEPFILE = `${S}/${'c'.repeat(32)}-file`;
const DEPLINK = `${S}/${'e'.repeat(32)}-link`;
const REAL = '/home/u/.local/share/drvbox/nix/store';

function host(files: Record<string, 'file' | 'directory' | 'symlink' | 'other'> = {}, extra: Partial<LinuxPlanHost> = {}): LinuxPlanHost {
  const all: Record<string, string> = {
    [`${REAL}/${'b'.repeat(32)}-dep`]: 'directory',
    [`${REAL}/${'c'.repeat(32)}-file`]: 'file',
    [`${REAL}/${'e'.repeat(32)}-link`]: 'symlink',
    '/usr/bin/busybox': 'file',
    '/dev/shm': 'directory',
    '/dev/pts/ptmx': 'other',
    '/etc/resolv.conf': 'file',
    '/etc/hosts': 'file',
    ...files,
  };
  return {
    lstat: (p) => (all[p] as 'file') ?? 'missing',
    realpath: (p) => (p === REAL ? '/real' + REAL : p),
    platform: 'linux',
    arch: 'x64',
    uid: 1234,
    gid: 567,
    ...extra,
  };
}

function req(over: Partial<BuildRequest> = {}): BuildRequest {
  return {
    drvPath: DRV,
    drvName: 'hello',
    system: 'x86_64-linux',
    builder: '/bin/sh',
    args: ['-e', 'builder.sh'],
    env: { out: OUT, b: '2', a: '1' },
    storeDir: S,
    realStoreDir: REAL,
    buildDirHost: '/tmp/drvbox-build-1',
    buildDirSandbox: '/build',
    inputPaths: [DEP, DEPFILE, DEPLINK],
    scratchOutputs: { out: OUT },
    fixedOutput: false,
    sandboxPaths: [{ target: '/bin/sh', source: '/usr/bin/busybox', optional: false }],
    impureHostDeps: [],
    allowedImpureHostDeps: [],
    requiredSystemFeatures: [],
    additionalSandboxProfile: '',
    allowLocalNetworking: false,
    sandboxMode: 'true',
    settings: { ...defaultSettings },
    buildUser: null,
    daemonSocketHost: null,
    ...over,
  };
}

const find = (ops: SandboxOp[], path: string) => ops.filter((o) => o.path === path);

describe('linux plan', () => {
  test('chroot under the physical store, outputs on its disk store dir, argv and env as given', () => {
    const spec = planLinux(req(), host());
    assert.equal(spec.chrootDir, `/real${REAL}/${'d'.repeat(32)}-hello.drv.chroot`);
    assert.equal(spec.chrootStoreDir, `${spec.chrootDir}/store`);
    assert.equal(spec.mountedStoreDir, `${spec.chrootDir}/nix/store`);
    assert.deepEqual(spec.argv, ['sh', '-e', 'builder.sh']);
    assert.deepEqual(spec.env, [['out', OUT], ['b', '2'], ['a', '1']]);
    assert.equal(spec.cwd, '/build');
    assert.equal(spec.hostname, 'localhost');
    assert.equal(spec.domainname, '(none)');
  });

  test('the full operation list of an ordinary build', () => {
    const spec = planLinux(req(), host());
    const ro = { readOnly: true, optional: false, shared: false, nosuid: true, nodev: true };
    assert.deepEqual(spec.ops, [
      { op: 'mkdir', path: '/tmp', mode: 0o1777, disk: true },
      { op: 'mkdir', path: '/store', mode: 0o1775, disk: true },
      { op: 'bind', path: '/tmp', source: '/tmp', why: 'writable /tmp', ...ro, readOnly: false, sourceOnDisk: true },
      {
        op: 'write',
        path: '/etc/passwd',
        mode: 0o644,
        content:
          'root:x:0:0:Nix build user:/build:/noshell\nnixbld:x:1000:100:Nix build user:/build:/noshell\nnobody:x:65534:65534:Nobody:/:/noshell\n',
      },
      { op: 'write', path: '/etc/group', mode: 0o644, content: 'root:x:0:\nnixbld:!:100:\nnogroup:x:65534:\n' },
      { op: 'write', path: '/etc/hosts', mode: 0o644, content: '127.0.0.1 localhost\n::1 localhost\n' },
      { op: 'bind', path: S, source: '/store', why: 'writable store dir', ...ro, readOnly: false, sourceOnDisk: true },
      { op: 'bind', path: DEP, source: `${REAL}/${'b'.repeat(32)}-dep`, why: 'input', ...ro },
      { op: 'bind', path: DEPFILE, source: `${REAL}/${'c'.repeat(32)}-file`, why: 'input', ...ro },
      { op: 'copy-symlink', path: DEPLINK, source: `${REAL}/${'e'.repeat(32)}-link`, optional: false },
      { op: 'bind', path: '/build', source: '/tmp/drvbox-build-1', why: 'build dir', ...ro, readOnly: false },
      { op: 'bind', path: '/bin/sh', source: '/usr/bin/busybox', why: 'sandbox-paths', ...ro, nodev: false },
      { op: 'mkdir', path: '/dev', mode: 0o755 },
      ...['full', 'null', 'random', 'tty', 'urandom', 'zero'].map((d) => ({ op: 'bind', path: `/dev/${d}`, source: `/dev/${d}`, why: 'device', ...ro, nodev: false })),
      { op: 'symlink', path: '/dev/fd', text: '/proc/self/fd' },
      { op: 'symlink', path: '/dev/stdin', text: '/proc/self/fd/0' },
      { op: 'symlink', path: '/dev/stdout', text: '/proc/self/fd/1' },
      { op: 'symlink', path: '/dev/stderr', text: '/proc/self/fd/2' },
      { op: 'mount', path: '/proc', fstype: 'proc', data: '', nosuid: true, nodev: true, noexec: true, optional: false },
      { op: 'mount', path: '/dev/shm', fstype: 'tmpfs', data: 'size=50%', nosuid: true, nodev: true, noexec: false, optional: false },
      { op: 'mount', path: '/dev/pts', fstype: 'devpts', data: 'newinstance,ptmxmode=0666,mode=0620', nosuid: true, nodev: false, noexec: true, optional: false },
      { op: 'symlink', path: '/dev/ptmx', text: '/dev/pts/ptmx' },
      { op: 'mkdir', path: '/etc', mode: 0o555 },
      { op: 'remount-ro', path: '/' },
    ]);
    assert.deepEqual(spec.visiblePaths, [DEP, DEPFILE, DEPLINK]);
  });

  test('namespaces, identity and hardening of an ordinary build', () => {
    const spec = planLinux(req(), host());
    assert.deepEqual(spec.namespaces, { user: true, mount: true, pid: true, ipc: true, uts: true, net: true, cgroup: false });
    assert.equal(spec.cloneFlags, CloneFlag.NEWUSER | CloneFlag.NEWNS | CloneFlag.NEWPID | CloneFlag.NEWIPC | CloneFlag.NEWUTS | CloneFlag.NEWNET);
    assert.equal(spec.uidMap, '1000 1234 1');
    assert.equal(spec.gidMap, '100 567 1');
    assert.equal(spec.selfMap, true);
    assert.deepEqual([spec.sandboxUid, spec.sandboxGid, spec.ownerUid, spec.ownerGid], [1000, 100, 1234, 567]);
    assert.equal(spec.loopback, true);
    assert.equal(spec.noNewPrivileges, true);
    assert.equal(spec.personality, 0x40000);
    assert.deepEqual(spec.seccomp?.archs, ['x86_64', 'x86', 'x32']);
    assert.equal(spec.keepMountNamespace, false);
  });

  test('fixed-output: host network, resolution files, nsswitch limited to files and dns', () => {
    const spec = planLinux(req({ fixedOutput: true }), host());
    assert.equal(spec.namespaces.net, false);
    assert.equal(spec.cloneFlags & CloneFlag.NEWNET, 0);
    assert.equal(spec.loopback, false);
    assert.deepEqual(find(spec.ops, '/etc/nsswitch.conf'), [{ op: 'write', path: '/etc/nsswitch.conf', mode: 0o644, content: 'hosts: files dns\nservices: files\n' }]);
    // /etc/services is missing on this fake host: not bound.
    assert.deepEqual(
      spec.ops.filter((o) => o.op === 'bind' && o.why.startsWith('fixed-output')).map((o) => o.path),
      ['/etc/resolv.conf', '/etc/hosts'],
    );
    assert.deepEqual(find(spec.ops, '/etc/hosts').map((o) => o.op), ['bind']);
  });

  test('diverted store: inputs come from the physical dir, appear at the logical path', () => {
    const spec = planLinux(req(), host());
    const b = find(spec.ops, DEP)[0];
    assert.equal(b?.op === 'bind' && b.source, `${REAL}/${'b'.repeat(32)}-dep`);
  });

  test('outputs are never pre-populated', () => {
    const spec = planLinux(
      req({ inputPaths: [DEP, OUT], sandboxPaths: [{ target: OUT, source: '/usr/bin/busybox', optional: false }] }),
      host({ [`${REAL}/${'a'.repeat(32)}-hello`]: 'directory' }),
    );
    assert.deepEqual(find(spec.ops, OUT), []);
  });

  test('a missing input is an error naming it', () => {
    assert.throws(
      () => planLinux(req({ inputPaths: [`${S}/${'f'.repeat(32)}-gone`] }), host()),
      (e: unknown) =>
        e instanceof SandboxInputMissing &&
        e.message === `derivation '${DRV}': input '${S}/${'f'.repeat(32)}-gone' is missing from the store ('${REAL}/${'f'.repeat(32)}-gone')`,
    );
  });

  test('build users: the monitor writes the maps; uid-range maps 65536 ids with root inside and /sys', () => {
    const one = planLinux(req({ buildUser: { uid: 30001, gid: 30000, uidCount: 1, supplementaryGids: [] } }), host());
    assert.deepEqual([one.uidMap, one.gidMap, one.selfMap, one.sandboxUid], ['1000 30001 1', '100 30000 1', false, 1000]);
    const range = planLinux(req({ buildUser: { uid: 872415232, gid: 30000, uidCount: 65536, supplementaryGids: [] } }), host());
    assert.deepEqual([range.uidMap, range.gidMap, range.sandboxUid, range.sandboxGid], ['0 872415232 65536', '0 30000 65536', 0, 0]);
    assert.equal(find(range.ops, '/sys')[0]?.op, 'mount');
    assert.match((find(range.ops, '/etc/passwd')[0] as { content: string }).content, /^nixbld:x:0:0:/m);
  });

  test('recursive-nix keeps the mount namespace and shares the store dir', () => {
    const spec = planLinux(req({ requiredSystemFeatures: ['recursive-nix'] }), host());
    assert.equal(spec.keepMountNamespace, true);
    const store = find(spec.ops, S)[0];
    assert.equal(store?.op === 'bind' && store.shared, true);
  });

  test('personality: i686-linux on x86_64 is 32-bit', () => {
    assert.equal(planLinux(req({ system: 'i686-linux' }), host()).personality, 0x40008);
    assert.equal(planLinux(req({ system: 'armv7l-linux' }), host({}, { arch: 'arm64' })).personality, 0x40008);
  });

  test('filter-syscalls = false: no seccomp; allow-new-privileges: no no_new_privs', () => {
    const spec = planLinux(req({ settings: { ...defaultSettings, filterSyscalls: false, allowNewPrivileges: true } }), host());
    assert.equal(spec.seccomp, null);
    assert.equal(spec.noNewPrivileges, false);
  });

  test('/dev/kvm when the host offers the kvm feature and has the device (as Nix)', () => {
    const devs = (o: Partial<BuildRequest>, h: LinuxPlanHost) => planLinux(req(o), h).ops.filter((x) => x.path === '/dev/kvm').length;
    assert.equal(devs({}, host({ '/dev/kvm': 'other' }, { systemFeatures: ['kvm'] })), 1);
    assert.equal(devs({ requiredSystemFeatures: ['kvm'] }, host({ '/dev/kvm': 'other' }, { systemFeatures: [] })), 0);
    assert.equal(devs({}, host({}, { systemFeatures: ['kvm'] })), 0);
  });

  test('a /dev sandbox path replaces the minimal /dev', () => {
    const spec = planLinux(req({ sandboxPaths: [{ target: '/dev', source: '/dev', optional: false }] }), host({ '/dev': 'directory' }));
    assert.deepEqual(
      spec.ops.filter((o) => o.path.startsWith('/dev')).map((o) => `${o.op} ${o.path}`),
      ['bind /dev'],
    );
  });

  test('host directories of sandbox-paths are bound with the mounts below them (MS_REC); files and store inputs are not', () => {
    const spec = planLinux(req({ sandboxPaths: [{ target: '/usr', source: '/usr', optional: false }, { target: '/bin/sh', source: '/usr/bin/busybox', optional: false }] }), host({ '/usr': 'directory' }));
    const binds = spec.ops.filter((o): o is Extract<SandboxOp, { op: 'bind' }> => o.op === 'bind');
    assert.deepEqual(binds.filter((b) => b.recursive).map((b) => b.path), ['/usr']);
    assert.equal(binds.find((b) => b.path === DEP)!.recursive, undefined);
  });

  test('sandbox-paths: optional missing sources are skipped, required ones fail', () => {
    const spec = planLinux(req({ sandboxPaths: [{ target: '/opt', source: '/opt', optional: true }] }), host());
    assert.deepEqual(find(spec.ops, '/opt'), []);
    assert.throws(
      () => planLinux(req({ sandboxPaths: [{ target: '/opt', source: '/opt', optional: false }] }), host()),
      (e: unknown) => e instanceof SandboxPathMissing && e.message === `derivation '${DRV}': sandbox path '/opt' does not exist (append '?' to make it optional)`,
    );
  });

  test('sandbox-paths: bad entries are refused with clear messages', () => {
    const cases: [string, string, string][] = [
      ['/a/../etc', '/etc', `sandbox path '/a/../etc=/etc' has a '..' component in its target '/a/../etc'`],
      ['/x', '/etc/../root', `sandbox path '/x=/etc/../root' has a '..' component in its source '/etc/../root'`],
      ['/x/', '/usr', `sandbox path '/x/=/usr' has a trailing slash on its target only; write both '/x' and '/usr' without it`],
      ['/x', '/usr/', `sandbox path '/x=/usr/' has a trailing slash on its source only; write both '/x' and '/usr' without it`],
      ['rel', '/usr', `sandbox path 'rel=/usr' has a relative target 'rel'; targets must be absolute`],
      ['/x', 'usr', `sandbox path '/x=usr' has a relative source 'usr'; sources must be absolute`],
      ['/', '/usr', `sandbox path '/=/usr' would cover the root of the sandbox`],
    ];
    for (const [target, source, msg] of cases) {
      assert.throws(
        () => planLinux(req({ sandboxPaths: [{ target, source, optional: false }] }), host()),
        (e: unknown) => e instanceof SandboxPathInvalid && e.message === `derivation '${DRV}': ${msg}`,
        `${target}=${source}`,
      );
    }
    // Both with a trailing slash is fine (normalised).
    const ok = planLinux(req({ sandboxPaths: [{ target: '/x/', source: '/usr/bin/busybox/', optional: false }] }), host());
    assert.equal(find(ok.ops, '/x').length, 1);
  });

  test('sandbox-paths that would hide the store, the build dir or /proc are refused', () => {
    const msgs: [string, RegExp][] = [
      ['/nix', /sandbox path '\/nix' would hide the store dir '\/nix\/store'/],
      ['/build/x', /sandbox path '\/build\/x' overlaps the build dir '\/build'/],
      ['/proc/sys', /sandbox path '\/proc\/sys' is under \/proc, which is always fresh/],
    ];
    for (const [target, re] of msgs) {
      assert.throws(() => planLinux(req({ sandboxPaths: [{ target, source: '/usr/bin/busybox', optional: false }] }), host()), (e: unknown) => e instanceof SandboxRequestInvalid && re.test(e.message));
    }
  });

  test('__impureHostDeps need allowed-impure-host-deps', () => {
    assert.throws(
      () => planLinux(req({ impureHostDeps: ['/usr/lib/libfoo.so'] }), host()),
      (e: unknown) =>
        e instanceof ImpureHostDepNotAllowed &&
        e.message === `derivation '${DRV}' requested impure path '/usr/lib/libfoo.so', but it was not in allowed-impure-host-deps`,
    );
    const spec = planLinux(req({ impureHostDeps: ['/usr/lib/libfoo.so'], allowedImpureHostDeps: ['/usr/lib'] }), host({ '/usr/lib/libfoo.so': 'file' }));
    assert.equal(find(spec.ops, '/usr/lib/libfoo.so').length, 1);
  });

  test('a build dir overlapping the store or under /proc is refused', () => {
    assert.throws(() => planLinux(req({ buildDirSandbox: '/nix/store/x' }), host()), /sandbox-build-dir '\/nix\/store\/x' overlaps the store dir '\/nix\/store'/);
    assert.throws(() => planLinux(req({ buildDirSandbox: '/proc/b' }), host()), /sandbox-build-dir '\/proc\/b' must not be under '\/proc'/);
  });
});
