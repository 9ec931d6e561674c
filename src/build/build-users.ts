// Build users (root with `build-users-group`, or `auto-allocate-uids`): every
// build runs as a user nobody else is using, locked for the build's duration
// with Nix's lock files, so a drvbox and a Nix on one machine never share one:
//   build-users-group = G   members of G, in /etc/group order; the lock is
//                           <stateDir>/userpool/<uid> (flock, as Nix); the
//                           build's gid is G's.
//   auto-allocate-uids      slots of 65536 ids from `start-id`, `id-count`
//                           ids in all; <stateDir>/userpool2/slot-<n>; the
//                           build gets the slot's first id as uid and gid,
//                           or all 65536 with the `uid-range` feature.
// Leftover processes of a build user are killed before and after each build
// (a cgroup per build with use-cgroups, else by uid: the uid is locked, so its
// processes can only be builds'); a range that overlaps an account in
// /etc/passwd or /etc/group is refused, so killing never reaches a real user
// (Nix issue 9142).
import { closeSync, mkdirSync, openSync, readFileSync, constants } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BuildUser } from '../../backends/backend.js';
import { tryLock } from '../store/flock.js';
import { BuildUsersUnavailable } from './errors-run.js';

/** 65536 ids per build (Nix's maxIdsPerBuild). */
export const IDS_PER_BUILD = 65536;
export const DEFAULT_START_ID = 872415232; // 0x34000000, as Nix
export const DEFAULT_ID_COUNT = 128 * IDS_PER_BUILD;

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}
export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export function parsePasswd(text: string): PasswdEntry[] {
  const res: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#') || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) continue;
    res.push({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) });
  }
  return res;
}

export function parseGroup(text: string): GroupEntry[] {
  const res: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#') || !/^\d+$/.test(f[2]!)) continue;
    res.push({ name: f[0]!, gid: Number(f[2]), members: f[3]!.split(',').filter(Boolean) });
  }
  return res;
}

/** The accounts behind `build-users-group` (pure: the file texts are given). */
export interface BuildUserCandidate {
  name: string;
  uid: number;
  gid: number;
  supplementaryGids: number[];
}

export function buildUserCandidates(group: string, passwd: PasswdEntry[], groups: GroupEntry[], callerUid: number): BuildUserCandidate[] {
  const g = groups.find((x) => x.name === group);
  if (!g) {
    throw new BuildUsersUnavailable(`the group '${group}' specified in 'build-users-group' does not exist`, { group });
  }
  const res: BuildUserCandidate[] = [];
  for (const name of g.members) {
    const u = passwd.find((p) => p.name === name);
    if (!u) throw new BuildUsersUnavailable(`the user '${name}' in the group '${group}' does not exist`, { group, user: name });
    if (u.uid === callerUid) {
      throw new BuildUsersUnavailable(`the drvbox user should not be a member of '${group}' (uid ${u.uid})`, { group, user: name });
    }
    if (u.uid === 0) throw new BuildUsersUnavailable(`the build user '${name}' in '${group}' is root`, { group, user: name });
    // As Nix: getgrouplist(name, its primary gid) less the build group's gid.
    const supplementaryGids = [...new Set([u.gid, ...groups.filter((x) => x.members.includes(name)).map((x) => x.gid)])].filter((x) => x !== g.gid);
    res.push({ name, uid: u.uid, gid: g.gid, supplementaryGids });
  }
  if (res.length === 0) throw new BuildUsersUnavailable(`the build users group '${group}' has no members`, { group });
  return res;
}

/** Refuses an auto-allocated id range that overlaps any account: those ids' processes would be killed. */
export function checkIdRange(startId: number, idCount: number, passwd: PasswdEntry[], groups: GroupEntry[]): void {
  if (idCount < IDS_PER_BUILD || idCount % IDS_PER_BUILD !== 0) {
    throw new BuildUsersUnavailable(`'id-count' (${idCount}) must be a positive multiple of ${IDS_PER_BUILD}`, { idCount });
  }
  if (startId < 1000 || startId + idCount > 0xffffffff) {
    throw new BuildUsersUnavailable(`'start-id' (${startId}) and 'id-count' (${idCount}) give ids outside 1000..4294967294`, { startId, idCount });
  }
  const end = startId + idCount;
  const u = passwd.find((p) => p.uid >= startId && p.uid < end);
  if (u) {
    throw new BuildUsersUnavailable(
      `the ids ${startId}..${end - 1} of 'auto-allocate-uids' include the user '${u.name}' (uid ${u.uid}); change 'start-id' or 'id-count'`,
      { startId, idCount, user: u.name },
    );
  }
  const g = groups.find((x) => x.gid >= startId && x.gid < end);
  if (g) {
    throw new BuildUsersUnavailable(
      `the ids ${startId}..${end - 1} of 'auto-allocate-uids' include the group '${g.name}' (gid ${g.gid}); change 'start-id' or 'id-count'`,
      { startId, idCount, group: g.name },
    );
  }
}

