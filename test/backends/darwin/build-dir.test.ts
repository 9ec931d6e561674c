// Build directory naming for Darwin's 104-byte sun_path (Nix issue 13462).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chooseDarwinBuildDir, assertSocketPathFits, DARWIN_SOCKET_PATH_MAX } from '../../../backends/darwin/build-dir.js';
import { DarwinSocketPathTooLong } from '../../../backends/darwin/errors.js';

const MAC_TMPDIR = '/private/var/folders/6z/3kq2vxl94pd3_5g0bb8gm4fr0000gn/T';

describe('chooseDarwinBuildDir', () => {
  test('short parent: the name is kept (up to 24 bytes)', () => {
    const c = chooseDarwinBuildDir({ parent: '/private/tmp', drvName: 'hello-2.12', unique: 1 });
    assert.deepEqual(c, {
      path: '/private/tmp/nix-build-hello-2.12-1',
      name: 'nix-build-hello-2.12-1',
      socketPath: '/private/tmp/nix-build-hello-2.12-1/.nix-socket',
      socketFits: true,
      socketHeadroom: DARWIN_SOCKET_PATH_MAX - '/private/tmp/nix-build-hello-2.12-1/'.length,
    });
    const long = chooseDarwinBuildDir({ parent: '/private/tmp/', drvName: 'python3.12-scikit-learn-1.5.2', unique: 7 });
    assert.equal(long.path, '/private/tmp/nix-build-python3.12-scikit-learn-7');
  });

  test("the user's TMPDIR: the socket still fits, name shortened as needed", () => {
    const c = chooseDarwinBuildDir({ parent: MAC_TMPDIR, drvName: 'x'.repeat(200), unique: 123456, requireSocket: true });
    assert.ok(c.socketFits);
    // the name takes exactly the room left: 103 bytes in all
    assert.equal(Buffer.byteLength(c.socketPath), 103);
    assert.match(c.name, /^nix-build-x+-123456$/);
  });

  test('a parent leaving room for no name drops it; one leaving no room for the socket fails when required', () => {
    const parent = '/' + 'p'.repeat(74);
    const c = chooseDarwinBuildDir({ parent, drvName: 'hello', unique: 1 });
    assert.equal(c.name, 'nix-build-hel-1');
    assert.equal(Buffer.byteLength(c.socketPath), 103);
    const tooDeep = '/' + 'p'.repeat(90);
    const soft = chooseDarwinBuildDir({ parent: tooDeep, drvName: 'hello', unique: 1 });
    assert.equal(soft.name, 'nix-build-1');
    assert.equal(soft.socketFits, false);
    assert.throws(
      () => chooseDarwinBuildDir({ parent: tooDeep, drvName: 'hello', unique: 1, requireSocket: true }),
      (e: unknown) => e instanceof DarwinSocketPathTooLong && e.code === 'E_DARWIN_SOCKET_PATH' && e.fields.bytes === 115,
    );
  });

  test('names are cut on character boundaries and cleaned of separators', () => {
    const c = chooseDarwinBuildDir({ parent: '/private/tmp', drvName: 'a/b ✓✓✓✓✓✓✓✓✓✓', unique: 2, maxNameBytes: 6 });
    assert.equal(c.name, 'nix-build-a_b___-2');
  });

  test('assertSocketPathFits counts bytes, not characters', () => {
    assertSocketPathFits('/' + 'a'.repeat(102), '/nix/store/x.drv');
    assert.throws(() => assertSocketPathFits('/' + 'é'.repeat(52), '/nix/store/x.drv'), /has 105 bytes, more than the 103 macOS allows/);
  });
});
