// The launcher contract, in one file: the request the TypeScript side sends
// to backends/linux/launcher.c, and the status/result lines it answers with.
//
// Request:  "DRVBOX01" record*
//   record: u32 tag | u32 length | payload           (little endian)
//   integers are u64 payloads; strings are raw bytes, never containing NUL;
//   OP payload: u32 opcode | u32 flags | u32 mode | u32 lenA | A | u32 lenB | B
// Status (fd 4, close-on-exec in the builder):
//   "P <pid>"                  the sandbox init's pid (host namespace)
//   "E <message>"              fatal setup error (at most one)
//   "B <message>"              the builder could not be executed (a build
//                              failure, as in Nix: "executing '...': ...")
//   "S <step> <detail>"        probe step passed
//   "F <step> <errno> <text>"  probe step failed
//   "H"                        held (HOLD = 1, server mode): all is set up,
//                              the builder waits for "G" on the control
//                              connection ("K" or EOF: killed, nothing ran)
//   "C <i>" / "A <i>"          add-path, remove-path: working on path i /
//                              path i is done (then at most one "E")
//   EOF without E              the builder was exec'd
// Server mode (`drvbox-launcher --server`, see server.ts): fd 3 carries
//   frames u32 length | u64 build id | request; the first frame holds SOCKET
//   and TOKEN. Each build's monitor connects twice to that abstract socket,
//   "<token> <id> C\n" (control: "P <monitor> <init>", then "R" at exec or
//   "E ...", then "X ..."; drvbox may send "K" to kill) and "<token> <id> L\n"
//   (the log). The zygote reports "F <id> <message>" on fd 3 when a monitor
//   cannot connect. A frame whose request has MODE REMOVE_TREE (MODE is
//   always the first record) and TARGET <path> makes the zygote fork a
//   remover that deletes that tree (no symlink followed, no mount point
//   entered, read-only and mode-0 dirs made searchable) while other builds
//   start; when it has reaped it, the zygote reports "D <id> <status>" on
//   fd 3 (0: the tree is gone; 1: something was left). Frames of MODE
//   ADD_PATH and REMOVE_PATH are run the same way by a forked child, whose
//   status lines come on fd 3 as "M <id> <line>" before "D <id> <status>".
// Result (fd 5, written by the monitor when the init has been reaped):
//   "X <code> <signal> <utime-us> <stime-us> <maxrss-kib>"
//   (code -1 when killed by a signal; EOF without X: the monitor was killed)
// Reaper mode (REAPER = 1, the unsandboxed backend): the namespace's init
//   forks the builder, reaps everything, kills the rest when the builder
//   exits, and the result line carries the builder's own exit status/signal.
import { SandboxNulByte } from './errors.js';

export const MAGIC = 'DRVBOX01';

export const Tag = {
  MODE: 1,
  CLONE_FLAGS: 2,
  PARENT_PID: 3,
  UID_MAP: 4,
  GID_MAP: 5,
  SELF_MAP: 6,
  SANDBOX_UID: 7,
  SANDBOX_GID: 8,
  HOSTNAME: 9,
  DOMAINNAME: 10,
  CHROOT: 11,
  OP: 12,
  KEEP_NS: 13,
  CWD: 14,
  PERSONALITY: 15,
  NO_NEW_PRIVS: 16,
  SECCOMP: 17,
  BUILDER: 18,
  ARG: 19,
  ENV: 20,
  DROP_GROUPS: 21,
  CGROUP: 22,
  NEWCGROUP: 23,
  TARGET_PID: 24,
  SOURCE: 25,
  TARGET: 26,
  UMASK: 27,
  KILL_UID: 28,
  LOOPBACK: 29,
  STORE_DIR: 30,
  SOCKET: 31,
  TOKEN: 32,
  REAPER: 34,
  HOLD: 35,
  NAME: 36,
  MAKE_CHROOT: 37,
  CHROOT_OWNER: 38,
  GROUP: 39,
} as const;

export const Mode = { RUN: 1, PROBE: 2, ADD_PATH: 3, KILL_USER: 4, REMOVE_TREE: 5, REMOVE_PATH: 6 } as const;