export interface BuildUserLock {
  user: BuildUser;
  /** e.g. "build user 'nixbld3' (uid 30003)" */
  description: string;
  release(): void;
}

export interface AcquireOptions {
  stateDir: string;
  /** build-users-group ('' = none). */
  group: string;
  autoAllocate: boolean;
  /** The derivation requires `uid-range` (auto-allocate-uids only). */
  uidRange: boolean;
  startId?: number;
  idCount?: number;
  signal?: AbortSignal;
  /** Told once when every build user is busy. */
  onWait?(message: string): void;
  /** Tests: the account files; default /etc/passwd and /etc/group. */
  readAccounts?(): { passwd: string; group: string };
  callerUid?: number;
}

/** Whether builds get build users: root, and build-users-group or auto-allocate-uids set. */
export function wantsBuildUsers(s: { buildUsersGroup?: string; autoAllocateUids?: boolean }, uid = process.getuid?.() ?? -1): boolean {
  return uid === 0 && ((s.buildUsersGroup ?? '') !== '' || s.autoAllocateUids === true);
}

function readAccountsDefault(): { passwd: string; group: string } {
  const read = (p: string) => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  };
  return { passwd: read('/etc/passwd'), group: read('/etc/group') };
}

/** Locks `file` without waiting; the fd (to close on release) or null when it is taken. */
function tryLockFile(file: string): number | null {
  const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    if (tryLock(fd, 'exclusive', file)) return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  closeSync(fd);
  return null;
}

/**
 * Locks a free build user, waiting (polling, abortable) while all are busy.
 * Nix's lock files, so Nix and drvbox share one pool.
 */
export async function acquireBuildUser(o: AcquireOptions): Promise<BuildUserLock> {
  const accounts = (o.readAccounts ?? readAccountsDefault)();
  const passwd = parsePasswd(accounts.passwd);
  const groups = parseGroup(accounts.group);
  const callerUid = o.callerUid ?? process.getuid?.() ?? 0;
  let attempt: () => BuildUserLock | null;
  let what: string;
  if (o.autoAllocate) {
    const start = o.startId ?? DEFAULT_START_ID;
    const count = o.idCount ?? DEFAULT_ID_COUNT;
    checkIdRange(start, count, passwd, groups);
    const dir = join(o.stateDir, 'userpool2');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const slots = count / IDS_PER_BUILD;
    what = `an id range (auto-allocate-uids, ${slots} slots)`;
    attempt = () => {
      for (let n = 0; n < slots; n++) {
        const file = join(dir, `slot-${n}`);
        const fd = tryLockFile(file);
        if (fd === null) continue;
        const uid = start + n * IDS_PER_BUILD;
        const uidCount = o.uidRange ? IDS_PER_BUILD : 1;
        return {
          user: { uid, gid: uid, uidCount, supplementaryGids: [] },
          description: `id range slot ${n} (uid ${uid}${uidCount > 1 ? `..${uid + uidCount - 1}` : ''})`,
          release: () => closeSync(fd),
        };
      }
      return null;
    };
  } else {
    if (o.uidRange) {
      throw new BuildUsersUnavailable("the 'uid-range' feature needs 'auto-allocate-uids = true' (a build user has one uid)", {});
    }
    const candidates = buildUserCandidates(o.group, passwd, groups, callerUid);
    const dir = join(o.stateDir, 'userpool');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    what = `a build user of '${o.group}'`;
    attempt = () => {
      for (const c of candidates) {
        const fd = tryLockFile(join(dir, String(c.uid)));
        if (fd === null) continue;
        return {
          user: { uid: c.uid, gid: c.gid, uidCount: 1, supplementaryGids: c.supplementaryGids },
          description: `build user '${c.name}' (uid ${c.uid})`,
          release: () => closeSync(fd),
        };
      }
      return null;
    };
  }
  let delay = 50;
  let told = false;
  for (;;) {
    const got = attempt();
    if (got) return got;
    if (!told) {
      told = true;
      o.onWait?.(`waiting for ${what}: all are building`);
    }
    o.signal?.throwIfAborted();
    await sleep(delay);
    delay = Math.min(delay * 2, 1000);
  }
}
