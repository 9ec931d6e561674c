import { test } from 'node:test';
import assert from 'node:assert/strict';
import { camelFlag, preParse } from '../../src/cli/commands.js';

test('preParse joins two-word commands after global flags with values', () => {
  assert.deepEqual(preParse(['--store', '/tmp/x', 'store', 'add', 'p']).argv, ['--store', '/tmp/x', 'store add', 'p']);
  assert.deepEqual(preParse(['--store-dir', '/s', 'hash', 'path', 'p']).argv, ['--storeDir', '/s', 'hash path', 'p']);
  assert.deepEqual(preParse(['store', 'gc', '--dry-run']).argv, ['store gc', '--dryRun']);
});

test('preParse pulls out every --option pair', () => {
  const r = preParse(['--option', 'sandbox', 'false', 'build', 'x.json', '--option', 'extra-sandbox-paths', '/a=/b']);
  assert.deepEqual(r.options, [
    ['sandbox', 'false'],
    ['extra-sandbox-paths', '/a=/b'],
  ]);
  assert.deepEqual(r.argv, ['build', 'x.json']);
  assert.throws(() => preParse(['--option', 'sandbox']), /'--option' needs a name and a value/);
});

test('camelFlag spells kebab-case long flags in camelCase, keeping --no- and values', () => {
  assert.equal(camelFlag('--closure-size'), '--closureSize');
  assert.equal(camelFlag('--no-keep-failed'), '--no-keepFailed');
  assert.equal(camelFlag('--max-jobs=4'), '--maxJobs=4');
  assert.equal(camelFlag('--json'), '--json');
  assert.equal(camelFlag('--no-x'), '--no-x');
  assert.equal(camelFlag('--no-out-link'), '--no-outLink');
  assert.equal(camelFlag('-K'), '-K');
  assert.equal(camelFlag('some-word'), 'some-word');
});
