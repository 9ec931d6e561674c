// BuildRequest + PlanHost -> LinuxSandboxSpec: every decision about the Linux
// sandbox, as plain data. Pure but for the PlanHost oracle (lstat, realpath),
// so it runs and is tested on any OS. The launcher carries the spec out.
//
// Shape of the sandbox (mirrors Nix's chroot builds, hardened):
//   /                a small tmpfs mounted on the chroot dir
//                    `<real drv path>.chroot`, read-only once populated
//                    (file creation on the store's disk is far slower)
//   /tmp             `<chroot>/tmp` on disk, 1777, writable
//   /etc             passwd, group, hosts (+ FOD: resolv.conf, services,
//                    hosts, nsswitch.conf); read-only with the root
//   <storeDir>       `<chroot>/store` on disk, 1775, writable (outputs land
//                    there), only the input closure (read-only binds)
//   <build dir>      sandbox-build-dir, the host build dir bound writable
//   /dev             full null random tty urandom zero (+kvm), fd/std* links,
//                    shm (tmpfs), pts (devpts newinstance) + ptmx
//   /proc            fresh procfs of the build's pid namespace
import { basename, posix } from 'node:path';
import type { BuildRequest, PlanHost, SandboxPathMapping, SandboxSpec } from '../backend.js';
import { CloneFlag } from './protocol.js';
import { seccompPolicy, type SeccompPolicy } from './seccomp.js';
import { isInDir, validateSandboxPath } from './sandbox-paths.js';
import {
  ImpureHostDepNotAllowed,
  SandboxInputMissing,
  SandboxPathMissing,
  SandboxRequestInvalid,
} from './errors.js';

/** The uid/gid the builder has inside (Nix's sandboxUid/sandboxGid). */
export const SANDBOX_UID = 1000;
export const SANDBOX_GID = 100;
export const NOBODY = 65534;

const PER_LINUX32 = 0x0008;
const ADDR_NO_RANDOMIZE = 0x0040000;

/** Extra host facts the Linux plan can use; all optional. */
export interface LinuxPlanHost extends PlanHost {
  /** Caller's uid/gid (default: this process). */
  uid?: number;
  gid?: number;
  /** The host's `system-features` (Nix binds /dev/kvm whenever they include `kvm`). */
  systemFeatures?: readonly string[];
}

export type SandboxOp =
  /** `disk`: under the on-disk chroot dir instead of the tmpfs root. */
  | { op: 'mkdir'; path: string; mode: number; disk?: boolean }
  | { op: 'write'; path: string; mode: number; content: string }
  | { op: 'symlink'; path: string; text: string }
  | { op: 'copy-symlink'; path: string; source: string; optional: boolean }
  | {
      op: 'bind';
      path: string;
      source: string;
      readOnly: boolean;
      optional: boolean;
      shared: boolean;
      nosuid: boolean;
      nodev: boolean;
      /** `source` is relative to the on-disk chroot dir. */
      sourceOnDisk?: boolean;
      /** With the mounts below the source (host directories of sandbox-paths, as Nix's MS_REC); store paths hold none. */
      recursive?: boolean;
      /** Why it is there, for explain. */
      why: string;
    }
  | { op: 'mount'; path: string; fstype: string; data: string; nosuid: boolean; nodev: boolean; noexec: boolean; optional: boolean }
  | { op: 'remount-ro'; path: string };

export interface Namespaces {
  user: boolean;
  mount: boolean;
  pid: boolean;
  ipc: boolean;
  uts: boolean;
  net: boolean;
  cgroup: boolean;
}

export interface LinuxSandboxSpec extends SandboxSpec {
  backend: 'linux';
  request: BuildRequest;
  /** Host path of the chroot dir (on disk; the tmpfs root covers it inside). */
  chrootDir: string;
  /** On-disk dir that is the store dir inside: outputs are found here. */
  chrootStoreDir: string;
  /** The store dir as seen in the kept (pre-pivot) mount namespace. */
  mountedStoreDir: string;
  namespaces: Namespaces;
  cloneFlags: number;
  /** Contents written to /proc/<pid>/uid_map and gid_map. */
  uidMap: string;
  gidMap: string;
  /** The init writes its own maps (one id, the caller's); else the monitor does. */
  selfMap: boolean;
  sandboxUid: number;
  sandboxGid: number;
  hostname: string;
  domainname: string;
  loopback: boolean;
  ops: SandboxOp[];
  /** Keep the pre-pivot mount namespace for addPath (recursive builds, held builds). */
  keepMountNamespace: boolean;
  /** Planned for startHeld (request.held): the builder waits for release(). */
  hold: boolean;
  cwd: string;
  builder: string;
  argv: string[];
  env: [string, string][];
  personality: number | null;
  noNewPrivileges: boolean;
  seccomp: SeccompPolicy | null;
  dropSupplementaryGroups: boolean;
  /** Logical store paths visible inside at start (for addPath no-ops). */
  visiblePaths: string[];
  /** Host uid/gid that should own the outputs afterwards. */
  ownerUid: number;
  ownerGid: number;
}