export const OpCode = {
  mkdir: 1,
  write: 2,
  symlink: 3,
  bind: 4,
  mount: 5,
  'copy-symlink': 6,
  'remount-ro': 7,
} as const;

export const OpFlag = { RO: 1, OPTIONAL: 2, SHARED: 4, NOSUID: 8, NODEV: 16, NOEXEC: 32, DISK: 64, SRC_DISK: 128, RECURSIVE: 256 } as const;

export const CloneFlag = {
  NEWNS: 0x00020000,
  NEWCGROUP: 0x02000000,
  NEWUTS: 0x04000000,
  NEWIPC: 0x08000000,
  NEWUSER: 0x10000000,
  NEWPID: 0x20000000,
  NEWNET: 0x40000000,
} as const;

/** One low-level operation, as the launcher executes it. */
export interface WireOp {
  code: number;
  flags: number;
  mode: number;
  a: string;
  b: string | Buffer;
}

/** Everything the launcher can be told; absent fields are not sent. */
export interface LauncherRequest {
  mode: number;
  cloneFlags?: number;
  parentPid?: number;
  uidMap?: string;
  gidMap?: string;
  selfMap?: boolean;
  sandboxUid?: number;
  sandboxGid?: number;
  hostname?: string;
  domainname?: string;
  loopback?: boolean;
  chroot?: string;
  ops?: WireOp[];
  keepNs?: boolean;
  cwd?: string;
  personality?: number | null;
  noNewPrivs?: boolean;
  seccomp?: Buffer | null;
  builder?: string;
  argv?: string[];
  env?: [string, string][];
  dropGroups?: boolean;
  /** With dropGroups, as root: the supplementary groups to set instead of none (a build user's). */
  groups?: number[];
  cgroup?: string;
  newCgroup?: boolean;
  targetPid?: number;
  /** add-path: host sources, one per name. */
  sources?: string[];
  /** add-path, remove-path: store path names (one file name each). */
  names?: string[];
  target?: string;
  storeDir?: string;
  umask?: number;
  killUid?: number;
  /** The init forks the builder and reaps (see the header). */
  reaper?: boolean;
  /** The init waits for "G" before exec'ing the builder (server mode). */
  hold?: boolean;
  /** run: the launcher creates the chroot dir (mode 0700) before the sandbox. */
  makeChroot?: boolean;
  /** run, with makeChroot: the created chroot dir is given to this uid/gid (a build user). */
  chrootOwner?: { uid: number; gid: number };
  /** Server mode's first frame: abstract socket name and token. */
  socketName?: string;
  token?: string;
}

/** Names the field for the error message when a string holds a NUL byte. */
function checkNul(what: string, value: string | Buffer, context: string): void {
  const has = typeof value === 'string' ? value.includes('\0') : value.includes(0);
  if (has) {
    const shown = typeof value === 'string' ? JSON.stringify(value.replaceAll('\0', '\\0')) : '<bytes>';
    throw new SandboxNulByte(`${context}: ${what} ${shown} contains a NUL byte`, { field: what, value: String(value) });
  }
}

