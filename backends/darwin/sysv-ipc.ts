// System V IPC objects (shared memory, semaphores, message queues) outlive
// the processes that made them, and macOS has no IPC namespace: after a build
// run as a build user, everything that user still owns is removed.
//
// Enumeration uses the sysctls behind ipcs(1): `kern.sysv.ipcs.{shm,sem,msg}`
// take and return a command
//   struct { int32 magic; int32 op; int32 cursor; int32 datalen; uint64 data; }  (24 bytes)
// and copy one object descriptor to `data`, whose first 24 bytes are
//   struct ipc_perm { uint32 uid, gid, cuid, cgid; uint16 mode, seq; int32 key; }
// The kernel insists that datalen equal its descriptor size (EINVAL
// otherwise); that size is probed instead of hard-coded, since only the
// ipc_perm prefix is read.
import type { KoffiLike, KoffiFn } from './libc.js';

export type SysvKind = 'shm' | 'sem' | 'msg';
export const SYSV_KINDS: SysvKind[] = ['shm', 'sem', 'msg'];

export const IPCS_MAGIC = 0x00000001;
export const IPCS_ITER: Record<SysvKind, number> = { shm: 0x00000002, sem: 0x00000020, msg: 0x00000200 };
export const IPCS_SYSCTL: Record<SysvKind, string> = { shm: 'kern.sysv.ipcs.shm', sem: 'kern.sysv.ipcs.sem', msg: 'kern.sysv.ipcs.msg' };
export const IPCS_COMMAND_BYTES = 24;
export const IPC_PERM_BYTES = 24;
/** Descriptor sizes to try first: shm's `struct user_shmid_ds` (pack 4) is 76 bytes on 64-bit XNU. */
const KNOWN_SIZES: Record<SysvKind, number[]> = { shm: [76], sem: [], msg: [] };
const MAX_PROBE = 256;
export const IPC_RMID = 0;
export const IPC_STAT = 2;
export const IPC_PRIVATE = 0;
// Darwin errno values
const EINVAL = 22;

export interface IpcPerm {
  uid: number;
  gid: number;
  cuid: number;
  cgid: number;
  mode: number;
  seq: number;
  key: number;
}

export interface SysvObject {
  kind: SysvKind;
  /** Slot in the kernel table. */
  index: number;
  perm: IpcPerm;
}

export interface SysvPrimitives {
  /** One IPCS_*_ITER call: 0 or the errno, the cursor the kernel returned, the descriptor bytes. */
  ipcsIter(kind: SysvKind, cursor: number, datalen: number): { rc: number; cursor: number; data: Buffer };
  /** shmget/semget/msgget(key, 0, 0): the id, or -1. */
  get(kind: SysvKind, key: number): number;
  /** IPC_STAT: the descriptor (ipc_perm first), or null. */
  stat(kind: SysvKind, id: number): Buffer | null;
  /** IPC_RMID: 0 or the errno. */
  remove(kind: SysvKind, id: number): number;
}

export function decodeIpcPerm(b: Buffer): IpcPerm {
  return {
    uid: b.readUInt32LE(0),
    gid: b.readUInt32LE(4),
    cuid: b.readUInt32LE(8),
    cgid: b.readUInt32LE(12),
    mode: b.readUInt16LE(16),
    seq: b.readUInt16LE(18),
    key: b.readInt32LE(20),
  };
}

export function encodeIpcsCommand(op: number, cursor: number, datalen: number, data: bigint): Buffer {
  const b = Buffer.alloc(IPCS_COMMAND_BYTES);
  b.writeInt32LE(IPCS_MAGIC, 0);
  b.writeInt32LE(op, 4);
  b.writeInt32LE(cursor, 8);
  b.writeInt32LE(datalen, 12);
  b.writeBigUInt64LE(data, 16);
  return b;
}

/** The kernel's id for a table slot (BSD IXSEQ_TO_IPCID). */
export function ipcId(index: number, seq: number): number {
  return ((seq << 16) | (index & 0xffff)) >>> 0;
}

/** Every object of one kind. Stops at the first error other than a size mismatch while probing. */
export function listSysvKind(prim: SysvPrimitives, kind: SysvKind): SysvObject[] {
  const sizes = [...KNOWN_SIZES[kind]];
  for (let s = IPC_PERM_BYTES; s <= MAX_PROBE; s += 4) if (!sizes.includes(s)) sizes.push(s);
  let size = -1;
  let first: { rc: number; cursor: number; data: Buffer } | null = null;
  for (const s of sizes) {
    const r = prim.ipcsIter(kind, 0, s);
    if (r.rc === EINVAL) continue;
    size = s;
    first = r;
    break;
  }
  const out: SysvObject[] = [];
  let r = first;
  // The table is finite (kern.sysv.*mni); the bound only guards against a looping cursor.
  for (let guard = 0; r && r.rc === 0 && guard < 1 << 16; guard++) {
    out.push({ kind, index: r.cursor - 1, perm: decodeIpcPerm(r.data) });
    r = prim.ipcsIter(kind, r.cursor, size);
  }
  return out;
}

