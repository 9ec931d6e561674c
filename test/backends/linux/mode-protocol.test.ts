// The sandbox-mode decision and the launcher wire format: pure, any OS.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decideSandbox, type SandboxDecisionInput } from '../../../backends/linux/mode.js';
import {
  DivertedStoreNeedsSandbox,
  NoChrootNotAllowed,
  SandboxNulByte,
  SandboxProfileNotAllowed,
  SandboxUnavailable,
} from '../../../backends/linux/errors.js';
import { encodeRequest, Mode, parseResultLine, parseStatusLine, Tag } from '../../../backends/linux/protocol.js';
import { parseSandboxPaths } from '../../../backends/linux/sandbox-paths.js';

const DRV = '/nix/store/dddddddddddddddddddddddddddddddd-x.drv';
const base: SandboxDecisionInput = {
  drvPath: DRV,
  mode: 'true',
  noChroot: false,
  sandboxedDerivation: true,
  platform: 'linux',
  divertedStore: false,
  sandboxAvailable: true,
  sandboxFallback: false,
};

describe('sandbox mode decision', () => {
  test('true / false / relaxed with and without __noChroot and fixed outputs', () => {
    const use = (o: Partial<SandboxDecisionInput>) => decideSandbox({ ...base, ...o }).useSandbox;
    assert.equal(use({ mode: 'true' }), true);
    assert.equal(use({ mode: 'true', sandboxedDerivation: false }), true);
    assert.equal(use({ mode: 'false' }), false);
    assert.equal(use({ mode: 'false', noChroot: true }), false);
    assert.equal(use({ mode: 'relaxed' }), true);
    assert.equal(use({ mode: 'relaxed', noChroot: true }), false);
    assert.equal(use({ mode: 'relaxed', sandboxedDerivation: false }), false);
  });

  test("__noChroot with sandbox = true uses Nix's message", () => {
    assert.throws(
      () => decideSandbox({ ...base, noChroot: true }),
      (e: unknown) => e instanceof NoChrootNotAllowed && e.message === `derivation '${DRV}' has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'`,
    );
  });

  test('a darwin sandbox profile needs relaxed mode', () => {
    assert.throws(
      () => decideSandbox({ ...base, platform: 'darwin', additionalSandboxProfile: '(allow default)' }),
      (e: unknown) => e instanceof SandboxProfileNotAllowed && e.message === `derivation '${DRV}' specifies a sandbox profile, but this is only allowed when 'sandbox' is 'relaxed'`,
    );
  });

  test('a diverted store forces the sandbox on Linux, is refused on darwin', () => {
    assert.equal(decideSandbox({ ...base, mode: 'false', divertedStore: true }).useSandbox, true);
    assert.throws(() => decideSandbox({ ...base, platform: 'darwin', divertedStore: true }), /building using a diverted store is not supported on this platform/);
  });

  test('no sandbox on this host: an error, or a warning on every build with sandbox-fallback', () => {
    assert.throws(
      () => decideSandbox({ ...base, sandboxAvailable: false, unavailableReason: 'uid_map failed' }),
      (e: unknown) =>
        e instanceof SandboxUnavailable &&
        e.message === "this system does not support the kernel namespaces that are required for sandboxing (uid_map failed); use '--no-sandbox' to disable sandboxing",
    );
    const d = decideSandbox({ ...base, sandboxAvailable: false, sandboxFallback: true, unavailableReason: 'uid_map failed' });
    assert.deepEqual(d, {
      useSandbox: false,
      warning: `warning: building '${DRV}' WITHOUT a sandbox: sandboxing is unavailable on this host (uid_map failed) and 'sandbox-fallback' is true`,
    });
    assert.deepEqual(decideSandbox({ ...base, mode: 'false', sandboxAvailable: false }), { useSandbox: false, warning: null });
  });

  test('no sandbox + diverted store: refused even with sandbox-fallback', () => {
    assert.throws(
      () => decideSandbox({ ...base, divertedStore: true, sandboxAvailable: false, sandboxFallback: true, realStoreDir: '/home/u/s', storeDir: '/nix/store' }),
      (e: unknown) =>
        e instanceof DivertedStoreNeedsSandbox &&
        e.message ===
          `cannot build '${DRV}': the store's physical directory '/home/u/s' differs from '/nix/store', and only a sandbox can show its paths there, but sandboxing is unavailable; see 'drvbox doctor'`,
    );
  });
});

describe('sandbox-paths setting words', () => {
  test('target=source, plain paths and the optional ? suffix', () => {
    assert.deepEqual(parseSandboxPaths(['/bin/sh=/usr/bin/busybox', '/dev/kvm?', '', '/a=/b?']), [
      { target: '/bin/sh', source: '/usr/bin/busybox', optional: false },
      { target: '/dev/kvm', source: '/dev/kvm', optional: true },
      { target: '/a', source: '/b', optional: true },
    ]);
  });
});

