// Running an unsandboxed builder, and killing everything it started.
//
// pid-namespace: the Linux launcher (backends/linux/launcher.c) in its
//   minimal mode: clone(CLONE_NEWPID [| CLONE_NEWUSER]), no chroot (so no
//   mounts and no pivot_root), setsid, cwd, exact argv and envp; its init
//   forks the builder (reaper mode: the builder is not pid 1, which would
//   ignore its own `kill -9 $$`), reaps, and kills what the builder left. The
//   request is serialised by backends/linux/protocol.ts; the launcher server
//   (backends/linux/server.ts) forks the monitor, as for sandboxed builds.
// process-group: child_process.spawn in a new session; kill() signals the
//   group and, on Linux, every process still in the builder's session or
//   with its NIX_BUILD_TOP (a /proc scan). Nothing covers
//   drvbox itself being killed with SIGKILL in this mode.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { PassThrough, type Readable } from 'node:stream';
import type { ExitStatus, HeldBuild, ResourceUsage, RunningBuild } from '../backend.js';
import { BuilderStartFailed } from '../../src/build/errors-run.js';
import type { NoneSandboxSpec } from './plan.js';
import { ExecFailedBuild } from '../linux/exec-failed.js';
import { stopHeldMonitor, stopMonitor } from '../linux/stop-monitor.js';
import { checkHeld, HeldBuildNotPlanned, type HeldState } from '../linux/errors.js';
import { HeldBuildCannotHide, HeldBuildSetupFailed, HeldBuildUnavailable } from './errors.js';

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, num]) => [num, name as NodeJS.Signals]),
);

/** Set once the launcher could not create the namespaces here: later builds go straight to process groups. */
let pidNamespaceBroken: string | null = null;

export function pidNamespaceProblem(): string | null {
  return pidNamespaceBroken;
}

interface LauncherProc {
  pid: number;
  log: Readable | null;
  status: Promise<Array<{ kind: string; message?: string; pid?: number }>>;
  result: Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  kill(sig: 'SIGTERM' | 'SIGKILL'): void;
}

type ParseResult = (text: string) => { code: number | null; signal: number | null; cpuUserUs: number; cpuSystemUs: number } | null;

/**
 * A build whose exec the launcher has not confirmed yet: its status lines
 * are read while the builder runs. A setup failure then reads like Nix's
 * failure to exec: the message at the end of the log, exit code 1.
 */
class NamespaceBuild implements RunningBuild {
  private initPid = 0;
  readonly log: Readable;
  private readonly setupError: Promise<string | null>;
  private waited: Promise<ExitStatus> | null = null;
  private killed: Promise<void> | null = null;
  private resourceUsage: ResourceUsage | null = null;

  constructor(
    private readonly proc: LauncherProc,
    private readonly parseResult: ParseResult,
  ) {
    this.setupError = proc.status.then((lines) => {
      const pid = lines.find((l) => l.kind === 'pid');
      if (pid?.pid) this.initPid = pid.pid;
      const err = lines.find((l) => l.kind === 'error' || l.kind === 'exec-failed');
      return err ? (err.message ?? 'the launcher failed') : pid ? null : 'the launcher exited without starting the builder';
    });
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    const src = proc.log;
    if (src) {
      src.pipe(out, { end: false });
      src.once('end', () => {
        void this.setupError.then((e) => {
          if (e) out.write(`error: ${e}\n`);
          out.end();
        });
      });
    } else {
      void this.setupError.then((e) => out.end(e ? `error: ${e}\n` : undefined));
    }
    this.log = out;
  }

  /** The builder's pid on the host (0 until the launcher reported it). */
  get pid(): number {
    return this.initPid;
  }

  wait(): Promise<ExitStatus> {
    this.waited ??= (async () => {
      const [text, , setupError] = await Promise.all([this.proc.result, this.proc.exited, this.setupError]);
      if (setupError) return { code: 1, signal: null };
      const r = this.parseResult(text);
      if (!r) return { code: null, signal: 'SIGKILL' }; // the monitor itself was killed
      this.resourceUsage = { cpuUserMs: r.cpuUserUs / 1000, cpuSystemMs: r.cpuSystemUs / 1000 };
      return { code: r.code, signal: r.signal ? (signalNames.get(r.signal) ?? 'SIGKILL') : null };
    })();
    return this.waited;
  }