export function listSysvObjects(prim: SysvPrimitives): SysvObject[] {
  return SYSV_KINDS.flatMap((k) => listSysvKind(prim, k));
}

export interface SysvCleanup {
  removed: SysvObject[];
  failed: Array<{ object: SysvObject; reason: string }>;
}

/**
 * Removes every object owned (uid) by `uid`. Each object is re-read through
 * IPC_STAT by id before removal, so a slot reused in between is left alone.
 */
export function cleanupSysvIpc(prim: SysvPrimitives, uid: number): SysvCleanup {
  const result: SysvCleanup = { removed: [], failed: [] };
  for (const kind of SYSV_KINDS) {
    let objects: SysvObject[];
    try {
      objects = listSysvKind(prim, kind);
    } catch (e) {
      result.failed.push({ object: { kind, index: -1, perm: decodeIpcPerm(Buffer.alloc(IPC_PERM_BYTES)) }, reason: (e as Error).message });
      continue;
    }
    for (const o of objects) {
      if (o.perm.uid !== uid) continue;
      try {
        const id = o.perm.key !== IPC_PRIVATE ? prim.get(kind, o.perm.key) : ipcId(o.index, o.perm.seq);
        const now = id >= 0 ? prim.stat(kind, id) : null;
        if (!now) {
          result.failed.push({ object: o, reason: 'gone before removal' });
          continue;
        }
        const p = decodeIpcPerm(now);
        if (p.uid !== uid || p.key !== o.perm.key) {
          result.failed.push({ object: o, reason: `slot now belongs to uid ${p.uid} key ${p.key}` });
          continue;
        }
        const rc = prim.remove(kind, id);
        if (rc === 0) result.removed.push(o);
        else result.failed.push({ object: o, reason: `IPC_RMID failed with errno ${rc}` });
      } catch (e) {
        result.failed.push({ object: o, reason: (e as Error).message });
      }
    }
  }
  return result;
}

/** The real primitives on macOS. */
export function bindSysv(koffi: KoffiLike, libPath = '/usr/lib/libSystem.B.dylib'): SysvPrimitives {
  const lib = koffi.load(libPath);
  const f = (p: string): KoffiFn => lib.func(p);
  const sysctlbyname = f('int sysctlbyname(const char *name, void *oldp, void *oldlenp, void *newp, size_t newlen)');
  const get: Record<SysvKind, KoffiFn> = {
    shm: f('int shmget(int key, size_t size, int flag)'),
    sem: f('int semget(int key, int nsems, int flag)'),
    msg: f('int msgget(int key, int flag)'),
  };
  const shmctl = f('int shmctl(int id, int cmd, void *buf)');
  const msgctl = f('int msgctl(int id, int cmd, void *buf)');
  const semctl = f('int semctl(int id, int num, int cmd, ...)');
  const ctl = (kind: SysvKind, id: number, cmd: number, buf: Buffer | null): number =>
    (kind === 'shm' ? shmctl(id, cmd, buf) : kind === 'msg' ? msgctl(id, cmd, buf) : semctl(id, 0, cmd, 'void *', buf)) as number;
  return {
    ipcsIter(kind, cursor, datalen) {
      const data = Buffer.alloc(Math.max(datalen, IPC_PERM_BYTES));
      const cmd = encodeIpcsCommand(IPCS_ITER[kind], cursor, datalen, koffi.address(data));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(IPCS_COMMAND_BYTES));
      const rc = sysctlbyname(IPCS_SYSCTL[kind], cmd, len, cmd, IPCS_COMMAND_BYTES) as number;
      return { rc: rc === 0 ? 0 : koffi.errno(), cursor: cmd.readInt32LE(8), data };
    },
    get: (kind, key) => (kind === 'shm' ? get.shm(key, 0, 0) : kind === 'sem' ? get.sem(key, 0, 0) : get.msg(key, 0)) as number,
    stat(kind, id) {
      const buf = Buffer.alloc(256);
      return ctl(kind, id, IPC_STAT, buf) === 0 ? buf : null;
    },
    remove: (kind, id) => (ctl(kind, id, IPC_RMID, null) === 0 ? 0 : koffi.errno()),
  };
}
