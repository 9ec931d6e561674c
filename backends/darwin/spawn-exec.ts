// Carries out a SpawnDescription through the SpawnPrimitives and watches the
// child: the builder is started with posix_spawn (Node itself never forks),
// its stdout+stderr come back through one pipe, its exit is collected with
// wait4(WNOHANG) calls made on a worker thread (koffi async), and killing it
// kills its whole process group and, with a build user, every process of
// that user.
//
// Why polling instead of one blocking wait4 per build: a blocking call would
// hold one of libuv's 4 threadpool threads for the whole build, and four
// concurrent builds would stall every fs call of the process.
import { PassThrough, type Readable } from 'node:stream';
import { Socket } from 'node:net';
import type { ExitStatus, ResourceUsage, RunningBuild } from '../backend.js';
import { DarwinKillFailed, DarwinSpawnFailed } from './errors.js';
import type { Handle, SpawnPrimitives } from './libc.js';
import { POSIX_SPAWN_CLOEXEC_DEFAULT, type SpawnDescription } from './spawn-plan.js';
import { decodeWaitStatus } from './status.js';

const ERRNO_NAMES: Record<'darwin' | 'linux', Record<number, string>> = {
  darwin: { 1: 'EPERM', 2: 'ENOENT', 7: 'E2BIG', 8: 'ENOEXEC', 12: 'ENOMEM', 13: 'EACCES', 20: 'ENOTDIR', 22: 'EINVAL', 26: 'ETXTBSY', 62: 'ELOOP', 63: 'ENAMETOOLONG', 86: 'EBADARCH' },
  linux: { 1: 'EPERM', 2: 'ENOENT', 7: 'E2BIG', 8: 'ENOEXEC', 12: 'ENOMEM', 13: 'EACCES', 20: 'ENOTDIR', 22: 'EINVAL', 26: 'ETXTBSY', 36: 'ENAMETOOLONG', 40: 'ELOOP' },
};

export function errnoName(os: 'darwin' | 'linux', errno: number): string {
  return ERRNO_NAMES[os][errno] ?? `errno ${errno}`;
}

export interface AppliedSpawn {
  pid: number;
  /** sysctl writes that failed (ignored: e.g. no arch affinity on Intel Macs). */
  sysctlErrors: Array<{ name: string; errno: number }>;
}

/**
 * The synchronous posix_spawn sequence: sysctls, file actions, attributes,
 * spawn. Attribute and file-action objects are destroyed whatever happens.
 */
