// Who is at the other end of a unix socket, and what the daemon lets them do.
//
//   peer:     SO_PEERCRED (Linux) / getpeereid + LOCAL_PEERPID (macOS), read
//             from the connected socket's fd through koffi (loaded on the
//             first connection, never for --stdio)
//   identity: the user name and the names of the user's groups (primary and
//             supplementary, through NSS: getpwuid_r, getgrouplist,
//             getgrgid_r)
//   policy:   Nix's rules: trusted when `trusted-users` matches; otherwise
//             refused unless `allowed-users` matches; members of
//             `build-users-group` are always refused (builders must not reach
//             the daemon). A list entry is a user name, `@group` or `*`.
//             The daemon's own user is trusted too: it owns the store and
//             could change it directly anyway.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { defineError } from '../errors.js';

export class PeerCredentialsUnavailable extends defineError('PeerCredentialsUnavailable', 'E_PEER_CREDENTIALS') {}

export interface PeerCredentials {
  /** null where the OS does not say (old macOS). */
  pid: number | null;
  uid: number;
  gid: number;
}

export interface PeerIdentity extends PeerCredentials {
  /** The user name, or the uid in decimal when it has none (as Nix prints it). */
  user: string;
  /** Group names: the peer's gid first, then the user's other groups. */
  groups: string[];
}

export interface AccessPolicy {
  trustedUsers: readonly string[];
  allowedUsers: readonly string[];
  /** Nix's build-users-group: its members may not connect. Empty: none. */
  buildUsersGroup: string;
  /** The daemon's own uid (trusted). */
  daemonUid: number | null;
}

export type AccessDecision = { allowed: true; trusted: boolean } | { allowed: false; reason: string };

/** Nix's matchUser: `*`, the user's name, or `@group` for one of its groups. */
export function matchUser(user: string, groups: readonly string[], list: readonly string[]): boolean {
  for (const entry of list) {
    if (entry === '*' || entry === user) return true;
    if (entry.startsWith('@') && groups.includes(entry.slice(1))) return true;
  }
  return false;
}

export function decideAccess(peer: PeerIdentity, policy: AccessPolicy): AccessDecision {
  if (policy.buildUsersGroup !== '' && peer.groups.includes(policy.buildUsersGroup)) {
    return { allowed: false, reason: `user '${peer.user}' is not allowed to connect to the drvbox daemon (a member of build-users-group '${policy.buildUsersGroup}')` };
  }
  const trusted = peer.uid === policy.daemonUid || matchUser(peer.user, peer.groups, policy.trustedUsers);
  if (!trusted && !matchUser(peer.user, peer.groups, policy.allowedUsers)) {
    return { allowed: false, reason: `user '${peer.user}' is not allowed to connect to the drvbox daemon (not in allowed-users: ${policy.allowedUsers.join(' ') || '(empty)'})` };
  }
  return { allowed: true, trusted };
}

// ---- libc ----------------------------------------------------------------------

interface Libc {
  peer(fd: number): PeerCredentials;
  user(uid: number): { name: string; gid: number } | null;
  group(gid: number): string | null;
  groupList(user: string, gid: number): number[];
}

let libc: Libc | null = null;

type Fn = (...args: unknown[]) => number;

