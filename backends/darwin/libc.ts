// The C calls the backend makes, bound through koffi (loaded lazily, so
// planning and `explain` never need it). Each primitive is a thin wrapper that
// returns the C result; sequencing and error handling live in spawn-exec.ts
// and sysv-ipc.ts, which tests drive with fake primitives.
//
// Darwin is the target. A Linux ABI exists only so the executor can be
// exercised for real on Linux CI (no binpref, sysctlbyname or CLOEXEC_DEFAULT
// there: those calls are reported as unsupported).
import { DarwinLibcUnavailable } from './errors.js';
import { POSIX_SPAWN_CLOEXEC_DEFAULT, type SpawnCredentials } from './spawn-plan.js';

/** The slice of koffi this module uses; tests pass a fake. */
export interface KoffiLike {
  load(path: string): { func(prototype: string): KoffiFn };
  errno(): number;
  address(value: unknown): bigint;
}
export interface KoffiFn {
  (...args: unknown[]): unknown;
  async: (...args: unknown[]) => void;
}

export interface LibcAbi {
  os: 'darwin' | 'linux';
  libPath: string;
  /** Bytes to reserve for posix_spawn_file_actions_t / posix_spawnattr_t (a pointer on Darwin, a struct on glibc). */
  fileActionsBytes: number;
  attrBytes: number;
  sigsetBytes: number;
  /** Highest signal number, and the two that cannot be caught. */
  maxSignal: number;
  uncatchable: [number, number];
  wnohang: number;
}

export const DARWIN_ABI: LibcAbi = {
  os: 'darwin',
  libPath: '/usr/lib/libSystem.B.dylib',
  fileActionsBytes: 8,
  attrBytes: 8,
  sigsetBytes: 4,
  maxSignal: 31,
  uncatchable: [9, 17], // SIGKILL, SIGSTOP
  wnohang: 1,
};

export const LINUX_ABI: LibcAbi = {
  os: 'linux',
  libPath: 'libc.so.6',
  fileActionsBytes: 256, // glibc: 80
  attrBytes: 512, // glibc: 336
  sigsetBytes: 128,
  maxSignal: 64,
  uncatchable: [9, 19],
  wnohang: 1,
};

/** Darwin's KAUTH_UID_NONE: the groups given are final, no membership resolver. */
export const KAUTH_UID_NONE = 0xffffffff - 100;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const LINUX_O_CLOEXEC = 0o2000000;
// <sys/proc_info.h>
export const PROC_UID_ONLY = 4;
export const PROC_RUID_ONLY = 5;

export interface Handle {
  readonly buf: Buffer;
}

export interface WaitResult {
  /** The pid reaped, 0 while the child runs, -1 on error. */
  pid: number;
  status: number;
  cpuUserMs: number;
  cpuSystemMs: number;
}

export interface SpawnPrimitives {
  readonly abi: LibcAbi;
  /** A pipe, both ends close-on-exec: [read, write]. */
  pipe(): [number, number];
  close(fd: number): void;
  /** sysctlbyname write of an int; 0 or the errno. */
  sysctlSetInt(name: string, value: number): number;
  /** sysctlbyname read of an int; null when the name does not exist. */
  sysctlGetInt(name: string): number | null;
  fileActionsInit(): Handle;
  fileActionsAddOpen(fa: Handle, fd: number, path: string, oflag: number, mode: number): number;
  fileActionsAddDup2(fa: Handle, fd: number, newfd: number): number;
  fileActionsAddChdir(fa: Handle, path: string): number;
  /** Close every fd >= lowFd in the child: glibc's stand-in for Darwin's POSIX_SPAWN_CLOEXEC_DEFAULT; ENOTSUP on Darwin. */
  fileActionsAddCloseFrom(fa: Handle, lowFd: number): number;
  fileActionsDestroy(fa: Handle): void;
  attrInit(): Handle;
  attrSetFlags(attr: Handle, flags: number): number;
  attrSetPgroup(attr: Handle, pgroup: number): number;
  /** setsigdefault with every catchable signal. */
  attrResetSignals(attr: Handle): number;
  /** setsigmask with the empty set. */
  attrClearSignalMask(attr: Handle): number;
  /** setbinpref_np; how many preferences the kernel took. */
  attrSetBinpref(attr: Handle, cpuTypes: number[]): { rc: number; count: number };
  attrSetCredentials(attr: Handle, creds: SpawnCredentials): number;
  attrDestroy(attr: Handle): void;
  spawn(path: string, fa: Handle, attr: Handle, argv: string[], envp: string[]): { rc: number; pid: number };
  /** wait4(pid, WNOHANG) on a worker thread. */
  waitNoHang(pid: number): Promise<WaitResult>;
  /** proc_listpids by uid (Darwin); null where unsupported. */
  listPidsOfUid(uid: number): number[] | null;
}

