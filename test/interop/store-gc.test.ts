// drvbox's garbage collector on a store Nix built: the same dead set as
// `nix-store --gc --print-dead` (roots, indirect out-link roots,
// keep-derivations), Nix still verifies the store after drvbox collected,
// and Nix's collector honours a drvbox process's temp roots.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { tempDir, dropTempDir } from '../helpers/tmp.js';
import { dx, lines } from '../cli/store-cli-util.js';
import { Messages, storeChild } from '../store/util.js';

const EXPR = `
let
  mk = name: dep: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo \${dep} > $out"]; };
  a = mk "a" "none";
  b = mk "b" a;
  c = mk "c" "none";
  d = mk "d" c;
in { inherit b d; }
`;

describe('GC against Nix', () => {
  let dir: string;
  let nix: NixOracle;
  let b: string;
  let d: string;

  after(() => dropTempDir(dir));
  before(() => {
    dir = tempDir(null);
    nix = nixOracle(join(dir, 'o'));
    writeFileSync(join(dir, 't.nix'), EXPR);
    b = nix.run('nix-build', [join(dir, 't.nix'), '-A', 'b', '-o', join(dir, 'result-b')]).stdout.toString().trim();
    d = nix.run('nix-build', ['--no-out-link', join(dir, 't.nix'), '-A', 'd']).stdout.toString().trim();
    writeFileSync(join(dir, 'extra'), 'extra');
    nix.run('nix-store', ['--add', join(dir, 'extra')]);
  });

  test('drvbox store gc --dry-run lists what nix-store --gc --print-dead lists', () => {
    const theirs = lines(nix.run('nix-store', ['--gc', '--print-dead']).stdout.toString()).sort();
    const ours = dx(nix.root, ['store', 'gc', '--dry-run']);
    assert.equal(ours.status, 0, ours.stderr);
    const paths = lines(ours.out).filter((l) => l.startsWith('/'));
    assert.deepEqual(paths, theirs);
    assert.ok(paths.includes(d) && !paths.includes(b));
    // The .drv of the live output b stays (keep-derivations), d's goes.
    const bDrv = lines(nix.run('nix-store', ['-q', '--deriver', b]).stdout.toString())[0]!;
    assert.ok(!paths.includes(bDrv));
  });

  test('Nix\'s collector keeps a path a live drvbox process holds as a temp root', async (t) => {
    const child = storeChild(dir, nix.root, `
      const s = await openAt(root);
      await s.addTempRoot(${JSON.stringify(d)});
      send({ ok: true });
      setInterval(() => {}, 1000);
    `);
    t.after(() => child.kill('SIGKILL'));
    await new Messages(child).next();
    const dead = lines(nix.run('nix-store', ['--gc', '--print-dead']).stdout.toString());
    assert.ok(!dead.includes(d), 'the temp root must protect d');
    child.kill('SIGKILL');
  });

  test('after drvbox collects, Nix verifies the store and finds nothing more to collect', () => {
    const live = lines(nix.run('nix-store', ['--gc', '--print-live']).stdout.toString()).sort();
    const r = dx(nix.root, ['store', 'gc']);
    assert.equal(r.status, 0, r.stderr);
    const v = nix.run('nix-store', ['--verify', '--check-contents'], { allowFail: true });
    assert.equal(v.status, 0, v.stderr);
    assert.deepEqual(lines(nix.run('nix-store', ['--gc', '--print-dead']).stdout.toString()), []);
    assert.deepEqual(lines(nix.run('nix-store', ['--gc', '--print-live']).stdout.toString()).sort(), live);
  });
});
