import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hashBytes, parseHash } from '../../src/format/hash.js';
import { makeFixedOutputPath } from '../../src/format/store-path.js';
import { contentAddressedPath, parseContentAddress, pathMatchesContentAddress, renderContentAddress } from '../../src/store/content-address.js';
import { BadContentAddress } from '../../src/store/errors.js';

test('content addresses render as Nix prints them and parse back from any encoding', () => {
  // From `nix-store --add f.txt` (f.txt = "hello\n") under Nix 2.8.
  const ca = 'fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw';
  const parsed = parseContentAddress(ca);
  assert.equal(parsed.method, 'recursive');
  assert.equal(renderContentAddress(parsed), ca);
  assert.equal(contentAddressedPath('/nix/store', parsed, 'f.txt', [], null), '/nix/store/6h9lcbx523532ax1c5g2351w9bm8ykhy-f.txt');
  const hex = 'fixed:sha1:' + '00'.repeat(20);
  assert.equal(renderContentAddress(parseContentAddress(hex)), 'fixed:sha1:' + '0'.repeat(32));
  const text = parseContentAddress('text:sha256:1fcgpy7vc4ammr7s17j2xq88scswkgz23dqzc04g8sx5vcp2pppw');
  // builtins.toFile "foo" "bar" in Nix 2.8
  assert.equal(contentAddressedPath('/nix/store', text, 'foo', [], null), '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo');
});

test('bad content addresses are typed errors naming the value', () => {
  for (const bad of ['nonsense', 'text:md5:' + '0'.repeat(32), 'fixed:r:sha256:xyz', 'blob:sha256:' + '0'.repeat(52)]) {
    assert.throws(() => parseContentAddress(bad), (e: unknown) => e instanceof BadContentAddress && e.message.includes(`'${bad}'`));
  }
});

test('self-references are part of a recursive CA path; flat paths cannot have references', () => {
  const hash = hashBytes('sha256', 'x');
  const self = makeFixedOutputPath('/nix/store', 'recursive', hash, 'n', [], true);
  assert.ok(pathMatchesContentAddress('/nix/store', self, { method: 'recursive', hash }, [self]));
  assert.ok(!pathMatchesContentAddress('/nix/store', self, { method: 'recursive', hash }, []));
  const flat = makeFixedOutputPath('/nix/store', 'flat', parseHash('sha1:' + '11'.repeat(20)), 'n');
  assert.ok(!pathMatchesContentAddress('/nix/store', flat, { method: 'flat', hash: parseHash('sha1:' + '11'.repeat(20)) }, [self]));
});