describe('launcher protocol', () => {
  test('records are tag, length, payload after the magic', () => {
    const b = encodeRequest({ mode: Mode.RUN, builder: '/bin/sh', argv: ['sh'] });
    assert.equal(b.subarray(0, 8).toString('latin1'), 'DRVBOX01');
    assert.deepEqual([b.readUInt32LE(8), b.readUInt32LE(12), Number(b.readBigUInt64LE(16))], [Tag.MODE, 8, Mode.RUN]);
    assert.deepEqual([b.readUInt32LE(24), b.readUInt32LE(28), b.subarray(32, 39).toString()], [Tag.BUILDER, 7, '/bin/sh']);
    assert.deepEqual([b.readUInt32LE(39), b.readUInt32LE(43), b.subarray(47).toString()], [Tag.ARG, 2, 'sh']);
  });

  test('the chroot dir to create, and its owner as uid << 32 | gid', () => {
    const b = encodeRequest({ mode: Mode.RUN, makeChroot: true, chrootOwner: { uid: 30001, gid: 30000 } });
    assert.deepEqual([b.readUInt32LE(24), b.readUInt32LE(28), Number(b.readBigUInt64LE(32))], [Tag.MAKE_CHROOT, 8, 1]);
    assert.deepEqual([b.readUInt32LE(40), b.readUInt32LE(44), b.readUInt32LE(48), b.readUInt32LE(52)], [Tag.CHROOT_OWNER, 8, 30000, 30001]);
  });

  test('a build user\'s supplementary groups: one GROUP record each, after DROP_GROUPS', () => {
    const b = encodeRequest({ mode: Mode.RUN, dropGroups: true, groups: [100, 36] });
    assert.deepEqual([b.readUInt32LE(24), b.readUInt32LE(28), Number(b.readBigUInt64LE(32))], [Tag.DROP_GROUPS, 8, 1]);
    assert.deepEqual([b.readUInt32LE(40), b.readUInt32LE(44), Number(b.readBigUInt64LE(48))], [Tag.GROUP, 8, 100]);
    assert.deepEqual([b.readUInt32LE(56), b.readUInt32LE(60), Number(b.readBigUInt64LE(64))], [Tag.GROUP, 8, 36]);
    assert.equal(b.length, 72);
  });

  test('NUL bytes in builder, arguments, environment and paths are refused before sending', () => {
    const cases: [Parameters<typeof encodeRequest>[0], string][] = [
      [{ mode: 1, builder: '/bin/s\0h' }, 'ctx: builder path "/bin/s\\\\0h" contains a NUL byte'],
      [{ mode: 1, argv: ['ok', 'b\0'] }, 'ctx: argument "b\\\\0" contains a NUL byte'],
      [{ mode: 1, env: [['K\0', 'v']] }, 'ctx: environment variable name "K\\\\0" contains a NUL byte'],
      [{ mode: 1, env: [['K', 'v\0']] }, `ctx: value of environment variable 'K' "v\\\\0" contains a NUL byte`],
      [{ mode: 1, ops: [{ code: 1, flags: 0, mode: 0, a: '/x\0', b: '' }] }, 'ctx: sandbox path "/x\\\\0" contains a NUL byte'],
    ];
    for (const [r, msg] of cases) {
      assert.throws(() => encodeRequest(r, 'ctx'), (e: unknown) => e instanceof SandboxNulByte && e.message === msg, msg);
    }
    assert.throws(() => encodeRequest({ mode: 1, env: [['A=B', 'v']] }, 'ctx'), /environment variable name "A=B" is empty or contains '='/);
  });

  test('status and result lines', () => {
    assert.deepEqual(parseStatusLine('P 42'), { kind: 'pid', pid: 42 });
    assert.deepEqual(parseStatusLine('E executing x: No such file'), { kind: 'error', message: 'executing x: No such file' });
    assert.deepEqual(parseStatusLine('S proc ok'), { kind: 'step-ok', step: 'proc', detail: 'ok' });
    assert.deepEqual(parseStatusLine('F uid_map 1 Operation not permitted'), { kind: 'step-failed', step: 'uid_map', errno: 1, message: 'Operation not permitted' });
    assert.deepEqual(parseStatusLine('H'), { kind: 'held' });
    assert.deepEqual(parseStatusLine('C 2'), { kind: 'path-current', index: 2 });
    assert.deepEqual(parseStatusLine('A 0'), { kind: 'path-done', index: 0 });
    assert.deepEqual(parseStatusLine('A x'), { kind: 'other', text: 'A x' });
    assert.deepEqual(parseStatusLine('H x'), { kind: 'other', text: 'H x' });
    assert.deepEqual(parseResultLine('X 3 0 1500 250 1452\n'), { code: 3, signal: null, cpuUserUs: 1500, cpuSystemUs: 250, maxRssKiB: 1452 });
    assert.deepEqual(parseResultLine('X -1 9 0 0 0\n'), { code: null, signal: 9, cpuUserUs: 0, cpuSystemUs: 0, maxRssKiB: 0 });
    assert.equal(parseResultLine(''), null);
  });
});