export function applySpawn(desc: SpawnDescription, prim: SpawnPrimitives, logWriteFd: number): AppliedSpawn {
  const os = prim.abi.os;
  const fail = (call: string, rc: number): never => {
    throw new DarwinSpawnFailed(`cannot start the builder of '${desc.drvPath}': ${call} failed with ${errnoName(os, rc)}`, {
      drvPath: desc.drvPath,
      call,
      errno: rc,
      path: desc.path,
    });
  };
  const sysctlErrors: AppliedSpawn['sysctlErrors'] = [];
  for (const s of desc.sysctls) {
    const rc = prim.sysctlSetInt(s.name, s.value);
    if (rc !== 0) sysctlErrors.push({ name: s.name, errno: rc });
  }
  let fa: Handle | null = null;
  let attr: Handle | null = null;
  try {
    fa = prim.fileActionsInit();
    for (const a of desc.fileActions) {
      if (a.op === 'open') {
        const rc = prim.fileActionsAddOpen(fa, a.fd, a.path, a.oflag, a.mode);
        if (rc !== 0) fail(`posix_spawn_file_actions_addopen(${a.fd}, ${a.path})`, rc);
      } else if (a.op === 'dup2') {
        const rc = prim.fileActionsAddDup2(fa, logWriteFd, a.fd);
        if (rc !== 0) fail(`posix_spawn_file_actions_adddup2(${a.fd})`, rc);
      } else {
        const rc = prim.fileActionsAddChdir(fa, a.path);
        if (rc !== 0) fail(`posix_spawn_file_actions_addchdir_np(${a.path})`, rc);
      }
    }
    if (os !== 'darwin' && desc.flags & POSIX_SPAWN_CLOEXEC_DEFAULT) {
      // After the dup2s: the log pipe's write end is above 2 too.
      const rc = prim.fileActionsAddCloseFrom(fa, 3);
      if (rc !== 0) fail('posix_spawn_file_actions_addclosefrom_np(3)', rc);
    }
    attr = prim.attrInit();
    let rc = prim.attrSetFlags(attr, desc.flags);
    if (rc !== 0) fail('posix_spawnattr_setflags', rc);
    rc = prim.attrSetPgroup(attr, desc.pgroup);
    if (rc !== 0) fail('posix_spawnattr_setpgroup', rc);
    if (desc.resetSignals) {
      rc = prim.attrResetSignals(attr);
      if (rc !== 0) fail('posix_spawnattr_setsigdefault', rc);
    }
    if (desc.clearSignalMask) {
      rc = prim.attrClearSignalMask(attr);
      if (rc !== 0) fail('posix_spawnattr_setsigmask', rc);
    }
    if (desc.binpref.length > 0) {
      const r = prim.attrSetBinpref(attr, desc.binpref);
      if (r.rc !== 0 || r.count !== desc.binpref.length) fail(`posix_spawnattr_setbinpref_np(${desc.binpref.map((c) => '0x' + c.toString(16)).join(', ')})`, r.rc || 22);
    }
    if (desc.credentials) {
      rc = prim.attrSetCredentials(attr, desc.credentials);
      if (rc !== 0) fail(`posix_spawnattr_set_uid_np(${desc.credentials.uid})`, rc);
    }
    const r = prim.spawn(desc.path, fa, attr, desc.argv, desc.envp);
    if (r.rc !== 0) {
      const hint = r.rc === 86 && os === 'darwin' ? ' (no slice of it runs on the preferred CPU type; x86_64 on Apple silicon needs Rosetta 2)' : '';
      throw new DarwinSpawnFailed(`cannot start the builder of '${desc.drvPath}': posix_spawn of '${desc.path}' failed with ${errnoName(os, r.rc)}${hint}`, {
        drvPath: desc.drvPath,
        call: 'posix_spawn',
        errno: r.rc,
        path: desc.path,
      });
    }
    return { pid: r.pid, sysctlErrors };
  } finally {
    if (attr) {
      try {
        prim.attrDestroy(attr);
      } catch {
        /* nothing more to free */
      }
    }
    if (fa) {
      try {
        prim.fileActionsDestroy(fa);
      } catch {
        /* nothing more to free */
      }
    }
  }
}

export interface WatchOptions {
  /** wait4 polling interval: starts at min, doubles up to max. */
  pollMinMs?: number;
  pollMaxMs?: number;
  /** How long kill() keeps trying before giving up with DarwinKillFailed. */
  killTimeoutMs?: number;
  /** How long the log may stay open after the last build process is gone. */
  logGraceMs?: number;
  signalNames?: Record<number, NodeJS.Signals>;
  /** Every process of this uid is killed too (build users). */
  uid?: number | null;
  /** Signal delivery; process.kill by default. Negative pid = process group. */
  kill?: (pid: number, signal: NodeJS.Signals | 0) => void;
  /** Run once every build process is gone (System V cleanup). Errors are ignored. */
  afterExit?: () => void | Promise<void>;
  /** Stream over the read end of the log pipe; a net.Socket by default. */
  openLog?: (fd: number) => Readable;
}

const sleep = (ms: number, wake: { fn: (() => void) | null }) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      wake.fn = null;
      resolve();
    }
    wake.fn = done;
  });

/** A running builder: log, exit status, and a kill that leaves nothing behind. */
export class SpawnedBuild implements RunningBuild {
  readonly log: Readable;
  private readonly source: Readable;
  private status: Promise<ExitStatus>;
  private rusage: ResourceUsage | null = null;
  private leaderGone = false;
  private finished = false;
  private readonly wake: { fn: (() => void) | null } = { fn: null };
  private readonly killSignal: (pid: number, signal: NodeJS.Signals | 0) => void;

  constructor(
    readonly pid: number,
    logFd: number,
    private readonly prim: SpawnPrimitives,
    private readonly opts: WatchOptions = {},
  ) {
    this.killSignal = opts.kill ?? ((p, s) => process.kill(p, s));
    this.source = opts.openLog ? opts.openLog(logFd) : new Socket({ fd: logFd, readable: true, writable: false });
    const out = new PassThrough();
    this.source.on('error', (e) => out.destroy(e));
    this.source.on('end', () => this.wake.fn?.());
    this.source.pipe(out);
    this.log = out;
    this.status = this.watch();
    // wait() may never be called (the caller only kills): keep the rejection handled.
    this.status.catch(() => undefined);
  }

