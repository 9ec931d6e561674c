// The launcher server's remove-tree op (discarded chroot dirs): everything a
// builder can leave is removed, and nothing outside the tree is touched
// through a symlink or a mount point.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireLauncher } from '../../../backends/linux/launcher-path.js';
import { encodeRequest, Mode } from '../../../backends/linux/protocol.js';
import { discardChroot } from '../../../backends/linux/run.js';
import { LauncherServer, launcherServer } from '../../../backends/linux/server.js';
import { requireLinux, requireRoot } from '../../helpers/host.js';
import { tempDir } from '../../helpers/tmp.js';

const DEPTH = 150; // deeper than the remover keeps open (64): exercises moving subtrees up

interface Outside {
  file: string;
  dir: string;
}

/** Files a builder cannot reach except through the symlinks planted in the tree. */
function makeOutside(base: string): Outside {
  const dir = join(base, 'outside');
  mkdirSync(dir);
  writeFileSync(join(dir, 'keep'), 'outside dir content\n');
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'keep2'), 'nested outside\n');
  const file = join(base, 'secret');
  writeFileSync(file, 'outside file content\n');
  for (const d of [dir, join(dir, 'sub')]) chmodSync(d, 0o755);
  chmodSync(file, 0o644);
  return { file, dir };
}

function assertOutsideUntouched(o: Outside): void {
  assert.equal(readFileSync(o.file, 'utf8'), 'outside file content\n');
  assert.deepEqual(readdirSync(o.dir).sort(), ['keep', 'sub']);
  assert.equal(readFileSync(join(o.dir, 'keep'), 'utf8'), 'outside dir content\n');
  assert.equal(readFileSync(join(o.dir, 'sub', 'keep2'), 'utf8'), 'nested outside\n');
  assert.equal(statSync(o.dir).mode & 0o7777, 0o755);
  assert.equal(statSync(join(o.dir, 'sub')).mode & 0o7777, 0o755);
  assert.equal(statSync(o.file).mode & 0o7777, 0o644);
  for (const p of [o.file, o.dir, join(o.dir, 'keep')]) assert.equal(statSync(p).uid, process.getuid!());
}

/** A chroot-like tree with what a hostile or careless builder leaves behind. */
function makeTree(root: string, o: Outside, owner?: { uid: number; gid: number }): void {
  const made: string[] = [];
  const dir = (p: string): void => {
    mkdirSync(p);
    made.push(p);
  };
  const file = (p: string, c = 'x'): void => {
    writeFileSync(p, c);
    made.push(p);
  };
  const link = (text: string, p: string): void => {
    symlinkSync(text, p);
    made.push(p);
  };
  dir(root);
  dir(join(root, 'store'));
  for (let i = 0; i < 20; i++) dir(join(root, 'store', `${String(i).padStart(32, 'a')}-in`)); // empty mount points
  file(join(root, 'store', `${'b'.repeat(32)}-file`), '');
  dir(join(root, 'a'));
  dir(join(root, 'a', 'b'));
  dir(join(root, 'a', 'b', 'c'));
  file(join(root, 'a', 'b', 'c', 'f'));
  dir(join(root, 'ro'));
  file(join(root, 'ro', 'f'));
  dir(join(root, 'ro', 'inner'));
  file(join(root, 'ro', 'inner', 'g'));
  link(o.dir, join(root, 'ro', 'to-outside-dir'));
  dir(join(root, 'zero'));
  file(join(root, 'zero', 'f'));
  dir(join(root, 'zero', 'zero2'));
  file(join(root, 'zero', 'zero2', 'g'));
  link(o.file, join(root, 'link-to-file'));
  link(o.dir, join(root, 'link-to-dir'));
  link('../../outside', join(root, 'a', 'relative-link'));
  let deep = join(root, 'deep');
  dir(deep);
  for (let i = 0; i < DEPTH; i++) {
    deep = join(deep, 'd');
    dir(deep);
  }
  file(join(deep, 'bottom'));
  link(o.file, join(deep, 'link'));
  // lchown: chown would follow the planted links out of the tree.
  if (owner) for (const p of made) lchownSync(p, owner.uid, owner.gid);
  // Modes set last, innermost first: the builder's chmods.
  chmodSync(join(root, 'zero', 'zero2'), 0);
  chmodSync(join(root, 'zero'), 0);
  chmodSync(join(root, 'ro', 'inner'), 0o555);
  chmodSync(join(root, 'ro'), 0o555);
  chmodSync(join(root, 'a', 'b'), 0o500);
  chmodSync(join(root, 'deep', 'd', 'd'), 0);
}

