// Carrying out a LinuxSandboxSpec: prepare the chroot dir, hand the launcher
// its request, and wrap the result in a RunningBuild.
import { chmodSync, existsSync, lchownSync, lstatSync, readdirSync, renameSync, rmdirSync, rmSync, unlinkSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { ExitStatus, ResourceUsage, RunningBuild } from '../backend.js';
import { SandboxSetupFailed } from './errors.js';
import { addPathsInside } from './inside-paths.js';
import { ExecFailedBuild } from './exec-failed.js';
import { requireLauncher } from './launcher-path.js';
import type { LinuxSandboxSpec, SandboxOp } from './plan.js';
import { encodeRequest, Mode, OpCode, OpFlag, parseResultLine, type LauncherRequest, type StatusLine, type WireOp } from './protocol.js';
import { compileSeccomp } from './seccomp.js';
import { stopMonitor } from './stop-monitor.js';
import { spawnLauncher, type LauncherProcess } from './spawn.js';
import { launcherServer, runningLauncherServer } from './server.js';
import { cgroupUsage, createBuildCgroup, destroyCgroup, killCgroup } from './cgroup.js';

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, num]) => [num, name as NodeJS.Signals]),
);

export function wireOps(ops: readonly SandboxOp[]): WireOp[] {
  return ops.map((o): WireOp => {
    switch (o.op) {
      case 'mkdir':
        return { code: OpCode.mkdir, flags: o.disk ? OpFlag.DISK : 0, mode: o.mode, a: o.path, b: '' };
      case 'write':
        return { code: OpCode.write, flags: 0, mode: o.mode, a: o.path, b: o.content };
      case 'symlink':
        return { code: OpCode.symlink, flags: 0, mode: 0, a: o.path, b: o.text };
      case 'copy-symlink':
        return { code: OpCode['copy-symlink'], flags: o.optional ? OpFlag.OPTIONAL : 0, mode: 0, a: o.path, b: o.source };
      case 'bind':
        return {
          code: OpCode.bind,
          flags:
            (o.readOnly ? OpFlag.RO : 0) |
            (o.optional ? OpFlag.OPTIONAL : 0) |
            (o.shared ? OpFlag.SHARED : 0) |
            (o.nosuid ? OpFlag.NOSUID : 0) |
            (o.nodev ? OpFlag.NODEV : 0) |
            (o.sourceOnDisk ? OpFlag.SRC_DISK : 0) |
            (o.recursive ? OpFlag.RECURSIVE : 0),
          mode: 0,
          a: o.path,
          b: o.source,
        };
      case 'mount':
        return {
          code: OpCode.mount,
          flags:
            (o.nosuid ? OpFlag.NOSUID : 0) | (o.nodev ? OpFlag.NODEV : 0) | (o.noexec ? OpFlag.NOEXEC : 0) | (o.optional ? OpFlag.OPTIONAL : 0),
          mode: 0,
          a: o.path,
          b: `${o.fstype}:${o.data}`,
        };
      case 'remount-ro':
        return { code: OpCode['remount-ro'], flags: 0, mode: 0, a: o.path, b: '' };
    }
  });
}

/** The launcher request for one build (exported for tests and the bench). */
export function launcherRequest(spec: LinuxSandboxSpec, seccomp: Buffer | null, cgroup?: string): LauncherRequest {
  return {
    mode: Mode.RUN,
    cloneFlags: spec.cloneFlags,
    parentPid: process.pid,
    uidMap: spec.uidMap,
    gidMap: spec.gidMap,
    selfMap: spec.selfMap,
    sandboxUid: spec.sandboxUid,
    sandboxGid: spec.sandboxGid,
    hostname: spec.hostname,
    domainname: spec.domainname,
    loopback: spec.loopback,
    chroot: spec.chrootDir,
    makeChroot: true,
    ...(spec.request.buildUser ? { chrootOwner: { uid: spec.request.buildUser.uid, gid: spec.request.buildUser.gid } } : {}),
    ops: wireOps(spec.ops),
    keepNs: spec.keepMountNamespace,
    cwd: spec.cwd,
    personality: spec.personality,
    noNewPrivs: spec.noNewPrivileges,
    seccomp,
    builder: spec.builder,
    argv: spec.argv,
    env: spec.env,
    dropGroups: spec.dropSupplementaryGroups,
    ...(cgroup ? { cgroup, newCgroup: true } : {}),
    ...(spec.hold ? { hold: true } : {}),
    umask: 0o022,
  };
}

