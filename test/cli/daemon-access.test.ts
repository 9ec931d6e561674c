// Who may do what through `drvbox daemon --socket`: the peer's uid (from the
// socket) against trusted-users / allowed-users / build-users-group. The
// untrusted peer is the unprivileged user `drvbox-test`, via runuser.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { TestContext } from 'node:test';
import { tempDir } from '../helpers/tmp.js';
import { CLI, REPO_ROOT, drvbox, requireRoot, requireTool } from '../helpers/host.js';
import { connectDaemon, narOfFile } from '../../src/daemon/client.js';
import { hashBytes } from '../../src/format/hash.js';
import { startDaemon } from './daemon-util.js';

const USER = 'drvbox-test';
const FOO = '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo';
const CLIENT_URL = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'daemon', 'client.js')).href;

function requireTestUser(): void {
  requireRoot(`runs clients as the unprivileged user '${USER}'`);
  requireTool('runuser', 'util-linux');
  if (spawnSync('id', ['-u', USER]).status !== 0) {
    const r = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', USER], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cannot create the test user '${USER}': ${r.stderr}`);
  }
}

/** A temp dir the test user can read and traverse. */
function sharedDir(t: TestContext): string {
  const dir = tempDir(t);
  chmodSync(dir, 0o755);
  return dir;
}