function context(req: BuildRequest): string {
  return `derivation '${req.drvPath}'`;
}

/** Where a logical store path lives on the host. */
export function physicalPath(req: BuildRequest, logical: string): string {
  if (!isInDir(logical, req.storeDir)) {
    throw new SandboxRequestInvalid(`${context(req)}: '${logical}' is not in the store '${req.storeDir}'`, { path: logical });
  }
  return req.realStoreDir + logical.slice(req.storeDir.length);
}

/** The personality the builder runs with (Nix: 32-bit for i686 on x86_64, no ASLR). */
export function personalityFor(system: string, nodeArch: string): number {
  let p = ADDR_NO_RANDOMIZE;
  if ((system === 'i686-linux' && nodeArch === 'x64') || ((system === 'armv7l-linux' || system === 'armv6l-linux') && nodeArch === 'arm64')) {
    p |= PER_LINUX32;
  }
  return p;
}

function checkAbsolute(req: BuildRequest, what: string, p: string): void {
  if (!p.startsWith('/') || p.split('/').includes('..')) {
    throw new SandboxRequestInvalid(`${context(req)}: ${what} '${p}' must be an absolute path without '..'`, { [what]: p });
  }
}

const normalise = (p: string): string => posix.normalize(p).replace(/(.)\/+$/, '$1');