/** Removes a tree even when the builder left read-only or mode-0 dirs in it. */
export function removeTreeForce(dir: string): void {
  const fix = (p: string): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (!st.isDirectory()) return;
    if ((st.mode & 0o700) !== 0o700) chmodSync(p, 0o700);
    for (const e of readdirSync(p)) fix(join(p, e));
  };
  fix(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** Clears the way for the chroot dir, which the launcher creates (makeChroot): a leftover of an interrupted build goes. */
export function prepareChroot(spec: LinuxSandboxSpec): void {
  if (existsSync(spec.chrootDir)) removeTreeForce(spec.chrootDir);
}

let discarded = 0;
/** Chroot dirs renamed aside, removed one per turn of the event loop. */
const asides: { dir: string; done: () => void }[] = [];

/** Removes a chroot dir the usual way: its entries are empty mount points and directories. */
function removeAside(dir: string): void {
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) removeAside(p);
      else unlinkSync(p);
    }
    rmdirSync(dir);
  } catch {
    try {
      removeTreeForce(dir); // read-only or mode-0 dirs the builder left
    } catch {
      // a leftover under the store dir is garbage to the next collection
    }
  }
}

function removeAsides(): void {
  const next = asides.shift();
  if (next !== undefined) {
    removeAside(next.dir);
    next.done();
  }
  if (asides.length > 0) setImmediate(removeAsides);
}

/**
 * Removes a chroot dir after the build: renamed aside at once (the next
 * build of the derivation starts from a clean name), then removed by a
 * process the launcher server forks for it (removeTree): profiles of a
 * 1,000-derivation DAG showed ~2 ms of node's main thread per build in the
 * unlinks of the empty mount points of its input closure. Without a server
 * (one-shot launchers, or it died) it is removed here on a later turn of
 * the event loop with plain synchronous calls: promise-based calls cost ~2x
 * the CPU of the unlinks themselves and, issued all at once, filled libuv's
 * pool so the next build's mkdir waited. Either way node keeps running
 * until every aside is gone.
 *
 * The rename happens before this returns; the promise settles once the
 * aside is removed (or left to the next collection), so a caller that
 * removes the directory around it afterwards does not race the remover.
 */
export function discardChroot(dir: string): Promise<void> {
  const aside = `${dir}.old-${process.pid}-${++discarded}`;
  try {
    renameSync(dir, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') removeTreeForce(dir);
    return Promise.resolve();
  }
  const server = process.env.DRVBOX_LAUNCHER_ONESHOT === '1' ? null : runningLauncherServer();
  if (server) {
    // A non-zero status left something the remover refused (a mount point):
    // garbage to the next collection, never chased here across a mount.
    return server.removeTree(aside).then((status) => (status === null ? removeInNode(aside) : undefined));
  }
  return removeInNode(aside);
}

function removeInNode(aside: string): Promise<void> {
  return new Promise((resolve) => {
    if (asides.push({ dir: aside, done: resolve }) === 1) setImmediate(removeAsides);
  });
}

/** Where a logical path under the store dir is written on the host. */
export function scratchOnHost(spec: LinuxSandboxSpec, logical: string): string {
  return spec.chrootStoreDir + logical.slice(spec.request.storeDir.replace(/\/+$/, '').length);
}

/**
 * After the build: outputs belong to the caller and nobody else can write
 * them (group/world write and setuid/setgid bits are dropped). Only entries
 * that need it are touched.
 */
export function sealOutputs(spec: LinuxSandboxSpec): void {
  const root = process.getuid?.() === 0;
  const walk = (p: string): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (root && (st.uid !== spec.ownerUid || st.gid !== spec.ownerGid)) lchownSync(p, spec.ownerUid, spec.ownerGid);
    if (st.isSymbolicLink()) return;
    if (st.mode & 0o6022) chmodSync(p, st.mode & 0o1755);
    if (st.isDirectory()) {
      if ((st.mode & 0o700) !== 0o700) chmodSync(p, (st.mode & 0o1755) | 0o700);
      for (const e of readdirSync(p)) walk(join(p, e));
    }
  };
  for (const out of Object.values(spec.request.scratchOutputs)) walk(scratchOnHost(spec, out));
}

