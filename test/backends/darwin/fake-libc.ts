// SpawnPrimitives that record every call instead of making it.
import { DARWIN_ABI, type Handle, type SpawnPrimitives, type WaitResult } from '../../../backends/darwin/libc.js';
import type { SpawnCredentials } from '../../../backends/darwin/spawn-plan.js';

export interface FakeLibc extends SpawnPrimitives {
  calls: Array<[string, ...unknown[]]>;
  /** Results for waitNoHang, consumed in order; the last one repeats. */
  waits: WaitResult[];
  spawnRc: number;
  binprefTaken: number | null;
  uidPids: number[];
}

export function fakeLibc(over: Partial<FakeLibc> = {}): FakeLibc {
  const calls: FakeLibc['calls'] = [];
  let handles = 0;
  const h = (kind: string): Handle => ({ buf: Buffer.from(`${kind}#${++handles}`) });
  const name = (x: Handle) => x.buf.toString();
  const f: FakeLibc = {
    abi: DARWIN_ABI,
    calls,
    waits: [{ pid: 4242, status: 0, cpuUserMs: 12, cpuSystemMs: 3 }],
    spawnRc: 0,
    binprefTaken: null,
    uidPids: [],
    pipe() {
      calls.push(['pipe']);
      return [10, 11];
    },
    close(fd) {
      calls.push(['close', fd]);
    },
    sysctlSetInt(n, v) {
      calls.push(['sysctlSetInt', n, v]);
      return 0;
    },
    sysctlGetInt(n) {
      calls.push(['sysctlGetInt', n]);
      return null;
    },
    fileActionsInit() {
      const x = h('fa');
      calls.push(['fileActionsInit', name(x)]);
      return x;
    },
    fileActionsAddOpen(fa, fd, path, oflag, mode) {
      calls.push(['addopen', name(fa), fd, path, oflag, mode]);
      return 0;
    },
    fileActionsAddDup2(fa, fd, newfd) {
      calls.push(['adddup2', name(fa), fd, newfd]);
      return 0;
    },
    fileActionsAddChdir(fa, path) {
      calls.push(['addchdir_np', name(fa), path]);
      return 0;
    },
    fileActionsAddCloseFrom(fa, low) {
      calls.push(['addclosefrom_np', name(fa), low]);
      return 0;
    },
    fileActionsDestroy(fa) {
      calls.push(['fileActionsDestroy', name(fa)]);
    },
    attrInit() {
      const x = h('attr');
      calls.push(['attrInit', name(x)]);
      return x;
    },
    attrSetFlags(a, flags) {
      calls.push(['setflags', name(a), flags]);
      return 0;
    },
    attrSetPgroup(a, pg) {
      calls.push(['setpgroup', name(a), pg]);
      return 0;
    },
    attrResetSignals(a) {
      calls.push(['setsigdefault', name(a)]);
      return 0;
    },
    attrClearSignalMask(a) {
      calls.push(['setsigmask', name(a)]);
      return 0;
    },
    attrSetBinpref(a, cpus) {
      calls.push(['setbinpref_np', name(a), [...cpus]]);
      return { rc: 0, count: f.binprefTaken ?? cpus.length };
    },
    attrSetCredentials(a, c: SpawnCredentials) {
      calls.push(['setcredentials', name(a), c]);
      return 0;
    },
    attrDestroy(a) {
      calls.push(['attrDestroy', name(a)]);
    },
    spawn(path, fa, attr, argv, envp) {
      calls.push(['posix_spawn', path, name(fa), name(attr), [...argv], [...envp]]);
      return { rc: f.spawnRc, pid: f.spawnRc === 0 ? 4242 : 0 };
    },
    async waitNoHang(pid) {
      calls.push(['wait4', pid]);
      return f.waits.length > 1 ? f.waits.shift()! : f.waits[0]!;
    },
    listPidsOfUid(uid) {
      calls.push(['listPidsOfUid', uid]);
      return f.uidPids;
    },
    ...over,
  };
  return f;
}
