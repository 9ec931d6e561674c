// A Linux sandbox set up ahead of time (Backend.startHeld): the init has done
// everything but exec and waits on its monitor; store paths are added or
// removed through the launcher server until release() lets the builder run.
import type { HeldBuild, RunningBuild } from '../backend.js';
import { checkHeld, HeldBuildNeedsServer, HeldBuildNotPlanned, type HeldState } from './errors.js';
import { addPathsInside, removePathsInside } from './inside-paths.js';
import type { LinuxSandboxSpec } from './plan.js';
import { outcome, startHeldLauncher } from './run.js';
import { destroyCgroup } from './cgroup.js';
import type { LauncherProcess } from './spawn.js';
import { stopHeldMonitor } from './stop-monitor.js';

export class LinuxHeldBuild implements HeldBuild {
  readonly visible: Set<string>;
  /** Pid of the sandbox's init in the host's pid namespace. */
  readonly sandboxPid: number;
  /** Pid of its monitor (it keeps the namespaces paths are added through). */
  readonly monitorPid: number;
  private state: HeldState = 'held';
  /** Additions, removals and the release, one after the other. */
  private queue: Promise<unknown> = Promise.resolve();
  private abandoned: Promise<void> | null = null;

  constructor(
    private readonly spec: LinuxSandboxSpec,
    private readonly proc: LauncherProcess,
    sandboxPid: number,
    private readonly cgroup: string | null,
  ) {
    this.visible = new Set(spec.visiblePaths);
    this.sandboxPid = sandboxPid;
    this.monitorPid = proc.pid;
  }

  private usable(what: string): void {
    checkHeld(this.state, this.spec.request.drvPath, 'held sandbox', what);
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.queue.then(f, f);
    this.queue = p.catch(() => {});
    return p;
  }

  async addPaths(storePaths: readonly string[]): Promise<void> {
    this.usable('add paths');
    return this.serial(async () => {
      this.usable('add paths');
      await addPathsInside(this.spec, this.monitorPid, storePaths, this.visible);
    });
  }

  async removePaths(storePaths: readonly string[]): Promise<void> {
    this.usable('remove paths');
    return this.serial(async () => {
      this.usable('remove paths');
      await removePathsInside(this.spec, storePaths, this.visible);
    });
  }

  async release(): Promise<RunningBuild> {
    this.usable('release the builder');
    this.state = 'released';
    // After the additions and removals asked for before.
    return this.serial(async () => {
      this.proc.go!();
      return outcome(this.spec, this.proc, await this.proc.status, this.cgroup, this.visible);
    });
  }

  abandon(): Promise<void> {
    if (this.state === 'released') return Promise.resolve();
    this.state = 'abandoned';
    this.abandoned ??= (async () => {
      await this.queue;
      await stopHeldMonitor(this.proc);
      if (this.cgroup) await destroyCgroup(this.cgroup);
    })();
    return this.abandoned;
  }
}

/** Backend.startHeld for a spec planned with `held`: needs the launcher server. */
export async function startHeldLinux(spec: LinuxSandboxSpec): Promise<HeldBuild> {
  const ctx = `derivation '${spec.request.drvPath}'`;
  if (!spec.hold) {
    throw new HeldBuildNotPlanned(`${ctx}: startHeld() needs a sandbox planned with 'held' (BuildRequest.held)`, { drvPath: spec.request.drvPath });
  }
  if (process.env.DRVBOX_LAUNCHER_ONESHOT === '1') {
    throw new HeldBuildNeedsServer(`${ctx}: a held sandbox needs the launcher server, which DRVBOX_LAUNCHER_ONESHOT=1 turns off`, {
      drvPath: spec.request.drvPath,
    });
  }
  const { proc, sandboxPid, cgroup } = await startHeldLauncher(spec);
  return new LinuxHeldBuild(spec, proc, sandboxPid, cgroup);
}