export class LinuxRunningBuild implements RunningBuild {
  readonly pid: number;
  readonly log: Readable;
  /** Pid of the sandbox's init (the builder) in the host's pid namespace. */
  readonly sandboxPid: number;
  readonly visible: Set<string>;
  private waited: Promise<ExitStatus> | null = null;
  private killed: Promise<void> | null = null;
  private resourceUsage: ResourceUsage | null = null;

  constructor(
    private readonly spec: LinuxSandboxSpec,
    private readonly proc: LauncherProcess,
    sandboxPid: number,
    /** The build's cgroup directory (use-cgroups), or null. */
    readonly cgroup: string | null = null,
    /** What is visible inside (a held build's, after its additions and removals); default: the plan's. */
    visible?: Set<string>,
  ) {
    this.pid = proc.pid;
    this.log = proc.log!;
    this.sandboxPid = sandboxPid;
    this.visible = visible ?? new Set(spec.visiblePaths);
  }

  wait(): Promise<ExitStatus> {
    this.waited ??= (async () => {
      const [text] = await Promise.all([this.proc.result, this.proc.exited]);
      const r = parseResultLine(text);
      if (r) this.resourceUsage = { cpuUserMs: r.cpuUserUs / 1000, cpuSystemMs: r.cpuSystemUs / 1000 };
      if (this.cgroup) {
        this.resourceUsage = cgroupUsage(this.cgroup) ?? this.resourceUsage;
        await destroyCgroup(this.cgroup);
      }
      const status: ExitStatus = r
        ? { code: r.code, signal: r.signal ? (signalNames.get(r.signal) ?? 'SIGKILL') : null }
        : { code: null, signal: 'SIGKILL' }; // the monitor itself was killed
      try {
        sealOutputs(this.spec);
      } catch {
        // registration checks ownership again and reports it
      }
      return status;
    })();
    return this.waited;
  }

  kill(): Promise<void> {
    this.killed ??= (async () => {
      if (this.cgroup && this.proc.alive()) killCgroup(this.cgroup);
      await stopMonitor(this.proc);
      await this.wait();
    })();
    return this.killed;
  }

  usage(): ResourceUsage | null {
    return this.resourceUsage;
  }

  /** Makes a store path visible inside the running sandbox (recursive builds). */
  async addPath(storePath: string): Promise<void> {
    await addPathsInside(this.spec, this.pid, [storePath], this.visible);
  }
}

/** The request and cgroup of one build, before the chroot is prepared. */
function prepareRequest(spec: LinuxSandboxSpec): { request: Buffer; cgroup: string | null } {
  const bpf = spec.seccomp ? compileSeccomp(spec.seccomp).bpf : null;
  const cgroup = spec.namespaces.cgroup ? createBuildCgroup(spec.request.drvPath) : null;
  try {
    return { request: encodeRequest(launcherRequest(spec, bpf, cgroup ?? undefined), `derivation '${spec.request.drvPath}'`), cgroup };
  } catch (e) {
    if (cgroup) void destroyCgroup(cgroup);
    throw e;
  }
}