describe('remove-tree op (linux)', () => {
  test('the server removes a tree with read-only, mode-0, deep dirs and symlinks out, and nothing outside', async (t) => {
    requireLinux('the launcher server');
    const base = tempDir(t);
    chmodSync(base, 0o755);
    const o = makeOutside(base);
    const root = join(base, 'tree');
    makeTree(root, o);
    const server = new LauncherServer(requireLauncher());
    assert.equal(await server.removeTree(root), 0);
    assert.equal(existsSync(root), false, `${root} is still there`);
    assert.deepEqual(readdirSync(base).sort(), ['outside', 'secret']);
    assertOutsideUntouched(o);
  });

  test('removals run side by side and each reports its own status', async (t) => {
    requireLinux('the launcher server');
    const base = tempDir(t);
    const o = makeOutside(base);
    const roots = [0, 1, 2, 3].map((i) => join(base, `tree${i}`));
    for (const r of roots) makeTree(r, o);
    const server = new LauncherServer(requireLauncher());
    const missing = join(base, 'never-there');
    const statuses = await Promise.all([...roots, missing].map((r) => server.removeTree(r)));
    assert.deepEqual(statuses, [0, 0, 0, 0, 0]);
    assert.deepEqual(readdirSync(base).sort(), ['outside', 'secret']);
    assertOutsideUntouched(o);
  });

  test('a target that is itself a symlink is unlinked, its target kept', async (t) => {
    requireLinux('the launcher server');
    const base = tempDir(t);
    const o = makeOutside(base);
    const link = join(base, 'chroot.old-1');
    symlinkSync(o.dir, link);
    const server = new LauncherServer(requireLauncher());
    assert.equal(await server.removeTree(link), 0);
    assert.equal(existsSync(link), false);
    assert.deepEqual(readdirSync(base).sort(), ['outside', 'secret']);
    assertOutsideUntouched(o);
  });

  test('a relative or dot-dot target is refused and nothing is removed', async (t) => {
    requireLinux('the launcher server');
    const base = tempDir(t);
    const o = makeOutside(base);
    const server = new LauncherServer(requireLauncher());
    assert.equal(await server.removeTree('outside'), 127);
    // Built by hand: join() would resolve the dot-dots away.
    assert.equal(await server.removeTree(`${base}/x/../outside`), 127);
    assert.equal(await server.removeTree(`${base}/outside/..`), 127);
    assert.equal(await server.removeTree(`${base}/outside/.`), 127);
    assert.equal(await server.removeTree('/'), 127);
    assertOutsideUntouched(o);
  });

  test('a mount point inside the tree is never entered: its content survives and the status says so', async (t) => {
    requireRoot('mounting a tmpfs inside the tree');
    const base = tempDir(t);
    const o = makeOutside(base);
    const root = join(base, 'tree');
    makeTree(root, o);
    const mnt = join(root, 'store', `${'c'.repeat(32)}-mounted`);
    mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', 'none', mnt], { encoding: 'utf8' });
    assert.equal(m.status, 0, `mount failed: ${m.stderr}`);
    try {
      writeFileSync(join(mnt, 'precious'), 'on another file system\n');
      mkdirSync(join(mnt, 'dir'));
      const server = new LauncherServer(requireLauncher());
      assert.equal(await server.removeTree(root), 1);
      assert.equal(readFileSync(join(mnt, 'precious'), 'utf8'), 'on another file system\n');
      assert.deepEqual(readdirSync(mnt).sort(), ['dir', 'precious']);
    } finally {
      // Before the temp dir's own removal (an after hook) meets the mount.
      spawnSync('umount', ['-l', mnt]);
    }
    // Everything else went; only the path to the mount point is left.
    assert.deepEqual(readdirSync(root), ['store']);
    assert.deepEqual(readdirSync(join(root, 'store')), [`${'c'.repeat(32)}-mounted`]);
    assertOutsideUntouched(o);
  });

  test('as an unprivileged owner the remover makes read-only and mode-0 dirs searchable itself', async (t) => {
    requireRoot('running the remover as another uid');
    const nobody = { uid: 65534, gid: 65534 };
    const base = tempDir(t);
    chmodSync(base, 0o755);
    const o = makeOutside(base);
    const work = join(base, 'work');
    mkdirSync(work);
    chownSync(work, nobody.uid, nobody.gid);
    const root = join(work, 'tree');
    makeTree(root, o, nobody);
    const child = spawn(requireLauncher(), [], {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
      uid: nobody.uid,
      gid: nobody.gid,
      env: {},
    });
    (child.stdio[3] as Writable).end(encodeRequest({ mode: Mode.REMOVE_TREE, target: root }));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    assert.equal(code, 0);
    assert.equal(existsSync(root), false);
    assert.deepEqual(readdirSync(work), []);
    assertOutsideUntouched(o);
  });

  test('discardChroot with the server running leaves no aside behind and the name free at once', async (t) => {
    requireLinux('the launcher server');
    const base = tempDir(t);
    const o = makeOutside(base);
    const chroot = join(base, 'x.chroot');
    makeTree(chroot, o);
    launcherServer(requireLauncher());
    discardChroot(chroot);
    assert.equal(existsSync(chroot), false);
    const asides = (): string[] => readdirSync(base).filter((n) => n.includes('.old-'));
    assert.equal(asides().length, 1);
    for (let i = 0; i < 200 && asides().length > 0; i++) await sleep(25);
    assert.deepEqual(readdirSync(base).sort(), ['outside', 'secret']);
    assertOutsideUntouched(o);
    // The aside was renamed from the same dir: the old name can be made again.
    mkdirSync(chroot);
    renameSync(chroot, join(base, 'y'));
  });
});