function load(): Libc {
  if (libc) return libc;
  const os = process.platform;
  if (os !== 'linux' && os !== 'darwin') {
    throw new PeerCredentialsUnavailable(`reading a socket peer's credentials is not supported on ${os}`, { platform: os });
  }
  let koffi: typeof import('koffi');
  try {
    koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  } catch (e) {
    throw new PeerCredentialsUnavailable(`cannot load koffi to read socket peer credentials: ${(e as Error).message}`, {});
  }
  const lib = koffi.load(os === 'darwin' ? '/usr/lib/libSystem.B.dylib' : 'libc.so.6');
  // Only the leading fields are read; the rest are declared so the sizes match.
  const passwd =
    os === 'darwin'
      ? koffi.struct('drvbox_passwd', {
          pw_name: 'str',
          pw_passwd: 'str',
          pw_uid: 'uint32',
          pw_gid: 'uint32',
          pw_change: 'int64',
          pw_class: 'str',
          pw_gecos: 'str',
          pw_dir: 'str',
          pw_shell: 'str',
          pw_expire: 'int64',
        })
      : koffi.struct('drvbox_passwd', {
          pw_name: 'str',
          pw_passwd: 'str',
          pw_uid: 'uint32',
          pw_gid: 'uint32',
          pw_gecos: 'str',
          pw_dir: 'str',
          pw_shell: 'str',
        });
  void passwd;
  koffi.struct('drvbox_group', { gr_name: 'str', gr_passwd: 'str', gr_gid: 'uint32', gr_mem: 'void *' });
  const getpwuid_r = lib.func('int getpwuid_r(uint32_t uid, _Out_ drvbox_passwd *pwd, uint8_t *buf, size_t len, _Out_ void **result)') as Fn;
  const getgrgid_r = lib.func('int getgrgid_r(uint32_t gid, _Out_ drvbox_group *grp, uint8_t *buf, size_t len, _Out_ void **result)') as Fn;
  const getgrouplist = lib.func('int getgrouplist(const char *user, uint32_t group, _Inout_ uint32_t *groups, _Inout_ int *ngroups)') as Fn;
  const ERANGE = koffi.os.errno.ERANGE ?? 34;

  /** Calls a *_r lookup, growing the buffer on ERANGE; null when there is no entry. */
  const lookup = <T>(call: (out: Record<string, unknown>, buf: Buffer, res: unknown[]) => number): T | null => {
    for (let size = 4096; size <= 1 << 20; size *= 4) {
      const out: Record<string, unknown> = {};
      const res: unknown[] = [null];
      const buf = Buffer.alloc(size);
      const rc = call(out, buf, res);
      if (rc === ERANGE) continue;
      // the struct is decoded even when nothing was found: only `res` tells
      if (rc !== 0 || res[0] === null) return null;
      return out as T;
    }
    return null;
  };

  let peer: (fd: number) => PeerCredentials;
  if (os === 'linux') {
    koffi.struct('drvbox_ucred', { pid: 'int32', uid: 'uint32', gid: 'uint32' });
    const getsockopt = lib.func('int getsockopt(int fd, int level, int name, _Out_ drvbox_ucred *val, _Inout_ uint32_t *len)') as Fn;
    const SOL_SOCKET = 1;
    const SO_PEERCRED = 17;
    peer = (fd) => {
      const cred: Record<string, number> = {};
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, [12]) !== 0) {
        throw new PeerCredentialsUnavailable(`cannot read the peer credentials of socket fd ${fd}: errno ${koffi.errno()}`, { fd });
      }
      return { pid: cred.pid ?? null, uid: cred.uid!, gid: cred.gid! };
    };
  } else {
    const getpeereid = lib.func('int getpeereid(int fd, _Out_ uint32_t *uid, _Out_ uint32_t *gid)') as Fn;
    const getsockoptInt = lib.func('int getsockopt(int fd, int level, int name, _Out_ int *val, _Inout_ uint32_t *len)') as Fn;
    const SOL_LOCAL = 0;
    const LOCAL_PEERPID = 2;
    peer = (fd) => {
      const uid: number[] = [0];
      const gid: number[] = [0];
      if (getpeereid(fd, uid, gid) !== 0) {
        throw new PeerCredentialsUnavailable(`cannot read the peer credentials of socket fd ${fd}: errno ${koffi.errno()}`, { fd });
      }
      const pid: number[] = [0];
      const ok = getsockoptInt(fd, SOL_LOCAL, LOCAL_PEERPID, pid, [4]) === 0;
      return { pid: ok ? pid[0]! : null, uid: uid[0]!, gid: gid[0]! };
    };
  }

  libc = {
    peer,
    user(uid) {
      const pw = lookup<{ pw_name: string; pw_gid: number }>((out, buf, res) => getpwuid_r(uid, out, buf, buf.length, res));
      return pw ? { name: pw.pw_name, gid: pw.pw_gid } : null;
    },
    group(gid) {
      const gr = lookup<{ gr_name: string }>((out, buf, res) => getgrgid_r(gid, out, buf, buf.length, res));
      return gr ? gr.gr_name : null;
    },
    groupList(user, gid) {
      for (let n = 64; n <= 65536; n *= 4) {
        const groups = new Uint32Array(n);
        const count = [n];
        if (getgrouplist(user, gid, groups, count) >= 0) return [...groups.subarray(0, count[0])];
        if (count[0]! > n) n = count[0]!;
      }
      return [gid];
    },
  };
  return libc;
}

/** The fd under a connected net.Socket (a unix-socket handle has one). */
function socketFd(sock: Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new PeerCredentialsUnavailable('cannot read peer credentials: the socket has no file descriptor', {});
  }
  return fd;
}

export function peerCredentials(sock: Socket): PeerCredentials {
  return load().peer(socketFd(sock));
}

/** The user name and group names of `uid` (the peer's `gid` first). */
export function identityOf(cred: PeerCredentials): PeerIdentity {
  const c = load();
  const pw = c.user(cred.uid);
  const user = pw?.name ?? String(cred.uid);
  const gids = [cred.gid, ...(pw ? c.groupList(pw.name, pw.gid) : [])];
  const groups: string[] = [];
  for (const g of gids) {
    const name = c.group(g);
    if (name !== null && !groups.includes(name)) groups.push(name);
  }
  return { ...cred, user, groups };
}

/** Credentials and names of the process at the other end of `sock`. */
export function identifyPeer(sock: Socket): PeerIdentity {
  return identityOf(peerCredentials(sock));
}
