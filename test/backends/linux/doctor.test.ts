// `drvbox doctor` on Linux from injected host facts: which probe step failed
// and its fix (AppArmor profile with install steps, sysctls, --sandbox
// false), the launcher's build record and what npm install printed, seccomp,
// cgroups, the sandbox's /bin/sh.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ProbeCheck, ProbeReport } from '../../../backends/backend.js';
import { linuxDoctor, type LinuxDoctorHost } from '../../../backends/linux/doctor.js';
import { adviceFor } from '../../../backends/linux/probe.js';
import { launcherBuildRecord } from '../../../backends/linux/launcher-path.js';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, requireLinux } from '../../helpers/host.js';
import { tempDir } from '../../helpers/tmp.js';

const LAUNCHER = '/opt/drvbox/dist/launcher/drvbox-launcher';
const okProbe: ProbeReport = {
  backend: 'linux',
  usable: true,
  checks: [
    { name: 'launcher', ok: true, detail: LAUNCHER },
    { name: 'sysctl', ok: true, detail: 'user.max_user_namespaces=15000' },
    { name: 'libseccomp', ok: true, detail: 'filter compiles (67 instructions)' },
    { name: 'namespaces', ok: true, detail: 'user, mount, pid, ipc, uts, net: clone, uid_map, mount, proc, loopback, seccomp work' },
    { name: 'cgroups', ok: true, detail: 'cgroup v2 present' },
  ],
};

function host(over: Partial<LinuxDoctorHost> & { sysctls?: Record<string, string>; probeReport?: ProbeReport } = {}): LinuxDoctorHost {
  return {
    probe: async () => over.probeReport ?? okProbe,
    uid: 1000,
    launcherPath: LAUNCHER,
    launcherBuild: { ok: true, path: LAUNCHER, compiler: 'cc', at: '2026-01-02T03:04:05.000Z' },
    sysctl: (n) => over.sysctls?.[n] ?? null,
    apparmorEnabled: false,
    apparmorProfileInstalled: false,
    cgroup: { mount: '/sys/fs/cgroup', own: '/user.slice/user-1000.slice/session-1.scope', writable: false },
    defaultShell: { paths: ['/bin/sh=/usr/bin/busybox'], how: 'static busybox at /usr/bin/busybox' },
    ...over,
  };
}

const byName = (checks: ProbeCheck[]): Record<string, ProbeCheck> => Object.fromEntries(checks.map((c) => [c.name, c]));