  kill(): Promise<void> {
    this.killed ??= (async () => {
      await stopMonitor(this.proc); // it SIGKILLs the namespace's init
      await this.wait();
    })();
    return this.killed;
  }

  usage(): ResourceUsage | null {
    return this.resourceUsage;
  }
}

/** Set once a build started in a PID namespace: later starts need not wait for the exec to be confirmed. */
let pidNamespaceProven = false;

let launcherModules: Promise<
  [typeof import('../linux/protocol.js'), typeof import('../linux/launcher-path.js'), typeof import('../linux/spawn.js'), typeof import('../linux/server.js')]
> | null = null;
let launcherFound: ReturnType<typeof import('../linux/launcher-path.js').launcherStatus> | null = null;

function loadLauncherModules() {
  launcherModules ??= Promise.all([
    import('../linux/protocol.js'),
    import('../linux/launcher-path.js'),
    import('../linux/spawn.js'),
    import('../linux/server.js'),
  ]);
  return launcherModules;
}

/** The launcher's RUN request for `spec` (minimal mode: a PID namespace, no mounts). */
function pidNamespaceRequest(protocol: typeof import('../linux/protocol.js'), spec: NoneSandboxSpec, hold: boolean): Buffer {
  const ids = spec.userNamespace ? { uidMap: `${spec.uid} ${spec.uid} 1`, gidMap: `${spec.gid} ${spec.gid} 1` } : {};
  return protocol.encodeRequest(
    {
      mode: protocol.Mode.RUN,
      cloneFlags: protocol.CloneFlag.NEWPID | (spec.userNamespace ? protocol.CloneFlag.NEWUSER : 0),
      parentPid: process.pid,
      ...ids,
      selfMap: true,
      sandboxUid: spec.uid,
      sandboxGid: spec.gid,
      cwd: spec.cwd,
      builder: spec.builder,
      argv: spec.argv,
      env: spec.env,
      umask: 0o022,
      // As init of the namespace the builder would ignore `kill -9 $$`.
      reaper: true,
      // root switching to a build user keeps none of root's groups, only the build user's own.
      ...(spec.buildUser ? { dropGroups: true, groups: spec.groups } : {}),
      ...(hold ? { hold: true } : {}),
    },
    `derivation '${spec.request.drvPath}'`,
  );
}

async function startInPidNamespace(spec: NoneSandboxSpec): Promise<RunningBuild | 'unavailable'> {
  const [protocol, paths, spawner, server] = await loadLauncherModules();
  const status = (launcherFound ??= paths.launcherStatus());
  if (!status.ok) {
    pidNamespaceBroken = `the Linux launcher is not built: ${status.reason}`;
    return 'unavailable';
  }
  const ctx = `derivation '${spec.request.drvPath}'`;
  const request = pidNamespaceRequest(protocol, spec, false);
  const oneShot = process.env.DRVBOX_LAUNCHER_ONESHOT === '1';
  const proc: LauncherProc = oneShot
    ? spawner.spawnLauncher(status.path, request, true)
    : await server.launcherServer(status.path).start(request);
  // Once namespaces are known to work here, do not wait for the exec: the
  // builder runs meanwhile, and a late setup error still fails the build.
  if (pidNamespaceProven) return new NamespaceBuild(proc, protocol.parseResultLine);
  const lines = await proc.status;
  const execFailed = lines.find((l) => l.kind === 'exec-failed');
  const err = lines.find((l) => l.kind === 'error');
  const pidLine = lines.find((l) => l.kind === 'pid');
  if (execFailed || err || !pidLine) {
    proc.log?.resume();
    await proc.exited;
    // The builder itself could not be exec'd: a build failure, as in Nix.
    if (execFailed?.message !== undefined) return new ExecFailedBuild(execFailed.message);
    const message = err?.message ?? 'the launcher exited without starting the builder';
    if (message.startsWith('changing into ')) {
      throw new BuilderStartFailed(`${ctx}: ${message}`, { drvPath: spec.request.drvPath, detail: message });
    }
    // The namespaces themselves are refused here (container, sysctl, AppArmor).
    pidNamespaceBroken = message;
    return 'unavailable';
  }
  pidNamespaceProven = true;
  return new NamespaceBuild(proc, protocol.parseResultLine);
}

