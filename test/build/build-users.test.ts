// Build users: the accounts behind build-users-group, the id ranges of
// auto-allocate-uids, and locking one per build with Nix's userpool files.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  acquireBuildUser,
  buildUserCandidates,
  checkIdRange,
  DEFAULT_ID_COUNT,
  DEFAULT_START_ID,
  parseGroup,
  parsePasswd,
  wantsBuildUsers,
} from '../../src/build/build-users.js';
import { tempDir } from '../helpers/tmp.js';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'alice:x:1000:1000::/home/alice:/bin/bash',
  '# a comment',
  'nixbld1:x:30001:30000:Nix build user 1:/var/empty:/sbin/nologin',
  'nixbld2:x:30002:30000:Nix build user 2:/var/empty:/sbin/nologin',
  'nixbld3:x:30003:30000:Nix build user 3:/var/empty:/sbin/nologin',
  '',
].join('\n');
const GROUP = ['root:x:0:', 'nixbld:x:30000:nixbld1,nixbld2,nixbld3', 'kvm:x:108:nixbld2', 'empty:x:31000:', 'ghosts:x:31001:nobody-here', ''].join('\n');
const accounts = () => ({ passwd: PASSWD, group: GROUP });

describe('build users: accounts', () => {
  test('passwd and group files', () => {
    assert.deepEqual(parsePasswd(PASSWD).map((p) => [p.name, p.uid, p.gid]), [
      ['root', 0, 0],
      ['alice', 1000, 1000],
      ['nixbld1', 30001, 30000],
      ['nixbld2', 30002, 30000],
      ['nixbld3', 30003, 30000],
    ]);
    assert.deepEqual(parseGroup(GROUP)[1], { name: 'nixbld', gid: 30000, members: ['nixbld1', 'nixbld2', 'nixbld3'] });
  });

  test('the members of build-users-group, with the group as gid and their other groups', () => {
    const c = buildUserCandidates('nixbld', parsePasswd(PASSWD), parseGroup(GROUP), 0);
    assert.deepEqual(c, [
      { name: 'nixbld1', uid: 30001, gid: 30000, supplementaryGids: [] },
      { name: 'nixbld2', uid: 30002, gid: 30000, supplementaryGids: [108] },
      { name: 'nixbld3', uid: 30003, gid: 30000, supplementaryGids: [] },
    ]);
  });

  test("a user's own primary group, when not build-users-group, is one of its supplementary groups, first (Nix's getgrouplist, less the build group)", () => {
    const passwd = parsePasswd('nixbld7:x:30007:100::/var/empty:/sbin/nologin\nnixbld8:x:30008:30000::/var/empty:/sbin/nologin\n');
    const groups = parseGroup('users:x:100:\nnixbld:x:30000:nixbld7,nixbld8\nkvm:x:108:nixbld7\naudio:x:29:nixbld7,nixbld8\n');
    assert.deepEqual(buildUserCandidates('nixbld', passwd, groups, 0), [
      { name: 'nixbld7', uid: 30007, gid: 30000, supplementaryGids: [100, 108, 29] },
      { name: 'nixbld8', uid: 30008, gid: 30000, supplementaryGids: [29] },
    ]);
  });

  test('errors: no such group, no members, an unknown member, the caller among them', () => {
    const p = parsePasswd(PASSWD);
    const g = parseGroup(GROUP);
    assert.throws(() => buildUserCandidates('nope', p, g, 0), { code: 'E_BUILD_USERS_UNAVAILABLE', message: "the group 'nope' specified in 'build-users-group' does not exist" });
    assert.throws(() => buildUserCandidates('empty', p, g, 0), { message: "the build users group 'empty' has no members" });
    assert.throws(() => buildUserCandidates('ghosts', p, g, 0), { message: "the user 'nobody-here' in the group 'ghosts' does not exist" });
    assert.throws(() => buildUserCandidates('nixbld', p, g, 30002), { message: "the drvbox user should not be a member of 'nixbld' (uid 30002)" });
  });

  test('auto-allocate-uids: ranges overlapping an account are refused (their processes would be killed)', () => {
    const p = parsePasswd(PASSWD);
    const g = parseGroup(GROUP);
    checkIdRange(DEFAULT_START_ID, DEFAULT_ID_COUNT, p, g);
    assert.throws(() => checkIdRange(30000, 65536, p, g), {
      message: "the ids 30000..95535 of 'auto-allocate-uids' include the user 'nixbld1' (uid 30001); change 'start-id' or 'id-count'",
    });
    assert.throws(() => checkIdRange(31000, 65536, [], g), { message: "the ids 31000..96535 of 'auto-allocate-uids' include the group 'empty' (gid 31000); change 'start-id' or 'id-count'" });
    assert.throws(() => checkIdRange(DEFAULT_START_ID, 1000, p, g), { message: "'id-count' (1000) must be a positive multiple of 65536" });
    assert.throws(() => checkIdRange(4294000000, 65536 * 16, p, g), /outside 1000\.\.4294967294/);
  });

  test('only root gets build users, and only when asked', () => {
    assert.equal(wantsBuildUsers({ buildUsersGroup: 'nixbld' }, 0), true);
    assert.equal(wantsBuildUsers({ autoAllocateUids: true }, 0), true);
    assert.equal(wantsBuildUsers({ buildUsersGroup: '' }, 0), false);
    assert.equal(wantsBuildUsers({ buildUsersGroup: 'nixbld' }, 1000), false);
    assert.equal(wantsBuildUsers({}, 0), false);
  });
});

