import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { spawnSync } from 'node:child_process';
import { CLI } from '../helpers/host.js';
import { dx, lines } from './store-cli-util.js';

const FOO = '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo';

function setup(t: import('node:test').TestContext) {
  const dir = tempDir(t);
  const root = join(dir, 'root');
  writeFileSync(join(dir, 'f.txt'), 'hello\n');
  writeFileSync(join(dir, 'foo'), 'bar');
  return { dir, root };
}

describe('drvbox store (CLI)', () => {
  test('add in the three modes prints the store path', (t) => {
    const { dir, root } = setup(t);
    assert.deepEqual(dx(root, ['store', 'add', join(dir, 'f.txt')]).out, '/nix/store/6h9lcbx523532ax1c5g2351w9bm8ykhy-f.txt\n');
    assert.equal(dx(root, ['store', 'add', '--mode', 'flat', join(dir, 'f.txt')]).out, '/nix/store/d4b4lmbd433fa2xcdysz7p7zahnqh1z4-f.txt\n');
    assert.equal(dx(root, ['store', 'add', '--mode', 'flat', '--type', 'sha1', join(dir, 'f.txt')]).out, '/nix/store/4kn848vczvkyzl9npz1zz3f585s6byn3-f.txt\n');
    const foo = dx(root, ['store', 'add', '--mode', 'text', 'foo'], undefined, dir);
    assert.equal(foo.out, FOO + '\n', foo.stderr);
    assert.equal(dx(root, ['store', 'add', '--name', 'other', join(dir, 'f.txt')]).out, '/nix/store/9s9k2sai2v1fih1ayiyy428m8b8hs578-other\n');
  });

  test('bad input: one-line typed errors, exit 1', (t) => {
    const { dir, root } = setup(t);
    const r1 = dx(root, ['store', 'add', '--mode', 'zip', join(dir, 'f.txt')]);
    assert.equal(r1.status, 1);
    assert.equal(r1.stderr, "error: invalid --mode 'zip' (expected nar, flat or text)\n");
    const r2 = dx(root, ['store', 'add', join(dir, 'missing')]);
    assert.equal(r2.stderr, `error: cannot add '${join(dir, 'missing')}' to the store: it does not exist\n`);
    const r3 = dx(root, ['store', 'query', '--references', '/nix/store/00000000000000000000000000000000-x']);
    assert.equal(r3.status, 1);
    assert.equal(r3.stderr, "error: path '/nix/store/00000000000000000000000000000000-x' is not valid\n");
    const r4 = dx(root, ['store', 'query', '--references', join(dir, 'f.txt')]);
    assert.equal(r4.stderr, `error: path '${join(dir, 'f.txt')}' is not in the store '/nix/store' (nor a link to it)\n`);
    const r5 = dx(root, ['store', 'query', '--references', '--referrers', FOO]);
    assert.equal(r5.stderr, 'error: query flags --references and --referrers conflict (give one)\n');
  });

  test('query through out-links and paths inside store paths', (t) => {
    const { dir, root } = setup(t);
    const foo = lines(dx(root, ['store', 'add', '--mode', 'text', join(dir, 'foo')]).out)[0]!;
    mkdirSync(join(dir, 'tree'));
    writeFileSync(join(dir, 'tree', 'inner'), 'x');
    const tree = lines(dx(root, ['store', 'add', join(dir, 'tree')]).out)[0]!;
    writeFileSync(join(dir, 'user'), `uses ${foo} and ${tree}`);
    const user = lines(dx(root, ['store', 'add', '--mode', 'text', '--reference', foo, '--reference', tree, join(dir, 'user')]).out)[0]!;
    symlinkSync(user, join(dir, 'result'));
    symlinkSync(join(dir, 'result'), join(dir, 'result2'));
    assert.deepEqual(lines(dx(root, ['store', 'query', '--references', join(dir, 'result2')]).out), [foo, tree].sort());
    assert.deepEqual(lines(dx(root, ['store', 'query', '--requisites', 'result'], undefined, dir).out).slice(-1), [user]);
    assert.equal(lines(dx(root, ['store', 'query', '-R', user]).out).length, 3);
    assert.deepEqual(lines(dx(root, ['store', 'query', '--referrers', tree + '/inner']).out), [user]);
    assert.deepEqual(lines(dx(root, ['store', 'query', '--referrers', join(root, 'nix/store', tree.slice(11))]).out), [user]);
    assert.deepEqual(lines(dx(root, ['store', 'query', '--deriver', user]).out), ['unknown-deriver']);
    assert.deepEqual(lines(dx(root, ['store', 'query', '--outputs', user]).out), [user]);
  });

  test('export | import round trip, dump | restore round trip', (t) => {
    const { dir, root } = setup(t);
    const foo = lines(dx(root, ['store', 'add', '--mode', 'text', join(dir, 'foo')]).out)[0]!;
    writeFileSync(join(dir, 'user'), `uses ${foo}`);
    const user = lines(dx(root, ['store', 'add', '--mode', 'text', '--reference', foo, join(dir, 'user')]).out)[0]!;
    const exp = dx(root, ['store', 'export', user, foo]);
    assert.equal(exp.status, 0, exp.stderr);
    const root2 = join(dir, 'root2');
    const imp = dx(root2, ['store', 'import'], exp.stdout);
    assert.equal(imp.status, 0, imp.stderr);
    assert.deepEqual(lines(imp.out), [foo, user]);
    const bad = dx(join(dir, 'root3'), ['store', 'import'], exp.stdout.subarray(0, exp.stdout.length - 3));
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^error: bad export stream at byte \d+: input ends early.*\(truncated\)\n$/);
    assert.equal(existsSync(join(dir, 'root3', 'nix/store')) ? lines(dx(join(dir, 'root3'), ['store', 'verify']).out).length : 0, 0);

    mkdirSync(join(dir, 'tree', 'sub'), { recursive: true });
    writeFileSync(join(dir, 'tree', 'sub', 'x'), 'x');
    chmodSync(join(dir, 'tree', 'sub', 'x'), 0o755);
    symlinkSync('sub/x', join(dir, 'tree', 'l'));
    const tree = lines(dx(root, ['store', 'add', join(dir, 'tree')]).out)[0]!;
    const nar = dx(root, ['store', 'dump', tree]).stdout;
    assert.deepEqual(nar, dx(root, ['store', 'dump', join(dir, 'tree')]).stdout);
    assert.equal(nar.subarray(8, 21).toString(), 'nix-archive-1');
    const back = join(dir, 'back');
    assert.equal(dx(root, ['store', 'restore', back], nar).status, 0);
    assert.equal(readFileSync(join(back, 'sub', 'x'), 'utf8'), 'x');
    const again = dx(root, ['store', 'restore', back], nar);
    assert.equal(again.stderr, `error: cannot restore to '${back}': it already exists\n`);
  });

  test('verify and gc print what they find and do', (t) => {
    const { dir, root } = setup(t);
    const foo = lines(dx(root, ['store', 'add', '--mode', 'text', join(dir, 'foo')]).out)[0]!;
    assert.deepEqual(dx(root, ['store', 'verify', '--check-contents']).out, '');
    const real = join(root, 'nix/store', foo.slice(11));
    chmodSync(real, 0o644);
    writeFileSync(real, 'tampered');
    const v = dx(root, ['store', 'verify', '--check-contents']);
    assert.equal(v.status, 1);
    assert.match(v.out, new RegExp(`^path '${foo}' was modified! expected hash 'sha256:1xngcmsdkdvaycaqjfzvq4gr3gib56p2l8illglnsqzhpss47pxz', got 'sha256:[0-9a-z]{52}'\n$`));
    const dry = dx(root, ['store', 'gc', '--dry-run', '--no-runtime-roots']);
    assert.deepEqual(lines(dry.out), [foo, '1 store paths would be deleted, 0.00 MiB would be freed']);
    assert.ok(existsSync(real));
    const gc = dx(root, ['store', 'gc', '--no-runtime-roots']);
    assert.deepEqual(lines(gc.out), [foo, '1 store paths deleted, 0.00 MiB freed']);
    assert.equal(existsSync(real), false);
  });

  test('--help of every store command exits 0 and documents its flags', () => {
    const expect: Record<string, string[]> = {
      add: ['--name', '--mode', '--type', '--reference', '--repair'],
      import: [],
      export: [],
      query: ['--references', '--referrers', '--requisites', '--deriver', '--outputs', '--include-outputs'],
      verify: ['--check-contents', '--repair'],
      gc: ['--dry-run', '--max-freed'],
      dump: [],
      restore: [],
    };
    for (const [cmd, flags] of Object.entries(expect)) {
      const r = dx('/nonexistent', ['store', cmd, '--help']);
      assert.equal(r.status, 0, cmd);
      assert.ok(r.out.includes(`store ${cmd}`), cmd);
      for (const f of flags) assert.ok(r.out.includes(f), `${cmd} ${f}`);
    }
  });
});

test('without --store or DRVBOX_STORE the embedded default store under $XDG_DATA_HOME/drvbox just works', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'foo'), 'bar');
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_DATA_HOME: join(dir, 'data'), DRVBOX_CONFIG: '' };
  delete env.DRVBOX_STORE;
  const r = spawnSync(process.execPath, [CLI, 'store', 'add', '--mode', 'text', join(dir, 'foo')], { env, encoding: 'utf8' });
  assert.equal(r.stderr, '');
  assert.equal(r.stdout, FOO + '\n');
  const base = process.platform === 'darwin' ? join(dir, 'data', 'drvbox', 'store') : join(dir, 'data', 'drvbox', 'nix', 'store');
  assert.equal(readFileSync(join(base, FOO.slice(11)), 'utf8'), 'bar');
});
