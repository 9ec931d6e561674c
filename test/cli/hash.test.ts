import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { dx } from './store-cli-util.js';

// Vectors from Nix 2.8 (nix-store --add / nix-hash of the same tree).
function tree(dir: string): string {
  const t = join(dir, 'tree');
  mkdirSync(join(t, 'sub'), { recursive: true });
  mkdirSync(join(t, 'empty'));
  writeFileSync(join(t, 'a'), 'hello\n');
  writeFileSync(join(t, 'sub', 'run'), '#!/bin/sh\necho hi\n');
  chmodSync(join(t, 'sub', 'run'), 0o755);
  symlinkSync('a', join(t, 'link'));
  return t;
}

describe('drvbox hash', () => {
  test('hash path: SRI by default, bare base32/base16 on request', (t) => {
    const dir = tempDir(t);
    const p = tree(dir);
    const run = (...a: string[]) => dx('/unused', ['hash', 'path', ...a, p]);
    assert.equal(run().out, 'sha256-JFvMVuEBvi+XqO9A38tndcrtH36x63+yJeurcsfdXJA=\n');
    assert.equal(run('--base32').out, '142wvp3p5azb4nr7zsxigqgyvjkmcz5xyh7gm2bjzgh1w5bcqnr4\n');
    assert.equal(run('--base16').out, '245bcc56e101be2f97a8ef40dfcb6775caed1f7eb1eb7fb225ebab72c7dd5c90\n');
    assert.equal(run('--type', 'sha1', '--base32').out, 'amm5ph0x0gvgxiq2pnw34h85di4jikxn\n');
  });

  test('hash file: flat hash of the contents', (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'f'), 'hello\n');
    const f = join(dir, 'f');
    assert.equal(dx('/unused', ['hash', 'file', '--base16', f]).out, '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\n');
    assert.equal(dx('/unused', ['hash', 'file', '--base32', f]).out, '00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq\n');
    assert.equal(dx('/unused', ['hash', 'file', '--type', 'md5', '--base16', f]).out, 'b1946ac92492d2347c6235b4d2611184\n');
  });

  test('errors: unknown type, conflicting bases, missing path', (t) => {
    const dir = tempDir(t);
    const r1 = dx('/unused', ['hash', 'path', '--type', 'sha3', dir]);
    assert.equal(r1.status, 1);
    assert.equal(r1.stderr, "error: unknown hash algorithm 'sha3' (expected md5, sha1, sha256 or sha512)\n");
    assert.equal(dx('/unused', ['hash', 'path', '--base16', '--base32', dir]).stderr, 'error: --base16 and --base32 conflict (give one)\n');
    assert.equal(dx('/unused', ['hash', 'file', join(dir, 'nope')]).stderr, `error: cannot hash '${join(dir, 'nope')}': it does not exist\n`);
    assert.ok(dx('/unused', ['hash', 'path', '--help']).out.includes('--base32'));
    const r2 = dx('/unused', ['hash', 'file', dir]);
    assert.equal(r2.status, 1);
    assert.equal(r2.stderr, 'error: hash file: EISDIR: illegal operation on a directory, read\n', 'a raw errno error comes out typed, on one line');
  });
});