describe('build users: locking', () => {
  test('each build locks a different user (Nix\'s userpool/<uid> files); a released one is reused', async (t) => {
    const stateDir = tempDir(t);
    const o = { stateDir, group: 'nixbld', autoAllocate: false, uidRange: false, readAccounts: accounts, callerUid: 0 };
    const a = await acquireBuildUser(o);
    const b = await acquireBuildUser(o);
    assert.deepEqual([a.user, b.user], [
      { uid: 30001, gid: 30000, uidCount: 1, supplementaryGids: [] },
      { uid: 30002, gid: 30000, uidCount: 1, supplementaryGids: [108] },
    ]);
    assert.equal(a.description, "build user 'nixbld1' (uid 30001)");
    assert.ok(existsSync(join(stateDir, 'userpool', '30001')));
    a.release();
    const c = await acquireBuildUser(o);
    assert.equal(c.user.uid, 30001);
    b.release();
    c.release();
  });

  test('all busy: waits (saying so once) until one is released; abortable', async (t) => {
    const stateDir = tempDir(t);
    const o = { stateDir, group: 'nixbld', autoAllocate: false, uidRange: false, readAccounts: accounts, callerUid: 0 };
    const held = [await acquireBuildUser(o), await acquireBuildUser(o), await acquireBuildUser(o)];
    const told: string[] = [];
    const waiting = acquireBuildUser({ ...o, onWait: (m) => told.push(m) });
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual(told, ["waiting for a build user of 'nixbld': all are building"]);
    held[1]!.release();
    const got = await waiting;
    assert.equal(got.user.uid, 30002);
    const ac = new AbortController();
    const aborted = acquireBuildUser({ ...o, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop')), 60);
    await assert.rejects(aborted, /stop/);
    for (const h of [held[0]!, held[2]!, got]) h.release();
  });

  test('auto-allocate-uids: 65536-id slots from start-id (userpool2/slot-N); uid-range gets the whole slot', async (t) => {
    const stateDir = tempDir(t);
    const o = { stateDir, group: '', autoAllocate: true, uidRange: false, readAccounts: accounts, callerUid: 0 };
    const a = await acquireBuildUser(o);
    const b = await acquireBuildUser({ ...o, uidRange: true });
    assert.deepEqual(a.user, { uid: 872415232, gid: 872415232, uidCount: 1, supplementaryGids: [] });
    assert.deepEqual(b.user, { uid: 872415232 + 65536, gid: 872415232 + 65536, uidCount: 65536, supplementaryGids: [] });
    assert.equal(b.description, `id range slot 1 (uid ${872415232 + 65536}..${872415232 + 2 * 65536 - 1})`);
    assert.ok(existsSync(join(stateDir, 'userpool2', 'slot-1')));
    // One slot only (its own pool: slots are numbered, whatever the start).
    const small = { ...o, stateDir: tempDir(t), startId: 100000, idCount: 65536 };
    const c = await acquireBuildUser(small);
    assert.equal(c.user.uid, 100000);
    const told: string[] = [];
    const ac = new AbortController();
    const d = acquireBuildUser({ ...small, signal: ac.signal, onWait: (m) => told.push(m) });
    setTimeout(() => ac.abort(new Error('gave up')), 80);
    await assert.rejects(d, /gave up/);
    assert.deepEqual(told, ['waiting for an id range (auto-allocate-uids, 1 slots): all are building']);
    await assert.rejects(acquireBuildUser({ ...o, autoAllocate: false, group: 'nixbld', uidRange: true }), {
      message: "the 'uid-range' feature needs 'auto-allocate-uids = true' (a build user has one uid)",
    });
    for (const h of [a, b, c]) h.release();
  });
});