/**
 * Pids of the processes that belong to a build (Linux /proc): in the
 * builder's session, or carrying its NIX_BUILD_TOP (a fresh directory) in
 * their environment. The latter catches a process that started its own
 * session (setsid) to escape the process group, unless it also cleared its
 * environment. (Working in the build dir is no sign: a user may look there.)
 */
function buildMembers(sid: number, buildDir: string): number[] {
  const res: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return res;
  }
  const marker = Buffer.from(`NIX_BUILD_TOP=${buildDir}\0`);
  for (const n of names) {
    if (!/^\d+$/.test(n) || Number(n) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'latin1');
      // pid (comm) state ppid pgrp session ...; comm may contain spaces and parens.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      if (Number(fields[3]) === sid) {
        res.push(Number(n));
        continue;
      }
      const env = readFileSync(`/proc/${n}/environ`);
      const at = env.indexOf(marker);
      if (at === 0 || (at > 0 && env[at - 1] === 0)) res.push(Number(n));
    } catch {
      // gone meanwhile, or not readable (another user's)
    }
  }
  return res;
}

class GroupBuild implements RunningBuild {
  readonly pid: number;
  readonly log: Readable;
  private readonly exited: Promise<ExitStatus>;
  private killed: Promise<void> | null = null;
  private done = false;

  constructor(private readonly spec: NoneSandboxSpec) {
    const child = spawn(spec.builder, spec.argv.slice(1), {
      argv0: spec.argv[0],
      cwd: spec.cwd,
      env: Object.fromEntries(spec.env),
      detached: true, // setsid: own session and process group
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(spec.buildUser ? { uid: spec.uid, gid: spec.gid } : {}),
    });
    const pass = new PassThrough({ highWaterMark: 1 << 20 });
    let open = 2;
    const closeOne = (): void => {
      if (--open === 0) pass.end();
    };
    for (const s of [child.stdout, child.stderr]) {
      if (!s) {
        closeOne();
        continue;
      }
      s.on('data', (c: Buffer) => {
        if (!pass.write(c)) {
          s.pause();
          pass.once('drain', () => s.resume());
        }
      });
      s.once('close', closeOne);
    }
    this.pid = child.pid ?? 0;
    this.log = pass;
    this.exited = new Promise<ExitStatus>((resolve) => {
      child.once('error', (e) => {
        if (this.pid === 0) {
          pass.write(`error: executing '${spec.builder}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : e.message}\n`);
          this.done = true;
          resolve({ code: 1, signal: null });
        }
      });
      child.once('exit', (code, signal) => {
        this.done = true;
        // Stragglers in the group (background jobs) would keep the log open: end them now.
        this.killGroup();
        resolve({ code, signal });
      });
    });
  }

  private killGroup(): void {
    if (this.pid <= 0) return;
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      // no such group any more
    }
    if (process.platform === 'linux') {
      // Repeat: a process may fork while we kill.
      for (let round = 0; round < 10; round++) {
        const left = buildMembers(this.pid, this.spec.cwd);
        if (left.length === 0) break;
        for (const p of left) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
    }
  }

  wait(): Promise<ExitStatus> {
    return this.exited;
  }

  kill(): Promise<void> {
    this.killed ??= (async () => {
      if (!this.done) this.killGroup();
      await this.exited;
    })();
    return this.killed;
  }

  usage(): ResourceUsage | null {
    return null;
  }
}

export interface StartNoneOptions {
  /** Told once per process when the PID namespace cannot be used and process groups are used instead. */
  warn?: (message: string) => void;
}

