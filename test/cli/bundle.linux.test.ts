// The bundled CLI finds the Linux launcher from its own location: a
// sandboxed build through it.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from '../helpers/host.js';
import { tempDir } from '../helpers/tmp.js';
import { BUNDLE_ENTRY, bundleForTests, helloJson, isolatedEnv, runEntry } from './bundle-util.js';

describe('bundled CLI on Linux', () => {
  bundleForTests();

  test('a sandboxed build (the launcher found next to the bundle)', (t) => {
    const busybox = requireTool('busybox', 'apt-get install -y busybox-static');
    const dir = tempDir(t);
    const r = runEntry(BUNDLE_ENTRY, ['--store', join(dir, 'root'), 'build', '--option', 'sandbox-paths', `/bin/sh=${busybox}`, helloJson(dir)], isolatedEnv(dir));
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout.trim();
    assert.match(out, /^\/nix\/store\/[0-9a-z]{32}-hello$/);
    assert.equal(readFileSync(join(dir, 'root') + out, 'utf8'), 'bundled\n');
  });
});
