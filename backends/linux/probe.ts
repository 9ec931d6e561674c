// What this host can do, found by doing it: the launcher clones a throwaway
// child into the namespaces a build uses, writes its uid map, mounts a tmpfs
// and a procfs, raises loopback and loads a seccomp program, reporting each
// step. The first failing step decides the advice.
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { ProbeCheck, ProbeReport } from '../backend.js';
import { launcherStatus } from './launcher-path.js';
import { CloneFlag, encodeRequest, Mode, type StatusLine } from './protocol.js';
import { compileSeccomp, seccompAvailable, seccompPolicy } from './seccomp.js';
import { spawnLauncher } from './spawn.js';

function readSysctl(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

const APPARMOR_FIX =
  "AppArmor restricts user namespaces here: install drvbox's launcher profile (its text, with this launcher's path, is " +
  "apparmorProfile() / backends/linux/apparmor/) as /etc/apparmor.d/drvbox-launcher and run " +
  "'apparmor_parser -r /etc/apparmor.d/drvbox-launcher'; or 'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0'; " +
  "or build with '--sandbox false'";

/** Turns the first failing probe step into a check with a fix. */
export function adviceFor(step: string, errno: number, message: string, sysctls: Record<string, string | null>): ProbeCheck {
  const detail = `${step} failed: ${message} (errno ${errno})`;
  const aaRestrict = sysctls['kernel.apparmor_restrict_unprivileged_userns'] === '1';
  switch (step) {
    case 'clone': {
      if (sysctls['kernel.unprivileged_userns_clone'] === '0') {
        return { name: 'namespaces', ok: false, detail, fix: "run 'sysctl -w kernel.unprivileged_userns_clone=1' (and persist it in /etc/sysctl.d), or build with '--sandbox false'" };
      }
      if (sysctls['user.max_user_namespaces'] === '0' || errno === 28 /* ENOSPC */) {
        return { name: 'namespaces', ok: false, detail, fix: "run 'sysctl -w user.max_user_namespaces=15000' (and persist it in /etc/sysctl.d), or build with '--sandbox false'" };
      }
      if (aaRestrict) return { name: 'namespaces', ok: false, detail, fix: APPARMOR_FIX };
      return {
        name: 'namespaces',
        ok: false,
        detail,
        fix: "the kernel refuses user namespaces here (a container without them, or a seccomp policy); allow them, or build with '--sandbox false'",
      };
    }
    case 'setgroups':
    case 'uid_map':
    case 'gid_map':
    case 'mount':
      if (aaRestrict) return { name: 'namespaces', ok: false, detail, fix: APPARMOR_FIX };
      return {
        name: 'namespaces',
        ok: false,
        detail,
        fix: "a security module or container policy denies it inside a user namespace; allow user namespaces for the launcher, or build with '--sandbox false'",
      };
    case 'proc':
      return {
        name: 'namespaces',
        ok: false,
        detail,
        fix:
          "procfs cannot be mounted: usually a container whose /proc is partly masked or without CAP_SYS_ADMIN; run the container with " +
          "'--security-opt systempaths=unconfined' (or privileged), or build with '--sandbox false'",
      };
    case 'loopback':
      return { name: 'namespaces', ok: false, detail, fix: "network namespaces do not work here; build with '--sandbox false'" };
    case 'seccomp':
      return { name: 'seccomp', ok: false, detail, fix: "the kernel refuses seccomp filters; set 'filter-syscalls = false' (builders can then create setuid binaries)" };
    default:
      return { name: 'namespaces', ok: false, detail, fix: "build with '--sandbox false'" };
  }
}

export async function probeLinux(): Promise<ProbeReport> {
  const checks: ProbeCheck[] = [];
  if (process.platform !== 'linux') {
    return { backend: 'linux', usable: false, checks: [{ name: 'platform', ok: false, detail: `not Linux (${process.platform})` }] };
  }
  const launcher = launcherStatus();
  checks.push(
    launcher.ok
      ? { name: 'launcher', ok: true, detail: launcher.path }
      : {
          name: 'launcher',
          ok: false,
          detail: `the sandbox launcher is not built: ${launcher.reason}`,
          fix: "install a C compiler (e.g. 'apt-get install gcc') and run 'npm run build'; until then build with '--sandbox false'",
        },
  );
  const sysctls: Record<string, string | null> = {
    'kernel.unprivileged_userns_clone': readSysctl('/proc/sys/kernel/unprivileged_userns_clone'),
    'user.max_user_namespaces': readSysctl('/proc/sys/user/max_user_namespaces'),
    'kernel.apparmor_restrict_unprivileged_userns': readSysctl('/proc/sys/kernel/apparmor_restrict_unprivileged_userns'),
  };
  checks.push({
    name: 'sysctl',
    ok: true,
    detail: Object.entries(sysctls)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => `${k}=${v}`)
      .join(', '),
  });
  // The program the build step precompiled needs no libseccomp loaded here
  // (seccomp-cache.ts: it is used only while that libseccomp is unchanged).
  let bpf: Buffer | null = null;
  try {
    bpf = compileSeccomp(seccompPolicy(process.arch)).bpf;
    checks.push({ name: 'libseccomp', ok: true, detail: `filter compiles (${bpf.length / 8} instructions)` });
  } catch (e) {
    const sc = seccompAvailable();
    checks.push(
      sc.ok
        ? { name: 'libseccomp', ok: false, detail: (e as Error).message, fix: "install libseccomp2, or set 'filter-syscalls = false'" }
        : { name: 'libseccomp', ok: false, detail: sc.error, fix: "install libseccomp2 ('apt-get install libseccomp2'), or set 'filter-syscalls = false'" },
    );
  }
  let usable = false;
  if (launcher.ok) {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const flags = CloneFlag.NEWUSER | CloneFlag.NEWNS | CloneFlag.NEWPID | CloneFlag.NEWIPC | CloneFlag.NEWUTS | CloneFlag.NEWNET;
    const req = encodeRequest({
      mode: Mode.PROBE,
      parentPid: process.pid,
      cloneFlags: flags,
      uidMap: `1000 ${uid} 1`,
      gidMap: `100 ${gid} 1`,
      target: tmpdir(),
      seccomp: bpf,
    });
    const p = spawnLauncher(launcher.path, req, false);
    const [lines] = await Promise.all([p.status, p.exited]);
    const failed = lines.find((l): l is Extract<StatusLine, { kind: 'step-failed' }> => l.kind === 'step-failed');
    const passed = lines.filter((l): l is Extract<StatusLine, { kind: 'step-ok' }> => l.kind === 'step-ok' && l.step !== 'done').map((l) => l.step);
    if (failed) {
      checks.push(adviceFor(failed.step, failed.errno, failed.message, sysctls));
      usable = failed.step === 'seccomp';
    } else if (passed.includes('proc')) {
      checks.push({ name: 'namespaces', ok: true, detail: `user, mount, pid, ipc, uts, net: ${passed.join(', ')} work` });
      usable = true;
    } else {
      const err = lines.find((l) => l.kind === 'error');
      checks.push({
        name: 'namespaces',
        ok: false,
        detail: err && err.kind === 'error' ? err.message : 'the probe child reported nothing',
        fix: "build with '--sandbox false'",
      });
    }
  }
  const cg = existsSync('/sys/fs/cgroup/cgroup.controllers') || existsSync('/sys/fs/cgroup/unified/cgroup.controllers');
  checks.push({ name: 'cgroups', ok: true, detail: cg ? 'cgroup v2 present' : 'no cgroup v2 hierarchy (use-cgroups unavailable)' });
  return { backend: 'linux', usable, checks };
}
