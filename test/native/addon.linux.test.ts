// The native addon (src/native/addon.c): flock and the xattr calls, and the
// koffi fallback the same callers use where it was not built. Linux only:
// that is where `npm run build` compiles it; the tests fail (not skip) if it
// was not built.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { join } from 'node:path';
import { NATIVE_ADDON_PATH, nativeAddon, type NativeAddon } from '../../src/native/addon.js';
import { flockImplementation, tryLock, unlock } from '../../src/store/flock.js';
import { removeXattrs } from '../../src/store/xattr.js';
import { REPO_ROOT } from '../helpers/host.js';
import { tempDir } from '../helpers/tmp.js';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const E = constants.errno;

function addon(): NativeAddon {
  const a = nativeAddon();
  if (!a) throw new Error(`cannot run on this host: the native addon '${NATIVE_ADDON_PATH}' was not built or does not load (a C compiler and 'npm run build')`);
  return a;
}

/** Sets a user xattr through koffi (the addon has no setter: drvbox never sets one). */
function setXattr(path: string, name: string, value: string): void {
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const lsetxattr = koffi.load('libc.so.6').func('int lsetxattr(const char *path, const char *name, const char *value, size_t size, int flags)') as (
    p: string,
    n: string,
    v: string,
    s: number,
    f: number,
  ) => number;
  assert.equal(lsetxattr(path, name, value, Buffer.byteLength(value), 0), 0, `lsetxattr ${name} on ${path}`);
}

describe('native addon: flock', () => {
  test('two opens in one process exclude each other; unlocking lets the other in', (t) => {
    const a = addon();
    const f = join(tempDir(t), 'x.lock');
    writeFileSync(f, '');
    const fd1 = openSync(f, 'r');
    const fd2 = openSync(f, 'r');
    try {
      assert.equal(a.flock(fd1, LOCK_EX | LOCK_NB), 0);
      assert.equal(a.flock(fd2, LOCK_EX | LOCK_NB), -E.EWOULDBLOCK);
      assert.equal(a.flock(fd2, LOCK_SH | LOCK_NB), -E.EWOULDBLOCK);
      assert.equal(a.flock(fd1, LOCK_UN), 0);
      assert.equal(a.flock(fd2, LOCK_SH | LOCK_NB), 0);
      assert.equal(a.flock(fd1, LOCK_SH | LOCK_NB), 0, 'shared locks share');
    } finally {
      closeSync(fd1);
      closeSync(fd2);
    }
  });

  test('a bad descriptor or bad arguments are a negative errno, not a throw', () => {
    const a = addon();
    assert.equal(a.flock(999_999, LOCK_EX | LOCK_NB), -E.EBADF);
    assert.equal((a.flock as (...x: unknown[]) => number)('3', LOCK_EX), -E.EINVAL);
    assert.equal((a.flock as (...x: unknown[]) => number)(), -E.EINVAL);
  });

  test('src/store/flock.ts uses it here', () => {
    addon();
    assert.equal(flockImplementation(), 'native');
  });
});

describe('native addon: xattrs', () => {
  test('lists and removes user attributes; a missing path is -ENOENT', (t) => {
    const a = addon();
    const f = join(tempDir(t), 'f');
    writeFileSync(f, 'x');
    assert.deepEqual(a.listXattrs(f), []);
    setXattr(f, 'user.drvbox.one', '1');
    setXattr(f, 'user.drvbox.two', '22');
    assert.deepEqual((a.listXattrs(f) as string[]).sort(), ['user.drvbox.one', 'user.drvbox.two']);
    assert.equal(a.removeXattr(f, 'user.drvbox.one'), 0);
    assert.deepEqual(a.listXattrs(f), ['user.drvbox.two']);
    assert.equal(a.removeXattr(f, 'user.drvbox.one'), -E.ENODATA);
    assert.equal(a.listXattrs(join(f, 'nope')), -E.ENOTDIR);
    assert.equal(a.listXattrs(`${f}-missing`), -E.ENOENT);
  });

  test('a path with an embedded NUL names no file: -EINVAL', (t) => {
    const a = addon();
    const f = join(tempDir(t), 'f');
    writeFileSync(f, 'x');
    assert.equal(a.listXattrs(`${f}\0/etc/passwd`), -E.EINVAL);
    assert.equal(a.removeXattr(`${f}\0x`, 'user.a'), -E.EINVAL);
    assert.equal(a.removeXattr(f, 'user.a\0b'), -E.EINVAL);
  });

  test('removeXattrs (canonicalisation) removes them through it and names them', (t) => {
    addon();
    const f = join(tempDir(t), 'f');
    writeFileSync(f, 'x');
    setXattr(f, 'user.drvbox.a', 'v');
    assert.deepEqual(removeXattrs(f), ['user.drvbox.a']);
    assert.deepEqual(removeXattrs(f), []);
  });
});

describe('without the addon (DRVBOX_NATIVE empty): koffi, same behaviour', () => {
  test('flock and removeXattrs work through koffi', (t) => {
    const dir = tempDir(t);
    const f = join(dir, 'f');
    writeFileSync(f, 'x');
    setXattr(f, 'user.drvbox.k', 'v');
    const script = `
      import { openSync } from 'node:fs';
      import { flockImplementation, tryLock } from ${JSON.stringify(join(REPO_ROOT, 'dist/src/store/flock.js'))};
      import { removeXattrs } from ${JSON.stringify(join(REPO_ROOT, 'dist/src/store/xattr.js'))};
      const f = ${JSON.stringify(f)};
      const a = openSync(f, 'r'), b = openSync(f, 'r');
      console.log(JSON.stringify({ impl: flockImplementation(), first: tryLock(a, 'exclusive', f), second: tryLock(b, 'exclusive', f), removed: removeXattrs(f) }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, DRVBOX_NATIVE: '' }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { impl: 'koffi', first: true, second: false, removed: ['user.drvbox.k'] });
  });

  test('the same through the addon, for comparison', (t) => {
    addon();
    const f = join(tempDir(t), 'f');
    writeFileSync(f, 'x');
    const a = openSync(f, 'r');
    const b = openSync(f, 'r');
    try {
      assert.equal(tryLock(a, 'exclusive', f), true);
      assert.equal(tryLock(b, 'exclusive', f), false);
      unlock(a, f);
      assert.equal(tryLock(b, 'exclusive', f), true);
    } finally {
      closeSync(a);
      closeSync(b);
    }
  });
});