/** Writes the frames straight into one buffer that grows as needed (a request is built per build). */
class Writer {
  private buf = Buffer.allocUnsafe(8192);
  private size = 0;
  constructor(private readonly context: string) {
    this.size = this.buf.write(MAGIC, 0, 'latin1');
  }
  private reserve(n: number): void {
    if (this.size + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.size + n));
    this.buf.copy(next, 0, 0, this.size);
    this.buf = next;
  }
  private header(tag: number, len: number): void {
    this.buf.writeUInt32LE(tag, this.size);
    this.buf.writeUInt32LE(len, this.size + 4);
    this.size += 8;
  }
  /** Writes `v` at the end (room reserved by the caller); returns its length in bytes. */
  private put(v: string | Buffer): number {
    const n = typeof v === 'string' ? this.buf.write(v, this.size, 'utf8') : v.copy(this.buf, this.size);
    this.size += n;
    return n;
  }
  private static len(v: string | Buffer): number {
    return typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length;
  }
  u64(tag: number, v: number | bigint | boolean): void {
    this.reserve(16);
    this.header(tag, 8);
    this.buf.writeBigUInt64LE(BigInt(typeof v === 'boolean' ? (v ? 1 : 0) : v), this.size);
    this.size += 8;
  }
  str(tag: number, what: string, v: string | Buffer): void {
    checkNul(what, v, this.context);
    this.bytes(tag, v);
  }
  bytes(tag: number, v: string | Buffer): void {
    const n = Writer.len(v);
    this.reserve(8 + n);
    this.header(tag, n);
    this.put(v);
  }
  op(o: WireOp): void {
    checkNul('sandbox path', o.a, this.context);
    checkNul('sandbox path or content', o.b, this.context);
    const na = Writer.len(o.a);
    const nb = Writer.len(o.b);
    this.reserve(8 + 20 + na + nb);
    this.header(Tag.OP, 20 + na + nb);
    const b = this.buf;
    b.writeUInt32LE(o.code, this.size);
    b.writeUInt32LE(o.flags, this.size + 4);
    b.writeUInt32LE(o.mode, this.size + 8);
    b.writeUInt32LE(na, this.size + 12);
    this.size += 16;
    this.put(o.a);
    b.writeUInt32LE(nb, this.size);
    this.size += 4;
    this.put(o.b);
  }
  done(): Buffer {
    return this.buf.subarray(0, this.size);
  }
}

/**
 * Serialises one launcher request. `context` prefixes error messages (e.g.
 * "derivation '/nix/store/…-x.drv'"). Throws SandboxNulByte before anything
 * is sent when a path, argument or environment entry contains NUL.
 */
export function encodeRequest(r: LauncherRequest, context = 'sandbox request'): Buffer {
  const w = new Writer(context);
  w.u64(Tag.MODE, r.mode);
  if (r.cloneFlags !== undefined) w.u64(Tag.CLONE_FLAGS, r.cloneFlags);
  if (r.parentPid !== undefined) w.u64(Tag.PARENT_PID, r.parentPid);
  if (r.uidMap !== undefined) w.str(Tag.UID_MAP, 'uid map', r.uidMap);
  if (r.gidMap !== undefined) w.str(Tag.GID_MAP, 'gid map', r.gidMap);
  if (r.selfMap !== undefined) w.u64(Tag.SELF_MAP, r.selfMap);
  if (r.sandboxUid !== undefined) w.u64(Tag.SANDBOX_UID, r.sandboxUid);
  if (r.sandboxGid !== undefined) w.u64(Tag.SANDBOX_GID, r.sandboxGid);
  if (r.hostname !== undefined) w.str(Tag.HOSTNAME, 'host name', r.hostname);
  if (r.domainname !== undefined) w.str(Tag.DOMAINNAME, 'domain name', r.domainname);
  if (r.loopback !== undefined) w.u64(Tag.LOOPBACK, r.loopback);
  if (r.chroot !== undefined) w.str(Tag.CHROOT, 'chroot path', r.chroot);
  if (r.makeChroot !== undefined) w.u64(Tag.MAKE_CHROOT, r.makeChroot);
  if (r.chrootOwner !== undefined) w.u64(Tag.CHROOT_OWNER, (BigInt(r.chrootOwner.uid) << 32n) | BigInt(r.chrootOwner.gid));
  for (const o of r.ops ?? []) w.op(o);
  if (r.keepNs !== undefined) w.u64(Tag.KEEP_NS, r.keepNs);
  if (r.cwd !== undefined) w.str(Tag.CWD, 'working directory', r.cwd);
  if (r.personality !== undefined && r.personality !== null) w.u64(Tag.PERSONALITY, r.personality);
  if (r.noNewPrivs !== undefined) w.u64(Tag.NO_NEW_PRIVS, r.noNewPrivs);
  if (r.seccomp) w.bytes(Tag.SECCOMP, r.seccomp);
  if (r.builder !== undefined) w.str(Tag.BUILDER, 'builder path', r.builder);
  for (const a of r.argv ?? []) w.str(Tag.ARG, 'argument', a);
  for (const [k, v] of r.env ?? []) {
    checkNul('environment variable name', k, context);
    if (k.includes('=') || k === '') {
      throw new SandboxNulByte(`${context}: environment variable name ${JSON.stringify(k)} is empty or contains '='`, {
        field: 'environment variable name',
        value: k,
      });
    }
    checkNul(`value of environment variable '${k}'`, v, context);
    w.str(Tag.ENV, 'environment entry', `${k}=${v}`);
  }
  if (r.dropGroups !== undefined) w.u64(Tag.DROP_GROUPS, r.dropGroups);
  for (const g of r.groups ?? []) w.u64(Tag.GROUP, g);
  if (r.cgroup !== undefined) w.str(Tag.CGROUP, 'cgroup path', r.cgroup);
  if (r.newCgroup !== undefined) w.u64(Tag.NEWCGROUP, r.newCgroup);
  if (r.targetPid !== undefined) w.u64(Tag.TARGET_PID, r.targetPid);
  for (const s of r.sources ?? []) w.str(Tag.SOURCE, 'source path', s);
  for (const n of r.names ?? []) w.str(Tag.NAME, 'store path name', n);
  if (r.target !== undefined) w.str(Tag.TARGET, 'target path', r.target);
  if (r.storeDir !== undefined) w.str(Tag.STORE_DIR, 'store directory', r.storeDir);
  if (r.umask !== undefined) w.u64(Tag.UMASK, r.umask);
  if (r.killUid !== undefined) w.u64(Tag.KILL_UID, r.killUid);
  if (r.reaper !== undefined) w.u64(Tag.REAPER, r.reaper);
  if (r.hold !== undefined) w.u64(Tag.HOLD, r.hold);
  if (r.socketName !== undefined) w.str(Tag.SOCKET, 'socket name', r.socketName);
  if (r.token !== undefined) w.str(Tag.TOKEN, 'token', r.token);
  return w.done();
}