function asUser(dir: string, argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('runuser', ['-u', USER, '--', 'env', `HOME=${dir}`, 'DRVBOX_CONFIG=', 'XDG_CONFIG_HOME=', ...argv], { encoding: 'utf8', cwd: dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function drvboxAsUser(dir: string, args: string[]) {
  return asUser(dir, [process.execPath, CLI, ...args]);
}

/** Runs worker-protocol calls as the test user; prints one JSON line per call: the result or the error. */
function protocolAsUser(dir: string, socket: string, calls: string[]): Array<{ ok: unknown } | { error: string }> {
  const file = join(dir, `calls-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(
    file,
    `import { connectDaemon, narOfFile } from ${JSON.stringify(CLIENT_URL)};
const c = await connectDaemon({ socketPath: ${JSON.stringify(socket)} });
const calls = [${calls.map((s) => `async () => ${s}`).join(',\n')}];
for (const f of calls) {
  try { const v = await f(); console.log(JSON.stringify({ ok: v === undefined ? null : v }, (k, x) => typeof x === 'bigint' ? String(x) : x)); }
  catch (e) { console.log(JSON.stringify({ error: e.message })); }
}
await c.close();
void narOfFile;
`,
    { mode: 0o644 },
  );
  const r = asUser(dir, [process.execPath, file]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ok: unknown } | { error: string });
}

const NAR = narOfFile(Buffer.from('imported\n'));
const IA_PATH = '/nix/store/11111111111111111111111111111111-imported';
const IA_INFO = `{ path: ${JSON.stringify(IA_PATH)}, deriver: null, narHash: { algo: 'sha256', digest: Buffer.from(${JSON.stringify(Buffer.from(hashBytes('sha256', NAR).digest).toString('hex'))}, 'hex') }, references: [], registrationTime: 0, narSize: ${NAR.length}, ultimate: true, sigs: [], ca: null }`;

describe('drvbox daemon: trusted and untrusted peers', () => {
  test('an untrusted user may add content-addressed paths and query, but not the trusted-only operations', async (t) => {
    requireTestUser();
    const dir = sharedDir(t);
    const root = join(dir, 'root');
    const socket = join(dir, 'sock');
    const d = await startDaemon(t, { root, socket, args: ['-v'] });
    writeFileSync(join(dir, 'foo'), 'bar', { mode: 0o644 });
    const added = drvboxAsUser(dir, ['--store', `unix://${socket}`, 'store', 'add', '--mode', 'text', join(dir, 'foo')]);
    assert.equal(added.status, 0, added.stderr);
    assert.equal(added.stdout, FOO + '\n');
    const info = drvboxAsUser(dir, ['--store', `unix://${socket}`, 'path-info', '--json', FOO]);
    assert.equal(info.status, 0, info.stderr);
    assert.equal(JSON.parse(info.stdout)[0].path, FOO);
    await d.waitForLog(new RegExp(`accepted connection from pid \\d+, user ${USER}\\n`));

    const repair = drvboxAsUser(dir, ['--store', `unix://${socket}`, 'store', 'add', '--mode', 'text', '--repair', join(dir, 'foo')]);
    assert.equal(repair.status, 1);
    assert.equal(repair.stderr, 'error: you are not privileged to repair paths\n');

    const res = protocolAsUser(dir, socket, [
      `c.addToStoreNar(${IA_INFO}, narOfFile(Buffer.from('imported\\n')), { checkSigs: false })`,
      `c.addSignatures(${JSON.stringify(FOO)}, ['k:c2lnbmF0dXJl'])`,
      `c.registerDrvOutput({ id: 'sha256:${'ab'.repeat(32)}!out', outPath: ${JSON.stringify(FOO)}, signatures: [], dependentRealisations: {} })`,
      `c.buildPaths([{ kind: 'opaque', path: ${JSON.stringify(FOO)} }], 1)`,
      `c.collectGarbage({ action: 1, pathsToDelete: [], ignoreLiveness: true, maxFreed: 2n ** 64n - 1n })`,
      `c.isValidPath(${JSON.stringify(IA_PATH)})`,
      `c.buildPaths([{ kind: 'opaque', path: ${JSON.stringify(FOO)} }], 0)`,
    ]);
    assert.deepEqual(res, [
      { error: `cannot add path '${IA_PATH}' because it lacks a signature by a trusted key (drvbox checks no signatures: only content-addressed paths, or a trusted user with signature checking off, can add it)` },
      { error: 'you are not privileged to add signatures' },
      { error: `cannot register realisation 'sha256:${'ab'.repeat(32)}!out': you are not a trusted user of this daemon` },
      { error: "repairing is not allowed because you are not in 'trusted-users'" },
      { error: 'you are not allowed to ignore liveness' },
      { ok: false },
      { ok: null },
    ]);

    // root, the daemon's own user, is trusted: the same import goes through
    const c = await connectDaemon({ socketPath: socket });
    await c.addToStoreNar({ path: IA_PATH, deriver: null, narHash: hashBytes('sha256', NAR), references: [], registrationTime: 0, narSize: NAR.length, ultimate: true, sigs: [], ca: null }, NAR, { checkSigs: false });
    assert.equal(await c.isValidPath(IA_PATH), true);
    await c.close();
    await d.waitForLog(/accepted connection from pid \d+, user root \(trusted\)/);
    assert.equal(await d.stop(), 0, d.stderr());
  });

  test('allowed-users refuses other users with a clear message; @group entries match', async (t) => {
    requireTestUser();
    const dir = sharedDir(t);
    const root = join(dir, 'root');
    const socket = join(dir, 'sock');
    const d = await startDaemon(t, { root, socket, args: ['--option', 'allowed-users', 'root'] });
    const r = drvboxAsUser(dir, ['--store', `unix://${socket}`, 'path-info', FOO]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `error: user '${USER}' is not allowed to connect to the drvbox daemon (not in allowed-users: root)\n`);
    await d.waitForLog(new RegExp(`refused connection from pid \\d+: user '${USER}' is not allowed to connect`));
    // root still is
    const ok = drvbox(['--store', `unix://${socket}`, 'path-info', '--json', FOO]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(await d.stop(), 0);

    // the user's own group, as a trusted group: it may now repair
    const d2 = await startDaemon(t, { root, socket, args: ['--option', 'allowed-users', 'root', '--option', 'trusted-users', `root @${USER}`] });
    writeFileSync(join(dir, 'foo'), 'bar', { mode: 0o644 });
    const repair = drvboxAsUser(dir, ['--store', `unix://${socket}`, 'store', 'add', '--mode', 'text', '--repair', join(dir, 'foo')]);
    assert.equal(repair.status, 0, repair.stderr);
    assert.equal(repair.stdout, FOO + '\n');
    assert.equal(await d2.stop(), 0);
  });

  test('members of build-users-group may not connect at all', async (t) => {
    requireTestUser();
    const dir = sharedDir(t);
    const socket = join(dir, 'sock');
    const d = await startDaemon(t, { root: join(dir, 'root'), socket, args: ['--option', 'build-users-group', USER] });
    const r = drvboxAsUser(dir, ['--store', `unix://${socket}`, 'path-info', FOO]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `error: user '${USER}' is not allowed to connect to the drvbox daemon (a member of build-users-group '${USER}')\n`);
    assert.equal(await d.stop(), 0);
  });
});

describe('access policy (no other user needed)', () => {
  const peer = (user: string, groups: string[], uid = 1000) => ({ pid: 1, uid, gid: 1000, user, groups });
  const policy = { trustedUsers: ['root', '@wheel'], allowedUsers: ['alice', '@staff'], buildUsersGroup: 'nixbld', daemonUid: 0 };

  test('trusted-users and allowed-users match names, @groups and *, as Nix does', async () => {
    const { decideAccess, matchUser } = await import('../../src/daemon/peer-credentials.js');
    assert.equal(matchUser('bob', ['bob'], ['*']), true);
    assert.equal(matchUser('bob', ['bob', 'staff'], ['@staff']), true);
    assert.equal(matchUser('bob', ['bob'], ['@bob-not']), false);
    assert.equal(matchUser('bob', ['bob'], ['staff']), false, 'a group name without @ is a user name');
    assert.deepEqual(decideAccess(peer('carol', ['carol', 'wheel']), policy), { allowed: true, trusted: true });
    assert.deepEqual(decideAccess(peer('alice', ['alice']), policy), { allowed: true, trusted: false });
    assert.deepEqual(decideAccess(peer('bob', ['bob', 'staff']), policy), { allowed: true, trusted: false });
    assert.deepEqual(decideAccess(peer('eve', ['eve']), policy), { allowed: false, reason: "user 'eve' is not allowed to connect to the drvbox daemon (not in allowed-users: alice @staff)" });
    assert.deepEqual(decideAccess(peer('nixbld1', ['nixbld', 'staff']), policy), {
      allowed: false,
      reason: "user 'nixbld1' is not allowed to connect to the drvbox daemon (a member of build-users-group 'nixbld')",
    });
    // the daemon's own user owns the store: trusted whatever the lists say
    assert.deepEqual(decideAccess(peer('svc', ['svc'], 0), { ...policy, trustedUsers: [] }), { allowed: true, trusted: true });
    assert.deepEqual(decideAccess(peer('eve', ['eve']), { ...policy, allowedUsers: [] }).allowed, false);
  });

  test('identifyPeer reads the connecting process from the socket (uid, gid, pid, names)', async (t) => {
    const { identifyPeer } = await import('../../src/daemon/peer-credentials.js');
    const { createServer, createConnection } = await import('node:net');
    const dir = tempDir(t);
    const path = join(dir, 's');
    const seen = new Promise<ReturnType<typeof identifyPeer>>((resolve, reject) => {
      const srv = createServer((sock) => {
        try {
          resolve(identifyPeer(sock));
        } catch (e) {
          reject(e);
        }
        sock.destroy();
        srv.close();
      });
      srv.listen(path, () => createConnection(path).on('error', () => undefined));
    });
    const id = await seen;
    const { userInfo } = await import('node:os');
    assert.equal(id.uid, process.getuid!());
    assert.equal(id.gid, process.getgid!());
    assert.equal(id.pid, process.pid);
    assert.equal(id.user, userInfo().username);
    const primary = spawnSync('id', ['-gn'], { encoding: 'utf8' }).stdout.trim();
    assert.equal(id.groups[0], primary);
    const all = spawnSync('id', ['-Gn'], { encoding: 'utf8' }).stdout.trim().split(/\s+/).sort();
    assert.deepEqual([...new Set(id.groups)].sort(), all);
  });
});
