// The bundled CLI (package.json's bin, built by src/cli/build-bundle.mjs)
// behaves as the unbundled one: same --version, --help, builds, errors; -v
// traces point into the TypeScript sources; its code cache is named after
// the bundle's content and V8's version.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CLI } from '../helpers/host.js';
import { tempDir } from '../helpers/tmp.js';
import { BUNDLE_DIR, BUNDLE_ENTRY, bundleForTests, helloJson, isolatedEnv, runEntry as run } from './bundle-util.js';

describe('bundled CLI', () => {
  bundleForTests();

  test('--version and --help print exactly what the unbundled CLI prints', () => {
    for (const args of [['--version'], ['--help'], ['build', '--help'], ['store', 'add', '--help']]) {
      const a = run(BUNDLE_ENTRY, args);
      const b = run(CLI, args);
      assert.equal(a.status, 0, a.stderr);
      assert.equal(a.stdout, b.stdout, args.join(' '));
      assert.equal(a.stderr, b.stderr);
    }
    assert.match(run(BUNDLE_ENTRY, ['--version']).stdout, /^drvbox\/\d+\.\d+\.\d+ [a-z0-9]+-[a-z0-9]+ node-v\d+\.\d+\.\d+\n$/);
  });

  test('main.js (what service files start) runs the same CLI', () => {
    assert.equal(run(join(BUNDLE_DIR, 'main.js'), ['--help']).stdout, run(CLI, ['--help']).stdout);
  });

  test('unsandboxed build, no-op rebuild and path-info agree with the unbundled CLI', (t) => {
    const dir = tempDir(t);
    const drv = helloJson(dir);
    const store = ['--store-dir', join(dir, 'store')];
    const env = isolatedEnv(dir);
    const b = run(BUNDLE_ENTRY, [...store, 'build', '--sandbox', 'false', drv], env);
    assert.equal(b.status, 0, b.stderr);
    const out = b.stdout.trim();
    assert.match(out, new RegExp(`^${join(dir, 'store')}/[0-9a-z]{32}-hello$`));
    assert.equal(readFileSync(out, 'utf8'), 'bundled\n');
    const u = run(CLI, [...store, 'build', '--sandbox', 'false', drv], env);
    assert.deepEqual([u.status, u.stdout, u.stderr], [0, `${out}\n`, '']);
    const again = run(BUNDLE_ENTRY, [...store, 'build', '--sandbox', 'false', drv], env);
    assert.deepEqual([again.status, again.stdout, again.stderr], [0, `${out}\n`, '']);
    const pi = run(BUNDLE_ENTRY, [...store, 'path-info', '--json', out], env);
    assert.equal(pi.status, 0, pi.stderr);
    assert.equal(pi.stdout, run(CLI, [...store, 'path-info', '--json', out], env).stdout);
  });

  test('errors: one line without -v; with -v the stack trace points into the TypeScript sources', (t) => {
    const dir = tempDir(t);
    const args = ['--store-dir', join(dir, 'store'), 'build', join(dir, 'missing.json')];
    const plain = run(BUNDLE_ENTRY, args, isolatedEnv(dir));
    const unbundled = run(CLI, args, isolatedEnv(dir));
    assert.deepEqual([plain.status, plain.stdout, plain.stderr], [unbundled.status, unbundled.stdout, unbundled.stderr]);
    assert.equal(plain.status, 1);
    assert.match(plain.stderr, /^error: [^\n]*missing\.json[^\n]*\n$/);
    const verbose = run(BUNDLE_ENTRY, ['-v', ...args], isolatedEnv(dir));
    assert.equal(verbose.status, 1);
    assert.ok(verbose.stderr.startsWith(plain.stderr), verbose.stderr);
    assert.match(verbose.stderr, /\n {4}at [^\n]*src\/[a-z-]+\/[a-z-]+\.ts:\d+:\d+\)?\n/, verbose.stderr);
  });

  test('the trained code cache is accepted as is, also by a build that tunes V8 once it has work (the cache is not rewritten)', (t) => {
    const cache = readdirSync(BUNDLE_DIR).find((f) => f.endsWith('.cache'))!;
    const before = statSync(join(BUNDLE_DIR, cache)).mtimeMs;
    const dir = tempDir(t);
    const env = isolatedEnv(dir);
    assert.equal(run(BUNDLE_ENTRY, ['--help']).status, 0);
    const b = run(BUNDLE_ENTRY, ['--store-dir', join(dir, 'store'), 'build', '--sandbox', 'false', helloJson(dir)], env);
    assert.equal(b.status, 0, b.stderr);
    assert.equal(statSync(join(BUNDLE_DIR, cache)).mtimeMs, before, 'a rejected cache is rewritten at exit');
    // The same from outside: V8 accepts it under its default flags, which the
    // tuning changes (so a run that writes the cache must not tune).
    const probe = (flags: string) =>
      spawnSync(
        process.execPath,
        [
          '-e',
          `const fs = require('fs'), { Script } = require('vm'), { wrap } = require('module'); ${flags}` +
            `const s = new Script(wrap(fs.readFileSync(process.argv[1], 'latin1')), { filename: 'x', cachedData: fs.readFileSync(process.argv[2]) });` +
            'process.stdout.write(String(s.cachedDataRejected));',
          join(BUNDLE_DIR, 'drvbox.cjs'),
          join(BUNDLE_DIR, cache),
        ],
        { encoding: 'utf8' },
      ).stdout;
    assert.equal(probe(''), 'false');
    assert.equal(probe(`require('v8').setFlagsFromString('--max-optimized-bytecode-size=8192');`), 'true');
  });

  test('the code cache is named after the bundle content and V8; DRVBOX_CODE_CACHE=off runs without it', () => {
    const hash = createHash('sha256').update(readFileSync(join(BUNDLE_DIR, 'drvbox.cjs'))).digest('hex').slice(0, 16);
    const name = `drvbox.cjs.${hash}.v8-${process.versions.v8}-${process.arch}.cache`;
    assert.ok(existsSync(join(BUNDLE_DIR, name)), `${name} in ${readdirSync(BUNDLE_DIR).join(', ')}`);
    rmSync(join(BUNDLE_DIR, name));
    assert.equal(run(BUNDLE_ENTRY, ['--help'], { DRVBOX_CODE_CACHE: 'off' }).status, 0);
    assert.ok(!existsSync(join(BUNDLE_DIR, name)), 'not written when off');
    assert.equal(run(BUNDLE_ENTRY, ['--help']).status, 0);
    assert.ok(existsSync(join(BUNDLE_DIR, name)), 'written by the first run without one');
    assert.deepEqual(readdirSync(BUNDLE_DIR).filter((f) => f.endsWith('.tmp')), []);
  });
});
