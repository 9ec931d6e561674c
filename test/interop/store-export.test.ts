// Export streams cross between Nix and drvbox in both directions.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync, chmodSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { tempDir, dropTempDir } from '../helpers/tmp.js';
import { dx, lines } from '../cli/store-cli-util.js';

const EXPR = `
let dep = derivation { name = "dep"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "mkdir -p $out/bin; echo dep > $out/bin/x; chmod +x $out/bin/x; ln -s bin/x $out/l"]; };
in derivation { name = "top"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo \${dep} > $out"]; }
`;

describe('export streams between Nix and drvbox', () => {
  let dir: string;
  let nix: NixOracle;
  let top: string;
  let closure: string[];

  after(() => dropTempDir(dir));
  before(() => {
    dir = tempDir(null);
    nix = nixOracle(join(dir, 'a'));
    writeFileSync(join(dir, 't.nix'), EXPR);
    top = nix.run('nix-build', ['--no-out-link', join(dir, 't.nix')]).stdout.toString().trim();
    closure = lines(nix.run('nix-store', ['-qR', top]).stdout.toString());
  });

  test('nix-store --export imports into drvbox; drvbox export is byte-identical to Nix\'s', () => {
    const stream = nix.run('nix-store', ['--export', ...closure]).stdout;
    const root = join(dir, 'drvbox');
    const imp = dx(root, ['store', 'import'], stream);
    assert.equal(imp.status, 0, imp.stderr);
    assert.deepEqual(lines(imp.out), closure);
    const ours = dx(root, ['store', 'export', ...closure]);
    assert.equal(ours.status, 0, ours.stderr);
    assert.ok(Buffer.compare(ours.stdout, stream) === 0, 'drvbox store export == nix-store --export');
    // ...and back into a fresh Nix store, which verifies it.
    const back = nixOracle(join(dir, 'back'));
    assert.deepEqual(lines(back.run('nix-store', ['--import'], { input: ours.stdout }).stdout.toString()), closure);
    const v = back.run('nix-store', ['--verify', '--check-contents'], { allowFail: true });
    assert.equal(v.status, 0, v.stderr);
    assert.deepEqual(lines(back.run('nix-store', ['-qR', top]).stdout.toString()), closure);
  });

  test('drvbox export (of paths drvbox added) imports into a fresh Nix store, which verifies', () => {
    const root = join(dir, 'drvbox2');
    const src = join(dir, 'src');
    mkdirSync(join(src, 'd'), { recursive: true });
    writeFileSync(join(src, 'd', 'f'), 'f');
    chmodSync(join(src, 'd', 'f'), 0o755);
    symlinkSync('d/f', join(src, 'link'));
    const a = lines(dx(root, ['store', 'add', src]).out)[0]!;
    writeFileSync(join(dir, 'note'), `see ${a}`);
    const b = lines(dx(root, ['store', 'add', '--mode', 'text', '--reference', a, join(dir, 'note')]).out)[0]!;
    const stream = dx(root, ['store', 'export', b, a]).stdout;
    const fresh = nixOracle(join(dir, 'c'));
    const imp = fresh.run('nix-store', ['--import'], { input: stream });
    assert.deepEqual(lines(imp.stdout.toString()), [a, b]);
    const v = fresh.run('nix-store', ['--verify', '--check-contents'], { allowFail: true });
    assert.equal(v.status, 0, v.stderr);
    assert.deepEqual(lines(fresh.run('nix-store', ['-qR', b]).stdout.toString()), lines(dx(root, ['store', 'query', '-R', b]).out));
    const theirs = JSON.parse(fresh.run('nix', ['path-info', '--json', a, b]).stdout.toString()) as Array<Record<string, unknown>>;
    const ours = JSON.parse(dx(root, ['path-info', '--json', a, b]).out) as Array<Record<string, unknown>>;
    const core = (l: Array<Record<string, unknown>>) => l.map((o) => [o.path, o.narHash, o.narSize, o.references]);
    assert.deepEqual(core(ours), core(theirs));
  });

  test('a truncated Nix export leaves the drvbox store as it was', () => {
    const stream = nix.run('nix-store', ['--export', ...closure]).stdout;
    const root = join(dir, 'drvbox3');
    for (const cut of [stream.length - 1, Math.floor(stream.length / 2), 17]) {
      const r = dx(root, ['store', 'import'], stream.subarray(0, cut));
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^error: bad (export stream|NAR) at byte \d+: .*\n$/);
      assert.equal(dx(root, ['path-info', '--json', ...closure]).out, JSON.stringify([...closure].sort().map((p) => ({ path: p, valid: false }))) + '\n');
    }
  });
});