  private async watch(): Promise<ExitStatus> {
    const min = this.opts.pollMinMs ?? 5;
    const max = this.opts.pollMaxMs ?? 200;
    let delay = min;
    let status: ExitStatus;
    for (;;) {
      const r = await this.prim.waitNoHang(this.pid);
      if (r.pid === this.pid) {
        status = decodeWaitStatus(r.status, this.opts.signalNames);
        this.rusage = { cpuUserMs: r.cpuUserMs, cpuSystemMs: r.cpuSystemMs };
        break;
      }
      if (r.pid < 0) throw new DarwinKillFailed(`lost track of builder process ${this.pid} (wait4 failed)`, { pid: this.pid });
      await sleep(delay, this.wake);
      delay = Math.min(max, delay * 2);
    }
    this.leaderGone = true;
    // Whatever the builder left running in its group dies with it: nothing may
    // keep writing to the outputs once the build is over.
    await this.reapGroup();
    await this.endLog();
    if (this.opts.afterExit) {
      try {
        await this.opts.afterExit();
      } catch {
        /* cleanup failures must not turn a build result into an error */
      }
    }
    this.finished = true;
    return status;
  }

  private signalAll(): void {
    try {
      this.killSignal(-this.pid, 'SIGKILL');
    } catch {
      /* ESRCH: the group is empty */
    }
    if (this.opts.uid != null) {
      for (const p of this.prim.listPidsOfUid(this.opts.uid) ?? []) {
        try {
          this.killSignal(p, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
  }

  private groupAlive(): boolean {
    try {
      this.killSignal(-this.pid, 0);
      return true;
    } catch {
      if (this.opts.uid != null && (this.prim.listPidsOfUid(this.opts.uid) ?? []).length > 0) return true;
      return false;
    }
  }

  /** Kills the group (and the build user's processes) until none is left. */
  private async reapGroup(): Promise<void> {
    const deadline = Date.now() + (this.opts.killTimeoutMs ?? 30_000);
    let delay = 5;
    for (;;) {
      this.signalAll();
      if (!this.groupAlive()) return;
      if (Date.now() > deadline) {
        throw new DarwinKillFailed(`processes of build ${this.pid} are still running after SIGKILL`, { pid: this.pid, uid: this.opts.uid ?? null });
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(200, delay * 2);
    }
  }

  /**
   * Lets the log drain, then ends it: once every build process is gone only
   * an escaped one (setsid) can still hold the pipe open, and it must not hold
   * the build open. The cut comes after `logGraceMs` without data while the
   * reader keeps up, so a slow reader never loses output.
   */
  private async endLog(): Promise<void> {
    if (this.source.readableEnded || this.source.destroyed) return;
    const out = this.log as PassThrough;
    const grace = this.opts.logGraceMs ?? 2000;
    await new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout;
      const done = () => {
        clearTimeout(timer);
        this.source.off('data', arm);
        resolve();
      };
      const fire = () => {
        if (out.writableNeedDrain) return arm();
        this.source.unpipe(out);
        this.source.destroy();
        out.end();
        done();
      };
      function arm() {
        clearTimeout(timer);
        timer = setTimeout(fire, grace);
      }
      this.source.on('data', arm);
      this.source.once('end', done);
      this.source.once('close', done);
      arm();
    });
  }

  wait(): Promise<ExitStatus> {
    return this.status;
  }

  async kill(): Promise<void> {
    if (this.finished) return;
    if (!this.leaderGone) this.signalAll();
    this.wake.fn?.();
    await this.status.then(
      () => undefined,
      (e: unknown) => {
        if (e instanceof DarwinKillFailed) throw e;
      },
    );
  }

  usage(): ResourceUsage | null {
    return this.rusage;
  }
}

/** Starts the builder: pipe, posix_spawn, and the watcher. The write end of the pipe is closed here whatever happens. */
export function startSpawn(desc: SpawnDescription, prim: SpawnPrimitives, opts: WatchOptions = {}): SpawnedBuild {
  const [readFd, writeFd] = prim.pipe();
  let applied: AppliedSpawn;
  try {
    applied = applySpawn(desc, prim, writeFd);
  } catch (e) {
    try {
      prim.close(readFd);
    } catch {
      /* best effort */
    }
    throw e;
  } finally {
    try {
      prim.close(writeFd);
    } catch {
      /* best effort */
    }
  }
  return new SpawnedBuild(applied.pid, readFd, prim, opts);
}