export async function startNone(spec: NoneSandboxSpec, opts: StartNoneOptions = {}): Promise<RunningBuild> {
  if (spec.containment === 'pid-namespace' && pidNamespaceBroken === null) {
    const r = await startInPidNamespace(spec);
    if (r !== 'unavailable') return r;
    opts.warn?.(
      `cannot run builders in their own PID namespace (${pidNamespaceBroken}); using process groups, ` +
        'so a builder process that starts its own session may outlive its build' +
        (spec.groups.length > 0 ? ", and build users lose their supplementary groups" : ''),
    );
  }
  return new GroupBuild(spec);
}

/**
 * Backend.startHeld: the launcher sets the PID namespace and its init up
 * now; the init forks and execs the builder when released. Only where
 * builders run in a PID namespace through the launcher server (otherwise
 * HeldBuildUnavailable: the goal then starts the build the ordinary way).
 */
export async function startHeldNone(spec: NoneSandboxSpec): Promise<HeldBuild> {
  const ctx = `derivation '${spec.request.drvPath}'`;
  const drvPath = spec.request.drvPath;
  if (!spec.request.held) throw new HeldBuildNotPlanned(`${ctx}: startHeld() needs a build planned with 'held' (BuildRequest.held)`, { drvPath });
  const unavailable = (why: string) => new HeldBuildUnavailable(`${ctx}: cannot hold the builder: ${why}`, { drvPath, reason: why });
  if (spec.containment !== 'pid-namespace') throw unavailable('builders run in process groups here');
  if (pidNamespaceBroken !== null) throw unavailable(pidNamespaceBroken);
  if (process.env.DRVBOX_LAUNCHER_ONESHOT === '1') throw unavailable('it needs the launcher server, which DRVBOX_LAUNCHER_ONESHOT=1 turns off');
  const [protocol, paths, , server] = await loadLauncherModules();
  const status = (launcherFound ??= paths.launcherStatus());
  if (!status.ok) throw unavailable(`the Linux launcher is not built: ${status.reason}`);
  const proc = await server.launcherServer(status.path).start(pidNamespaceRequest(protocol, spec, true));
  const lines = await proc.held!;
  if (!lines.some((l) => l.kind === 'held') || !lines.some((l) => l.kind === 'pid')) {
    await stopHeldMonitor(proc);
    const err = lines.find((l) => l.kind === 'error');
    const detail = err && err.kind === 'error' ? err.message : 'the launcher ended before the hold';
    throw new HeldBuildSetupFailed(`${ctx}: ${detail}`, { drvPath, detail });
  }
  pidNamespaceProven = true;
  return new NoneHeldBuild(spec, proc, (p) => new NamespaceBuild(p, protocol.parseResultLine));
}

class NoneHeldBuild implements HeldBuild {
  /** The builder sees the host's store: this only records what the caller made sure is there. */
  readonly visible: Set<string>;
  private state: HeldState = 'held';
  private abandoned: Promise<void> | null = null;

  constructor(
    private readonly spec: NoneSandboxSpec,
    private readonly proc: LauncherProc & { go?: () => void },
    private readonly running: (p: LauncherProc) => RunningBuild,
  ) {
    this.visible = new Set(spec.request.inputPaths);
  }

  private usable(what: string): void {
    checkHeld(this.state, this.spec.request.drvPath, 'held build', what);
  }

  async addPaths(storePaths: readonly string[]): Promise<void> {
    this.usable('add paths');
    for (const p of storePaths) this.visible.add(p);
  }

  async removePaths(storePaths: readonly string[]): Promise<void> {
    this.usable('remove paths');
    const drvPath = this.spec.request.drvPath;
    throw new HeldBuildCannotHide(`derivation '${drvPath}': an unsandboxed builder sees the whole store; '${storePaths[0] ?? ''}' cannot be hidden from it`, {
      drvPath,
      paths: [...storePaths],
    });
  }

  async release(): Promise<RunningBuild> {
    this.usable('release the builder');
    this.state = 'released';
    this.proc.go!();
    return this.running(this.proc);
  }

  abandon(): Promise<void> {
    if (this.state === 'released') return Promise.resolve();
    this.state = 'abandoned';
    this.abandoned ??= stopHeldMonitor(this.proc);
    return this.abandoned;
  }
}
