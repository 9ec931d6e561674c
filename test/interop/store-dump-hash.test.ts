// `drvbox store dump` is byte-identical to `nix-store --dump`, and `drvbox
// hash path|file` agrees with nix-hash, on a tree with symlinks,
// executables, empty dirs, unicode names and 10,000 files.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from '../helpers/host.js';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { tempDir, dropTempDir } from '../helpers/tmp.js';
import { dx, lines } from '../cli/store-cli-util.js';

function makeTree(root: string): void {
  mkdirSync(join(root, 'bin'), { recursive: true });
  writeFileSync(join(root, 'bin', 'run'), '#!/bin/sh\nexec true\n');
  chmodSync(join(root, 'bin', 'run'), 0o755);
  mkdirSync(join(root, 'empty'));
  mkdirSync(join(root, 'ünïcødé ✓ 日本語'));
  writeFileSync(join(root, 'ünïcødé ✓ 日本語', 'файл.txt'), 'unicode\n');
  symlinkSync('bin/run', join(root, 'rel-link'));
  symlinkSync('/nonexistent/abs', join(root, 'dangling'));
  writeFileSync(join(root, 'empty-file'), '');
  for (let d = 0; d < 100; d++) {
    const sub = join(root, 'many', `d${d}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(join(sub, `f${f}`), `file ${d}/${f}\n`.repeat(f % 4));
  }
}

function tool(nix: NixOracle, cmd: string, args: string[]): Buffer {
  const r = spawnSync(cmd, args, { env: nix.env, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${String(r.stderr)}`);
  return r.stdout;
}

describe('dump and hash against Nix', () => {
  let dir: string;
  let nix: NixOracle;
  let tree: string;

  after(() => dropTempDir(dir));
  before(() => {
    requireTool('nix-hash', 'apt-get install -y nix-bin');
    dir = tempDir(null);
    nix = nixOracle(join(dir, 'oracle'));
    tree = join(dir, 'tree');
    makeTree(tree);
  });

  test('drvbox store dump == nix-store --dump, for a plain tree and for a store path of a chroot store', () => {
    const theirs = tool(nix, 'nix-store', ['--dump', tree]);
    const ours = dx(join(dir, 'unused'), ['store', 'dump', tree]);
    assert.equal(ours.status, 0, ours.stderr);
    assert.ok(Buffer.compare(ours.stdout, theirs) === 0, `NAR differs (${ours.stdout.length} vs ${theirs.length} bytes)`);
    const root = join(dir, 'store');
    const sp = lines(dx(root, ['store', 'add', tree]).out)[0]!;
    const inStore = dx(root, ['store', 'dump', sp]);
    assert.ok(Buffer.compare(inStore.stdout, theirs) === 0);
    assert.ok(Buffer.compare(tool(nix, 'nix-store', ['--dump', join(root, sp)]), theirs) === 0);
  });

  test('drvbox hash path / file == nix-hash (sha256 base32, sha1 base16, sha512 SRI)', () => {
    assert.equal(dx('/unused', ['hash', 'path', '--base32', tree]).out, tool(nix, 'nix-hash', ['--type', 'sha256', '--base32', tree]).toString());
    assert.equal(dx('/unused', ['hash', 'path', '--type', 'sha1', '--base16', tree]).out, tool(nix, 'nix-hash', ['--type', 'sha1', tree]).toString());
    assert.equal(dx('/unused', ['hash', 'path', '--type', 'sha512', tree]).out, tool(nix, 'nix', ['hash', 'path', '--type', 'sha512', tree]).toString());
    const f = join(tree, 'bin', 'run');
    assert.equal(dx('/unused', ['hash', 'file', '--base32', f]).out, tool(nix, 'nix-hash', ['--type', 'sha256', '--base32', '--flat', f]).toString());
    assert.equal(dx('/unused', ['hash', 'file', '--type', 'md5', '--base16', f]).out, tool(nix, 'nix-hash', ['--type', 'md5', '--flat', f]).toString());
  });
});