describe('linux doctor', () => {
  test('a working host: every check ok, the default /bin/sh, cgroups not delegated', async () => {
    const r = await linuxDoctor(host());
    assert.equal(r.usable, true);
    assert.deepEqual(
      r.checks.map((c) => [c.name, c.ok]),
      [
        ['launcher', true],
        ['sysctl', true],
        ['libseccomp', true],
        ['namespaces', true],
        ['apparmor', true],
        ['cgroups', true],
        ['/bin/sh', true],
      ],
    );
    const c = byName(r.checks);
    assert.equal(c.cgroups!.detail, "cgroup v2 at /sys/fs/cgroup, but /sys/fs/cgroup/user.slice/user-1000.slice/session-1.scope is not writable: 'use-cgroups' needs root or a delegated subtree");
    assert.equal(c['/bin/sh']!.detail, 'static busybox at /usr/bin/busybox (default sandbox-paths: /bin/sh=/usr/bin/busybox)');
    assert.deepEqual(r.notes, []);
  });

  test('Ubuntu 24.04: AppArmor denies the uid_map write; the fix and the profile to install, with its path', async () => {
    const sysctls = { 'kernel.apparmor_restrict_unprivileged_userns': '1' };
    const ns = adviceFor('uid_map', 13, 'Permission denied', { 'kernel.apparmor_restrict_unprivileged_userns': '1' });
    const probeReport: ProbeReport = { backend: 'linux', usable: false, checks: okProbe.checks.map((c) => (c.name === 'namespaces' ? ns : c)) };
    const r = await linuxDoctor(host({ sysctls, probeReport, apparmorEnabled: true }));
    assert.equal(r.usable, false);
    const c = byName(r.checks);
    assert.equal(c.namespaces!.ok, false);
    assert.equal(c.namespaces!.detail, 'uid_map failed: Permission denied (errno 13)');
    assert.match(c.namespaces!.fix!, /AppArmor restricts user namespaces here/);
    assert.match(c.namespaces!.fix!, /'--sandbox false'/);
    assert.deepEqual([c.apparmor!.ok, c.apparmor!.detail], [false, "restricts unprivileged user namespaces; drvbox's profile is not installed"]);
    assert.equal(r.notes.length, 1);
    const note = r.notes[0]!.split('\n');
    assert.deepEqual(note.slice(0, 3), [
      'AppArmor profile for the launcher (kernel.apparmor_restrict_unprivileged_userns = 1):',
      "  save it as /etc/apparmor.d/drvbox-launcher, then run 'sudo apparmor_parser -r /etc/apparmor.d/drvbox-launcher'",
      "  (details and alternatives: backends/linux/apparmor/README.md; or build with '--sandbox false')",
    ]);
    assert.ok(note.includes(`    profile drvbox-launcher ${LAUNCHER} flags=(unconfined) {`), r.notes[0]);
    assert.ok(note.includes('      userns,'));
  });

  test('the launcher was never built: the reason, and what npm install printed then', async () => {
    const printed = [
      'drvbox: the Linux sandbox launcher was not built: no C compiler found (cc: ENOENT).',
      'drvbox: install a C compiler (e.g. `apt-get install gcc`) and run `npm run build`;',
      'drvbox: until then sandboxed builds are unavailable (see `drvbox doctor`).',
    ];
    const probeReport: ProbeReport = {
      backend: 'linux',
      usable: false,
      checks: [
        {
          name: 'launcher',
          ok: false,
          detail: 'the sandbox launcher is not built: no C compiler found (cc: ENOENT)',
          fix: "install a C compiler (e.g. 'apt-get install gcc') and run 'npm run build'; until then build with '--sandbox false'",
        },
        okProbe.checks[1]!,
        okProbe.checks[2]!,
      ],
    };
    const r = await linuxDoctor(host({ probeReport, launcherBuild: { ok: false, reason: 'no C compiler found (cc: ENOENT)', compiler: 'cc', at: '2026-01-02T03:04:05.000Z', printed } }));
    const c = byName(r.checks);
    assert.equal(c.launcher!.detail, "the sandbox launcher is not built: no C compiler found (cc: ENOENT) (the build step ran at 2026-01-02T03:04:05.000Z with 'cc')");
    assert.match(c.launcher!.fix!, /apt-get install gcc/);
    assert.deepEqual(r.notes, [['npm install printed:', ...printed.map((l) => `  ${l}`)].join('\n')]);
    const never = await linuxDoctor(host({ probeReport, launcherBuild: null }));
    assert.match(byName(never.checks).launcher!.detail, /\(the build step never ran: 'npm install' or 'npm run build' builds it\)$/);
  });

  test('libseccomp missing; no cgroup v2; no /bin/sh for the sandbox; root on a restricted host', async () => {
    const probeReport: ProbeReport = {
      backend: 'linux',
      usable: true,
      checks: okProbe.checks.map((c) =>
        c.name === 'libseccomp'
          ? { name: 'libseccomp', ok: false, detail: 'libseccomp.so.2: cannot open shared object file', fix: "install libseccomp2 ('apt-get install libseccomp2'), or set 'filter-syscalls = false'" }
          : c,
      ),
    };
    const r = await linuxDoctor(
      host({
        probeReport,
        uid: 0,
        sysctls: { 'kernel.unprivileged_userns_clone': '0' },
        cgroup: { mount: null, own: null, writable: false },
        defaultShell: { paths: [], how: "no static busybox and /bin/sh ('/bin/sh') is not an ELF program: the sandbox has no /bin/sh" },
      }),
    );
    const c = byName(r.checks);
    assert.deepEqual([c.libseccomp!.ok, c.libseccomp!.fix], [false, "install libseccomp2 ('apt-get install libseccomp2'), or set 'filter-syscalls = false'"]);
    assert.deepEqual([c.cgroups!.ok, c.cgroups!.detail], [false, "no cgroup v2 hierarchy: 'use-cgroups' cannot work"]);
    assert.deepEqual([c['/bin/sh']!.ok, c['/bin/sh']!.fix], [false, "install busybox-static, or map a shell with 'sandbox-paths' (e.g. /bin/sh=/path/to/static/sh)"]);
    assert.deepEqual(r.notes, ['running as root: the probe passed for root; unprivileged users are restricted by the sysctls above and need the fix shown for them']);
  });

  test('npm install without a C compiler: a clear message, and the record doctor shows later', (t) => {
    requireLinux('the launcher is only built on Linux');
    const dir = tempDir(t);
    mkdirSync(join(dir, 'backends', 'linux'), { recursive: true });
    for (const f of ['build-launcher.mjs', 'launcher.c']) copyFileSync(join(REPO_ROOT, 'backends', 'linux', f), join(dir, 'backends', 'linux', f));
    const r = spawnSync(process.execPath, [join(dir, 'backends', 'linux', 'build-launcher.mjs')], { env: { ...process.env, CC: '/nonexistent/cc' }, encoding: 'utf8' });
    assert.equal(r.status, 0, 'a missing compiler must not fail npm install');
    const printed = [
      'drvbox: the Linux sandbox launcher was not built: no C compiler found (/nonexistent/cc: ENOENT).',
      'drvbox: install a C compiler (e.g. `apt-get install gcc`) and run `npm run build`;',
      'drvbox: until then sandboxed builds are unavailable (see `drvbox doctor`).',
    ];
    assert.equal(r.stderr, printed.join('\n') + '\n');
    const rec = launcherBuildRecord(join(dir, 'dist', 'launcher', 'build-status.json'));
    assert.deepEqual({ ...rec, at: typeof rec?.at }, { ok: false, reason: 'no C compiler found (/nonexistent/cc: ENOENT)', compiler: '/nonexistent/cc', at: 'string', printed });
  });
});