export function planLinux(req: BuildRequest, host: LinuxPlanHost): LinuxSandboxSpec {
  const ctx = context(req);
  checkAbsolute(req, 'storeDir', req.storeDir);
  checkAbsolute(req, 'realStoreDir', req.realStoreDir);
  checkAbsolute(req, 'buildDirHost', req.buildDirHost);
  checkAbsolute(req, 'buildDirSandbox', req.buildDirSandbox);
  const storeDir = normalise(req.storeDir);
  const buildDir = normalise(req.buildDirSandbox);
  if (storeDir === '/' || buildDir === '/') {
    throw new SandboxRequestInvalid(`${ctx}: neither the store dir nor the build dir may be '/'`, {});
  }
  if (isInDir(buildDir, storeDir) || isInDir(storeDir, buildDir)) {
    throw new SandboxRequestInvalid(`${ctx}: sandbox-build-dir '${buildDir}' overlaps the store dir '${storeDir}'`, {
      buildDir,
      storeDir,
    });
  }
  for (const reserved of ['/proc', '/dev', '/etc', '/tmp']) {
    if (isInDir(buildDir, reserved)) {
      throw new SandboxRequestInvalid(`${ctx}: sandbox-build-dir '${buildDir}' must not be under '${reserved}'`, { buildDir });
    }
  }

  const chrootDir = host.realpath(req.realStoreDir) + '/' + basename(req.drvPath) + '.chroot';
  const chrootStoreDir = chrootDir + '/store';
  const outputs = new Set(Object.values(req.scratchOutputs));
  const uidRange = (req.buildUser?.uidCount ?? 1) > 1;
  const hold = req.held === true;
  // A held sandbox gets its last inputs through the kept namespace.
  const keepMountNamespace = hold || req.requiredSystemFeatures.includes('recursive-nix') || req.daemonSocketHost !== null;

  const ops: SandboxOp[] = [];
  const bind = (path: string, source: string, why: string, o: Partial<Extract<SandboxOp, { op: 'bind' }>> = {}): void => {
    ops.push({ op: 'bind', path, source, why, readOnly: true, optional: false, shared: false, nosuid: true, nodev: true, ...o });
  };

  // Disk-backed parts: /tmp and the store dir (outputs).
  ops.push({ op: 'mkdir', path: '/tmp', mode: 0o1777, disk: true });
  ops.push({ op: 'mkdir', path: '/store', mode: 0o1775, disk: true });
  bind('/tmp', '/tmp', 'writable /tmp', { readOnly: false, sourceOnDisk: true });

  // /etc
  const sandboxUid = uidRange ? 0 : SANDBOX_UID;
  const sandboxGid = uidRange ? 0 : SANDBOX_GID;
  ops.push({
    op: 'write',
    path: '/etc/passwd',
    mode: 0o644,
    content:
      `root:x:0:0:Nix build user:${buildDir}:/noshell\n` +
      `nixbld:x:${sandboxUid}:${sandboxGid}:Nix build user:${buildDir}:/noshell\n` +
      `nobody:x:${NOBODY}:${NOBODY}:Nobody:/:/noshell\n`,
  });
  ops.push({ op: 'write', path: '/etc/group', mode: 0o644, content: `root:x:0:\nnixbld:!:${sandboxGid}:\nnogroup:x:${NOBODY}:\n` });
  if (!req.fixedOutput) {
    ops.push({ op: 'write', path: '/etc/hosts', mode: 0o644, content: '127.0.0.1 localhost\n::1 localhost\n' });
  } else {
    // Name resolution only through files and DNS: nothing else of the host's
    // NSS configuration leaks into fixed-output builds.
    ops.push({ op: 'write', path: '/etc/nsswitch.conf', mode: 0o644, content: 'hosts: files dns\nservices: files\n' });
    for (const p of ['/etc/resolv.conf', '/etc/services', '/etc/hosts']) {
      if (host.lstat(p) !== 'missing') bind(p, p, 'fixed-output: host name resolution', { optional: true });
    }
  }

  // The store: writable for the outputs, holding only the input closure.
  bind(storeDir, '/store', keepMountNamespace ? `writable store dir, shared for ${hold ? 'paths added while held' : 'recursive builds'}` : 'writable store dir', {
    readOnly: false,
    shared: keepMountNamespace,
    sourceOnDisk: true,
  });
  const visible = new Set<string>();
  const inputs = [...new Set(req.inputPaths)].sort();
  for (const p of inputs) {
    if (outputs.has(p)) continue; // never pre-populate an output
    const src = physicalPath(req, p);
    const kind = host.lstat(src);
    if (kind === 'missing') {
      throw new SandboxInputMissing(`${ctx}: input '${p}' is missing from the store ('${src}')`, { path: p, source: src });
    }
    if (kind === 'symlink') ops.push({ op: 'copy-symlink', path: p, source: src, optional: false });
    else bind(p, src, 'input');
    visible.add(p);
  }

  // The build dir.
  bind(buildDir, req.buildDirHost, 'build dir', { readOnly: false, nodev: true, nosuid: true });

  // sandbox-paths and allowed impure host deps.
  const mappings: SandboxPathMapping[] = [];
  for (const m of req.sandboxPaths) mappings.push(validateSandboxPath(m, ctx));
  for (const dep of req.impureHostDeps) {
    const canon = normalise(dep);
    const allowed = req.allowedImpureHostDeps.some((a) => isInDir(canon, normalise(a)));
    if (!allowed) {
      throw new ImpureHostDepNotAllowed(
        `derivation '${req.drvPath}' requested impure path '${dep}', but it was not in allowed-impure-host-deps`,
        { path: dep },
      );
    }
    mappings.push(validateSandboxPath({ target: dep, source: dep, optional: true }, ctx));
  }
  const targets = new Map<string, SandboxPathMapping>();
  for (const m of mappings) targets.set(m.target, m); // later entries win, as in Nix
  const hostDev = targets.has('/dev');
  for (const m of [...targets.values()].sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : 0))) {
    if (m.source === '/proc') continue; // Nix: /proc is always a fresh procfs
    if (outputs.has(m.target)) continue;
    if (isInDir(m.target, buildDir) || isInDir(buildDir, m.target)) {
      throw new SandboxRequestInvalid(`${ctx}: sandbox path '${m.target}' overlaps the build dir '${buildDir}'`, { target: m.target });
    }
    if (m.target === storeDir || isInDir(storeDir, m.target)) {
      throw new SandboxRequestInvalid(`${ctx}: sandbox path '${m.target}' would hide the store dir '${storeDir}'`, {
        target: m.target,
      });
    }
    if (isInDir(m.target, '/proc')) {
      throw new SandboxRequestInvalid(`${ctx}: sandbox path '${m.target}' is under /proc, which is always fresh`, { target: m.target });
    }
    if (isInDir(m.target, storeDir) && visible.has(m.target)) continue;
    const kind = host.lstat(m.source);
    if (kind === 'missing') {
      if (m.optional) continue;
      throw new SandboxPathMissing(`${ctx}: sandbox path '${m.source}' does not exist (append '?' to make it optional)`, {
        source: m.source,
      });
    }
    // Device nodes must stay usable (no nodev); everything from the host is
    // read-only so a builder that maps to the file's owner cannot change it.
    bind(m.target, m.source, 'sandbox-paths', { optional: m.optional, nodev: false, ...(kind === 'directory' ? { recursive: true } : {}) });
    if (isInDir(m.target, storeDir)) visible.add(m.target);
  }

  // /dev
  if (!hostDev) {
    ops.push({ op: 'mkdir', path: '/dev', mode: 0o755 });
    const devs = ['/dev/full'];
    // As Nix: the host offering `kvm` is enough, the derivation need not ask.
    if ((host.systemFeatures ?? []).includes('kvm') && host.lstat('/dev/kvm') !== 'missing') {
      devs.push('/dev/kvm');
    }
    devs.push('/dev/null', '/dev/random', '/dev/tty', '/dev/urandom', '/dev/zero');
    for (const d of devs) bind(d, d, 'device', { nodev: false });
    ops.push({ op: 'symlink', path: '/dev/fd', text: '/proc/self/fd' });
    ops.push({ op: 'symlink', path: '/dev/stdin', text: '/proc/self/fd/0' });
    ops.push({ op: 'symlink', path: '/dev/stdout', text: '/proc/self/fd/1' });
    ops.push({ op: 'symlink', path: '/dev/stderr', text: '/proc/self/fd/2' });
  }
  ops.push({ op: 'mount', path: '/proc', fstype: 'proc', data: '', nosuid: true, nodev: true, noexec: true, optional: false });
  if (uidRange) ops.push({ op: 'mount', path: '/sys', fstype: 'sysfs', data: '', nosuid: true, nodev: true, noexec: true, optional: false });
  if (!hostDev) {
    if (host.lstat('/dev/shm') !== 'missing') {
      ops.push({
        op: 'mount',
        path: '/dev/shm',
        fstype: 'tmpfs',
        data: `size=${req.settings.sandboxDevShmSize}`,
        nosuid: true,
        nodev: true,
        noexec: false,
        optional: false,
      });
    }
    if (!targets.has('/dev/pts') && host.lstat('/dev/pts/ptmx') !== 'missing') {
      ops.push({
        op: 'mount',
        path: '/dev/pts',
        fstype: 'devpts',
        data: 'newinstance,ptmxmode=0666,mode=0620',
        nosuid: true,
        nodev: false,
        noexec: true,
        optional: false,
      });
      ops.push({ op: 'symlink', path: '/dev/ptmx', text: '/dev/pts/ptmx' });
    }
  }
  // /etc is read-only as a mount (with the whole root), not just by mode:
  // the builder may map to the owner of these files.
  ops.push({ op: 'mkdir', path: '/etc', mode: 0o555 });
  ops.push({ op: 'remount-ro', path: '/' });

  // Identity
  const uid = host.uid ?? process.getuid?.() ?? 0;
  const gid = host.gid ?? process.getgid?.() ?? 0;
  let uidMap: string;
  let gidMap: string;
  let selfMap: boolean;
  if (req.buildUser) {
    const n = req.buildUser.uidCount;
    uidMap = `${sandboxUid} ${req.buildUser.uid} ${n}`;
    gidMap = `${sandboxGid} ${req.buildUser.gid} ${n}`;
    selfMap = false; // only a privileged parent may map another uid
  } else {
    uidMap = `${SANDBOX_UID} ${uid} 1`;
    gidMap = `${SANDBOX_GID} ${gid} 1`;
    selfMap = true;
  }

  const namespaces: Namespaces = {
    user: true,
    mount: true,
    pid: true,
    ipc: true,
    uts: true,
    net: !req.fixedOutput,
    cgroup: req.settings.useCgroups,
  };
  let cloneFlags = CloneFlag.NEWUSER | CloneFlag.NEWNS | CloneFlag.NEWPID | CloneFlag.NEWIPC | CloneFlag.NEWUTS;
  if (namespaces.net) cloneFlags |= CloneFlag.NEWNET;
  // The cgroup namespace is entered by the init after the monitor moved it
  // into the build's cgroup (not a clone flag: the move comes first).

  const env: [string, string][] = Object.entries(req.env);
  return {
    backend: 'linux',
    request: req,
    chrootDir,
    chrootStoreDir,
    mountedStoreDir: chrootDir + storeDir,
    namespaces,
    cloneFlags,
    uidMap,
    gidMap,
    selfMap,
    sandboxUid,
    sandboxGid,
    hostname: 'localhost',
    domainname: '(none)',
    loopback: namespaces.net,
    ops,
    keepMountNamespace,
    hold,
    cwd: buildDir,
    builder: req.builder,
    argv: [basename(req.builder), ...req.args],
    env,
    personality: personalityFor(req.system, host.arch),
    noNewPrivileges: !req.settings.allowNewPrivileges,
    seccomp: req.settings.filterSyscalls ? seccompPolicy(host.arch) : null,
    dropSupplementaryGroups: true,
    visiblePaths: [...visible].sort(),
    ownerUid: uid,
    ownerGid: gid,
  };
}
