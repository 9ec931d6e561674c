// `drvbox doctor` on Linux: the probe's steps (which one failed, and the fix:
// a sysctl, the AppArmor profile with install steps, or --sandbox false), how
// the launcher build went (and what `npm install` printed then), seccomp,
// user namespaces, cgroups, and the /bin/sh the sandbox gets. Pure given a
// LinuxDoctorHost; localDoctorHost() gathers this machine's facts.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import type { ProbeCheck, ProbeReport } from '../backend.js';
import { apparmorProfile } from './apparmor.js';
import { cgroup2Mount, ownCgroup } from './cgroup.js';
import { hostDefaultShell, type DefaultShell } from './default-shell.js';
import { LAUNCHER_PATH, launcherBuildRecord, type LauncherBuildRecord } from './launcher-path.js';

export interface LinuxDoctorHost {
  probe(): Promise<ProbeReport>;
  uid: number;
  launcherPath: string;
  launcherBuild: LauncherBuildRecord | null;
  /** `kernel.apparmor_restrict_unprivileged_userns` etc.; null when absent. */
  sysctl(name: string): string | null;
  /** AppArmor is enabled in the kernel. */
  apparmorEnabled: boolean;
  /** /etc/apparmor.d/drvbox-launcher exists. */
  apparmorProfileInstalled: boolean;
  /** cgroup v2: where it is mounted, our cgroup, and whether we may create a child there. */
  cgroup: { mount: string | null; own: string | null; writable: boolean };
  defaultShell: DefaultShell;
}

export interface LinuxDoctorReport {
  usable: boolean;
  checks: ProbeCheck[];
  /** Longer texts: the AppArmor profile to install, what npm install printed. */
  notes: string[];
  defaultSandboxPaths: DefaultShell;
  apparmor: { enabled: boolean; restrictUnprivilegedUserns: string | null; profileInstalled: boolean };
  launcher: { path: string; build: LauncherBuildRecord | null };
}

const APPARMOR_README = 'backends/linux/apparmor/README.md';

export async function linuxDoctor(h: LinuxDoctorHost): Promise<LinuxDoctorReport> {
  const probe = await h.probe();
  const checks: ProbeCheck[] = [];
  const notes: string[] = [];
  const restrict = h.sysctl('kernel.apparmor_restrict_unprivileged_userns');
  for (const c of probe.checks) {
    if (c.name === 'launcher' && !c.ok) {
      const b = h.launcherBuild;
      const when = b?.at ? ` at ${b.at}` : '';
      const how = !b
        ? "the build step never ran: 'npm install' or 'npm run build' builds it"
        : b.ok
          ? `the last build step${when} built '${b.path ?? '?'}'`
          : `the build step ran${when}${b.compiler ? ` with '${b.compiler}'` : ''}`;
      checks.push({ ...c, detail: `${c.detail} (${how})` });
      if (b?.printed?.length) notes.push(['npm install printed:', ...b.printed.map((l) => `  ${l}`)].join('\n'));
      continue;
    }
    if (c.name === 'cgroups') continue; // replaced below, with more facts
    checks.push(c);
  }
  const ns = probe.checks.find((c) => c.name === 'namespaces');
  const aaAdvised = ns && !ns.ok && (ns.fix ?? '').includes('AppArmor');
  if (aaAdvised || (restrict === '1' && !h.apparmorProfileInstalled)) {
    let profile: string;
    try {
      profile = apparmorProfile(h.launcherPath);
    } catch (e) {
      profile = `# ${(e as Error).message}`;
    }
    notes.push(
      [
        `AppArmor profile for the launcher (kernel.apparmor_restrict_unprivileged_userns = ${restrict ?? '?'}):`,
        `  save it as /etc/apparmor.d/drvbox-launcher, then run 'sudo apparmor_parser -r /etc/apparmor.d/drvbox-launcher'`,
        `  (details and alternatives: ${APPARMOR_README}; or build with '--sandbox false')`,
        ...profile.trimEnd().split('\n').map((l) => `    ${l}`),
      ].join('\n'),
    );
  }
  checks.push({
    name: 'apparmor',
    ok: !(restrict === '1' && !h.apparmorProfileInstalled && h.uid !== 0 && !probe.usable),
    detail: !h.apparmorEnabled
      ? 'not enabled'
      : restrict === '1'
        ? `restricts unprivileged user namespaces; drvbox's profile is ${h.apparmorProfileInstalled ? 'installed' : 'not installed'}`
        : 'enabled; does not restrict user namespaces',
  });
  if (h.uid === 0 && (restrict === '1' || h.sysctl('kernel.unprivileged_userns_clone') === '0' || h.sysctl('user.max_user_namespaces') === '0')) {
    notes.push('running as root: the probe passed for root; unprivileged users are restricted by the sysctls above and need the fix shown for them');
  }
  const cg = h.cgroup;
  checks.push(
    cg.mount === null
      ? { name: 'cgroups', ok: false, detail: "no cgroup v2 hierarchy: 'use-cgroups' cannot work", fix: 'mount cgroup2 (systemd does by default), or leave use-cgroups off' }
      : cg.writable
        ? { name: 'cgroups', ok: true, detail: `cgroup v2 at ${cg.mount}; builds can get a cgroup below ${cg.own ?? '/'} (use-cgroups)` }
        : {
            name: 'cgroups',
            ok: true,
            detail: `cgroup v2 at ${cg.mount}, but ${cg.mount}${cg.own === '/' ? '' : (cg.own ?? '')} is not writable: 'use-cgroups' needs root or a delegated subtree`,
          },
  );
  checks.push(
    h.defaultShell.paths.length > 0
      ? { name: '/bin/sh', ok: true, detail: `${h.defaultShell.how} (default sandbox-paths: ${h.defaultShell.paths.join(' ')})` }
      : {
          name: '/bin/sh',
          ok: false,
          detail: h.defaultShell.how,
          fix: "install busybox-static, or map a shell with 'sandbox-paths' (e.g. /bin/sh=/path/to/static/sh)",
        },
  );
  return {
    usable: probe.usable,
    checks,
    notes,
    defaultSandboxPaths: h.defaultShell,
    apparmor: { enabled: h.apparmorEnabled, restrictUnprivilegedUserns: restrict, profileInstalled: h.apparmorProfileInstalled },
    launcher: { path: h.launcherPath, build: h.launcherBuild },
  };
}

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

export function localDoctorHost(probe: () => Promise<ProbeReport>): LinuxDoctorHost {
  const mount = cgroup2Mount(read('/proc/self/mountinfo') ?? '');
  const own = ownCgroup(read('/proc/self/cgroup') ?? '');
  let writable = false;
  if (mount !== null) {
    try {
      accessSync(`${mount}${own === '/' || own === null ? '' : own}`, constants.W_OK);
      writable = true;
    } catch {
      writable = false;
    }
  }
  return {
    probe,
    uid: process.getuid?.() ?? -1,
    launcherPath: LAUNCHER_PATH,
    launcherBuild: launcherBuildRecord(),
    sysctl: (name) => read(`/proc/sys/${name.replaceAll('.', '/')}`),
    apparmorEnabled: read('/sys/module/apparmor/parameters/enabled') === 'Y',
    apparmorProfileInstalled: existsSync('/etc/apparmor.d/drvbox-launcher'),
    cgroup: { mount, own, writable },
    defaultShell: hostDefaultShell(),
  };
}