/** Bytes of a sigset_t with every catchable signal set (bit n-1 for signal n). */
export function catchableSigset(abi: LibcAbi): Buffer {
  const set = Buffer.alloc(abi.sigsetBytes);
  for (let sig = 1; sig <= abi.maxSignal; sig++) {
    if (abi.uncatchable.includes(sig)) continue;
    const bit = sig - 1;
    set[bit >> 3]! |= 1 << (bit & 7);
  }
  return set;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** Binds the primitives through `koffi` for `abi`. Missing symbols fail here, not mid-spawn. */
export function bindLibc(koffi: KoffiLike, abi: LibcAbi): SpawnPrimitives {
  let lib: { func(prototype: string): KoffiFn };
  try {
    lib = koffi.load(abi.libPath);
  } catch (e) {
    throw new DarwinLibcUnavailable(`cannot load ${abi.libPath}: ${(e as Error).message}`, { lib: abi.libPath });
  }
  const fn = (proto: string): KoffiFn => {
    try {
      return lib.func(proto);
    } catch (e) {
      throw new DarwinLibcUnavailable(`${abi.libPath} lacks '${proto}': ${(e as Error).message}`, { lib: abi.libPath, prototype: proto });
    }
  };
  const darwin = abi.os === 'darwin';
  const c = {
    close: fn('int close(int fd)'),
    pipe: darwin ? fn('int pipe(int *fds)') : fn('int pipe2(int *fds, int flags)'),
    fcntl: darwin ? fn('int fcntl(int fd, int cmd, ...)') : null,
    sysctlbyname: darwin ? fn('int sysctlbyname(const char *name, void *oldp, void *oldlenp, void *newp, size_t newlen)') : null,
    faInit: fn('int posix_spawn_file_actions_init(void *fa)'),
    faOpen: fn('int posix_spawn_file_actions_addopen(void *fa, int fd, const char *path, int oflag, int mode)'),
    faDup2: fn('int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)'),
    faChdir: fn('int posix_spawn_file_actions_addchdir_np(void *fa, const char *path)'),
    faCloseFrom: darwin ? null : fn('int posix_spawn_file_actions_addclosefrom_np(void *fa, int from)'),
    faDestroy: fn('int posix_spawn_file_actions_destroy(void *fa)'),
    attrInit: fn('int posix_spawnattr_init(void *attr)'),
    attrFlags: fn('int posix_spawnattr_setflags(void *attr, short flags)'),
    attrPgroup: fn('int posix_spawnattr_setpgroup(void *attr, int pgroup)'),
    attrSigdef: fn('int posix_spawnattr_setsigdefault(void *attr, void *sigset)'),
    attrSigmask: fn('int posix_spawnattr_setsigmask(void *attr, void *sigset)'),
    attrBinpref: darwin ? fn('int posix_spawnattr_setbinpref_np(void *attr, size_t count, int *pref, size_t *ocount)') : null,
    // Apple SPI (<spawn_private.h>, macOS 10.15+): the spawned child gets the
    // build user's identity without drvbox forking.
    attrUid: darwin ? fn('int posix_spawnattr_set_uid_np(void *attr, uint32_t uid)') : null,
    attrGid: darwin ? fn('int posix_spawnattr_set_gid_np(void *attr, uint32_t gid)') : null,
    attrGroups: darwin ? fn('int posix_spawnattr_set_groups_np(void *attr, int ngroups, uint32_t *gids, uint32_t gmuid)') : null,
    attrDestroy: fn('int posix_spawnattr_destroy(void *attr)'),
    spawn: fn('int posix_spawn(int *pid, const char *path, void *fa, void *attr, const char **argv, const char **envp)'),
    wait4: fn('int wait4(int pid, int *status, int options, void *rusage)'),
    listpids: darwin ? fn('int proc_listpids(uint32_t type, uint32_t typeinfo, void *buffer, int buffersize)') : null,
  };
  const sigAll = catchableSigset(abi);
  const sigNone = Buffer.alloc(abi.sigsetBytes);
  const unsupported = 45; // ENOTSUP on Darwin; only reported, never thrown

  return {
    abi,
    pipe() {
      const fds = new Int32Array(2);
      const rc = darwin ? c.pipe(fds) : c.pipe(fds, LINUX_O_CLOEXEC);
      if (rc !== 0) throw new DarwinLibcUnavailable(`pipe() failed (errno ${koffi.errno()})`, { errno: koffi.errno() });
      if (darwin) for (const fd of fds) c.fcntl!(fd, F_SETFD, 'int', FD_CLOEXEC);
      return [fds[0]!, fds[1]!];
    },
    close(fd) {
      c.close(fd);
    },
    sysctlSetInt(name, value) {
      if (!c.sysctlbyname) return unsupported;
      const v = new Int32Array([value]);
      return c.sysctlbyname(name, null, null, v, 4) === 0 ? 0 : koffi.errno();
    },
    sysctlGetInt(name) {
      if (!c.sysctlbyname) return null;
      const v = Buffer.alloc(8);
      const len = u64(8);
      if (c.sysctlbyname(name, v, len, null, 0) !== 0) return null;
      const n = Number(len.readBigUInt64LE());
      return n >= 8 ? Number(v.readBigInt64LE()) : v.readInt32LE();
    },
    fileActionsInit() {
      const h = { buf: Buffer.alloc(abi.fileActionsBytes) };
      const rc = c.faInit(h.buf) as number;
      if (rc !== 0) throw new DarwinLibcUnavailable(`posix_spawn_file_actions_init failed (${rc})`, { rc });
      return h;
    },
    fileActionsAddOpen: (fa, fd, path, oflag, mode) => c.faOpen(fa.buf, fd, path, oflag, mode) as number,
    fileActionsAddDup2: (fa, fd, newfd) => c.faDup2(fa.buf, fd, newfd) as number,
    fileActionsAddChdir: (fa, path) => c.faChdir(fa.buf, path) as number,
    fileActionsAddCloseFrom: (fa, lowFd) => (c.faCloseFrom ? (c.faCloseFrom(fa.buf, lowFd) as number) : unsupported),
    fileActionsDestroy(fa) {
      c.faDestroy(fa.buf);
    },
    attrInit() {
      const h = { buf: Buffer.alloc(abi.attrBytes) };
      const rc = c.attrInit(h.buf) as number;
      if (rc !== 0) throw new DarwinLibcUnavailable(`posix_spawnattr_init failed (${rc})`, { rc });
      return h;
    },
    // glibc has no CLOEXEC_DEFAULT; there the pipes' O_CLOEXEC does the job.
    attrSetFlags: (attr, flags) => c.attrFlags(attr.buf, darwin ? flags : flags & ~POSIX_SPAWN_CLOEXEC_DEFAULT) as number,
    attrSetPgroup: (attr, pgroup) => c.attrPgroup(attr.buf, pgroup) as number,
    attrResetSignals: (attr) => c.attrSigdef(attr.buf, sigAll) as number,
    attrClearSignalMask: (attr) => c.attrSigmask(attr.buf, sigNone) as number,
    attrSetBinpref(attr, cpuTypes) {
      if (!c.attrBinpref) return { rc: unsupported, count: 0 };
      const count = u64(0);
      const rc = c.attrBinpref(attr.buf, cpuTypes.length, new Int32Array(cpuTypes), count) as number;
      return { rc, count: Number(count.readBigUInt64LE()) };
    },
    attrSetCredentials(attr, creds) {
      if (!c.attrUid || !c.attrGid || !c.attrGroups) return unsupported;
      // Groups are set explicitly (even when empty): the child must not keep ours.
      const rc1 = c.attrGroups(attr.buf, creds.groups.length, new Uint32Array(creds.groups), KAUTH_UID_NONE) as number;
      if (rc1 !== 0) return rc1;
      const rc2 = c.attrGid(attr.buf, creds.gid) as number;
      if (rc2 !== 0) return rc2;
      return c.attrUid(attr.buf, creds.uid) as number;
    },
    attrDestroy(attr) {
      c.attrDestroy(attr.buf);
    },
    spawn(path, fa, attr, argv, envp) {
      const pid = new Int32Array(1);
      const rc = c.spawn(pid, path, fa.buf, attr.buf, [...argv, null], [...envp, null]) as number;
      return { rc, pid: pid[0]! };
    },
    waitNoHang(pid) {
      const status = new Int32Array(1);
      const rusage = Buffer.alloc(256);
      return new Promise((resolve, reject) => {
        c.wait4.async(pid, status, abi.wnohang, rusage, (err: unknown, res: number) => {
          if (err) return reject(err);
          // struct rusage starts with two struct timeval: {int64 sec; int32/64 usec}.
          const ms = (off: number) => Number(rusage.readBigInt64LE(off)) * 1000 + Math.floor(rusage.readInt32LE(off + 8) / 1000);
          resolve({ pid: res, status: status[0]!, cpuUserMs: ms(0), cpuSystemMs: ms(16) });
        });
      });
    },
    listPidsOfUid(uid) {
      if (!c.listpids) return null;
      const pids = new Set<number>();
      for (const type of [PROC_UID_ONLY, PROC_RUID_ONLY]) {
        const buf = Buffer.alloc(4 * 16384);
        const n = c.listpids(type, uid, buf, buf.length) as number;
        for (let i = 0; i + 4 <= n; i += 4) {
          const p = buf.readInt32LE(i);
          if (p > 0) pids.add(p);
        }
      }
      return [...pids];
    },
  };
}

let cached: Promise<SpawnPrimitives> | null = null;

/** The real primitives for this host (Darwin, or Linux for tests), koffi imported on first use. */
export function hostLibc(): Promise<SpawnPrimitives> {
  if (!cached) {
    cached = (async () => {
      const abi = process.platform === 'darwin' ? DARWIN_ABI : process.platform === 'linux' ? LINUX_ABI : null;
      if (!abi) throw new DarwinLibcUnavailable(`no C library binding for platform '${process.platform}'`, { platform: process.platform });
      let koffi: KoffiLike;
      try {
        koffi = ((await import('koffi')) as unknown as { default: KoffiLike }).default;
      } catch (e) {
        throw new DarwinLibcUnavailable(`cannot load koffi: ${(e as Error).message}`, {});
      }
      return bindLibc(koffi, abi);
    })();
    cached.catch(() => {
      cached = null;
    });
  }
  return cached;
}