export type StatusLine =
  | { kind: 'pid'; pid: number; monitorPid?: number }
  | { kind: 'error'; message: string }
  | { kind: 'exec-failed'; message: string }
  | { kind: 'step-ok'; step: string; detail: string }
  | { kind: 'step-failed'; step: string; errno: number; message: string }
  | { kind: 'held' }
  | { kind: 'path-current'; index: number }
  | { kind: 'path-done'; index: number }
  | { kind: 'other'; text: string };

export function parseStatusLine(line: string): StatusLine {
  const kind = line === 'R' || line === 'H' ? line : line.slice(0, 2);
  const rest = line.slice(2);
  switch (kind) {
    case 'P ': {
      const [a, b] = rest.split(' ');
      return b === undefined ? { kind: 'pid', pid: Number(a) } : { kind: 'pid', pid: Number(b), monitorPid: Number(a) };
    }
    case 'R':
      return { kind: 'other', text: 'R' };
    case 'H':
      return { kind: 'held' };
    case 'C ':
    case 'A ':
      if (/^\d+$/.test(rest)) return { kind: kind === 'C ' ? 'path-current' : 'path-done', index: Number(rest) };
      return { kind: 'other', text: line };
    case 'E ':
      return { kind: 'error', message: rest };
    case 'B ':
      return { kind: 'exec-failed', message: rest };
    case 'S ': {
      const sp = rest.indexOf(' ');
      return sp < 0 ? { kind: 'step-ok', step: rest, detail: '' } : { kind: 'step-ok', step: rest.slice(0, sp), detail: rest.slice(sp + 1) };
    }
    case 'F ': {
      const m = /^(\S+) (\d+) (.*)$/.exec(rest);
      if (m) return { kind: 'step-failed', step: m[1]!, errno: Number(m[2]), message: m[3]! };
      return { kind: 'other', text: line };
    }
    default:
      return { kind: 'other', text: line };
  }
}

export interface ResultLine {
  code: number | null;
  signal: number | null;
  cpuUserUs: number;
  cpuSystemUs: number;
  maxRssKiB: number;
}

export function parseResultLine(text: string): ResultLine | null {
  const m = /^X (-?\d+) (\d+) (\d+) (\d+) (\d+)\n?$/.exec(text);
  if (!m) return null;
  const code = Number(m[1]);
  const sig = Number(m[2]);
  return {
    code: code >= 0 ? code : null,
    signal: sig > 0 ? sig : null,
    cpuUserUs: Number(m[3]),
    cpuSystemUs: Number(m[4]),
    maxRssKiB: Number(m[5]),
  };
}
