// Human-readable form of a LinuxSandboxSpec: namespaces, identity, the mount
// table in the order it is built, and the seccomp rules.
import type { LinuxSandboxSpec } from './plan.js';
import { describeRule } from './seccomp.js';

const oct = (m: number): string => '0' + m.toString(8);

export function explainLinux(spec: LinuxSandboxSpec): string {
  const out: string[] = [];
  const r = spec.request;
  out.push(`sandbox for ${r.drvPath} (${r.system})`);
  const ns = Object.entries(spec.namespaces)
    .filter(([, on]) => on)
    .map(([n]) => n);
  out.push(`namespaces: ${ns.join(', ')}${spec.namespaces.net ? '' : ' (host network: fixed-output)'}`);
  out.push(`identity: uid ${spec.sandboxUid} gid ${spec.sandboxGid} inside; uid_map "${spec.uidMap}", gid_map "${spec.gidMap}", setgroups deny`);
  out.push(`hostname: ${spec.hostname}, domainname: ${spec.domainname}${spec.loopback ? ', lo up' : ''}`);
  out.push(`root: tmpfs on ${spec.chrootDir} (pivot_root; read-only once populated); outputs in ${spec.chrootStoreDir}`);
  if (spec.hold) {
    out.push('held: the sandbox is set up ahead of its last inputs; the builder starts on release, store paths are added or removed until then');
  }
  if (spec.keepMountNamespace) out.push('recursive builds: the pre-pivot mount namespace is kept so store paths can be added while running');
  out.push('mounts and files:');
  for (const o of spec.ops) {
    switch (o.op) {
      case 'mkdir':
        out.push(`  dir      ${o.disk ? '<chroot on disk>' : ''}${o.path} ${oct(o.mode)}`);
        break;
      case 'write':
        out.push(`  file     ${o.path} ${oct(o.mode)} (${o.content.split('\n').filter(Boolean).length} lines)`);
        break;
      case 'symlink':
        out.push(`  symlink  ${o.path} -> ${o.text}`);
        break;
      case 'copy-symlink':
        out.push(`  symlink  ${o.path} (copy of ${o.source})`);
        break;
      case 'bind': {
        const flags = [o.readOnly ? 'ro' : 'rw', o.nosuid ? 'nosuid' : '', o.nodev ? 'nodev' : '', o.shared ? 'shared' : '', o.optional ? 'optional' : '', o.recursive ? 'rec' : '']
          .filter(Boolean)
          .join(',');
        out.push(`  bind     ${o.path} <- ${o.sourceOnDisk ? '<chroot on disk>' : ''}${o.source} [${flags}] ${o.why}`);
        break;
      }
      case 'mount':
        out.push(`  mount    ${o.path} ${o.fstype}${o.data ? ` (${o.data})` : ''}`);
        break;
      case 'remount-ro':
        out.push(`  readonly ${o.path}`);
        break;
    }
  }
  out.push(`working directory: ${spec.cwd}`);
  out.push(`builder: ${spec.builder} argv ${JSON.stringify(spec.argv)}`);
  out.push(`environment: ${spec.env.length} variables`);
  if (spec.personality !== null) {
    const p = spec.personality;
    out.push(`personality: 0x${p.toString(16)}${p & 0x0008 ? ' (32-bit)' : ''}${p & 0x0040000 ? ' (no address randomisation)' : ''}`);
  }
  out.push(`no_new_privs: ${spec.noNewPrivileges ? 'yes' : 'no (allow-new-privileges)'}; core dumps off; other fds closed`);
  if (spec.seccomp) {
    out.push(`seccomp (default allow; archs ${spec.seccomp.archs.join(', ')}):`);
    for (const rule of spec.seccomp.rules) out.push(`  ${describeRule(rule)}${rule.optional ? ' (if the kernel and libseccomp know it)' : ''}`);
  } else {
    out.push('seccomp: off (filter-syscalls = false): builders can create setuid/setgid files');
  }
  return out.join('\n') + '\n';
}