export async function startLinux(spec: LinuxSandboxSpec): Promise<RunningBuild> {
  const launcher = requireLauncher();
  const { request, cgroup } = prepareRequest(spec);
  prepareChroot(spec);
  // DRVBOX_LAUNCHER_ONESHOT=1: one launcher process per build (no server).
  const oneShot = process.env.DRVBOX_LAUNCHER_ONESHOT === '1';
  const proc = oneShot ? spawnLauncher(launcher, request, true) : await launcherServer(launcher).start(request);
  return outcome(spec, proc, await proc.status, cgroup);
}

/**
 * What the status lines up to exec say: the running build, a build whose
 * builder could not be executed, or a setup failure (thrown). Shared by
 * start() and a held build's release().
 */
export async function outcome(
  spec: LinuxSandboxSpec,
  proc: LauncherProcess,
  lines: StatusLine[],
  cgroup: string | null,
  visible?: Set<string>,
): Promise<RunningBuild> {
  const execFailed = lines.find((l) => l.kind === 'exec-failed');
  if (execFailed && execFailed.kind === 'exec-failed') {
    // The sandbox was set up; the builder could not be run: a build failure.
    proc.log?.resume();
    await proc.exited;
    if (cgroup) await destroyCgroup(cgroup);
    return new ExecFailedBuild(execFailed.message);
  }
  const err = lines.find((l) => l.kind === 'error');
  const pidLine = lines.find((l) => l.kind === 'pid');
  if (err || !pidLine || pidLine.kind !== 'pid') return setupFailed(spec, proc, lines, cgroup);
  return new LinuxRunningBuild(spec, proc, pidLine.pid, cgroup, visible);
}

/** A setup failure of the sandbox (no builder ran): the launcher is waited for, the cgroup removed. */
export async function setupFailed(spec: LinuxSandboxSpec, proc: LauncherProcess, lines: StatusLine[], cgroup: string | null): Promise<never> {
  proc.log?.resume();
  const exit = await proc.exited;
  if (cgroup) await destroyCgroup(cgroup);
  const err = lines.find((l) => l.kind === 'error');
  const message =
    err && err.kind === 'error' ? err.message : `the launcher exited (${exit.code ?? exit.signal}) without starting the builder`;
  throw new SandboxSetupFailed(`while setting up the build environment for '${spec.request.drvPath}': ${message}`, {
    drvPath: spec.request.drvPath,
    detail: message,
  });
}

/** Sets a sandbox up for startHeld(): resolves once the init waits for release (see held.ts). */
export async function startHeldLauncher(
  spec: LinuxSandboxSpec,
): Promise<{ proc: LauncherProcess; sandboxPid: number; cgroup: string | null }> {
  const launcher = requireLauncher();
  const { request, cgroup } = prepareRequest(spec);
  prepareChroot(spec);
  const proc = await launcherServer(launcher).start(request);
  const lines = await proc.held!;
  const pidLine = lines.find((l) => l.kind === 'pid');
  if (!lines.some((l) => l.kind === 'held') || !pidLine || pidLine.kind !== 'pid') return setupFailed(spec, proc, lines, cgroup);
  return { proc, sandboxPid: pidLine.pid, cgroup };
}

/**
 * Kills every process of a build user (root with build-users-group, no
 * cgroup): leftovers of an earlier build must not share the uid.
 */
export async function killBuildUser(uid: number): Promise<void> {
  const req = encodeRequest({ mode: Mode.KILL_USER, parentPid: process.pid, killUid: uid });
  const p = spawnLauncher(requireLauncher(), req, false);
  const [lines] = await Promise.all([p.status, p.exited]);
  const err = lines.find((l) => l.kind === 'error');
  if (err && err.kind === 'error') throw new SandboxSetupFailed(`cannot kill the processes of build user ${uid}: ${err.message}`, { uid });
}
