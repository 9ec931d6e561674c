import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { dx, lines } from './store-cli-util.js';

const FOO = '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo';

describe('drvbox path-info', () => {
  test('--json has Nix 2.8 fields, order and encodings; -r and --closure-size', (t) => {
    const dir = tempDir(t);
    const root = join(dir, 'root');
    writeFileSync(join(dir, 'foo'), 'bar');
    assert.equal(dx(root, ['store', 'add', '--mode', 'text', join(dir, 'foo')]).out, FOO + '\n');
    writeFileSync(join(dir, 'user'), `uses ${FOO}`);
    const user = lines(dx(root, ['store', 'add', '--mode', 'text', '--reference', FOO, join(dir, 'user')]).out)[0]!;
    const r = dx(root, ['path-info', '--json', '-r', '--closure-size', user]);
    assert.equal(r.status, 0, r.stderr);
    const list = JSON.parse(r.out) as Array<Record<string, unknown>>;
    assert.deepEqual(list.map((o) => o.path), [user, FOO].sort());
    const foo = list.find((o) => o.path === FOO)!;
    assert.deepEqual(Object.keys(foo), ['path', 'narHash', 'narSize', 'references', 'ca', 'closureSize', 'registrationTime']);
    assert.equal(foo.narHash, 'sha256-v99DtL7wY23pozQiKq4pK76RH8H7O4kV82q32XRlz/Y=');
    assert.equal(foo.narSize, 120);
    assert.equal(foo.ca, 'text:sha256:1fcgpy7vc4ammr7s17j2xq88scswkgz23dqzc04g8sx5vcp2pppw');
    assert.equal(foo.closureSize, 120);
    const u = list.find((o) => o.path === user)!;
    assert.deepEqual(u.references, [FOO]);
    assert.equal(u.closureSize, 120 + (u.narSize as number));
    assert.equal(r.out.includes(' '), false, 'compact JSON like Nix');

    const plain = dx(root, ['path-info', '-S', user]);
    assert.equal(plain.out, `${user}\t${String(120 + (u.narSize as number)).padStart(11)}\n`);
  });

  test('an invalid path: valid:false in JSON, an error otherwise', (t) => {
    const root = join(tempDir(t), 'root');
    const bad = '/nix/store/00000000000000000000000000000000-x';
    const j = dx(root, ['path-info', '--json', bad]);
    assert.equal(j.status, 0);
    assert.deepEqual(JSON.parse(j.out), [{ path: bad, valid: false }]);
    const p = dx(root, ['path-info', bad]);
    assert.equal(p.status, 1);
    assert.equal(p.stderr, `error: path '${bad}' is not valid\n`);
    const h = dx(root, ['path-info', '--help']);
    for (const f of ['--json', '--recursive', '--closure-size', '--size']) assert.ok(h.out.includes(f), f);
  });
});
