// Tests that need the sandbox fail (never skip, never pass unsandboxed) where
// it is unavailable, e.g. in CI: every test file that runs sandboxed builds
// calls requireSandbox (itself or through the helper it builds with), and a
// sandbox test file run with the sandbox made unavailable (no launcher) exits
// non-zero with the reason and, under CI=true, says CI must provide it.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT, requireLinux } from '../../helpers/host.js';

/** Marks of a test file that runs sandboxed builds. */
const SANDBOX_USE = [/\brunBuild\(/, /\blinuxBackend\.start\(/, /\bsandbox\(t, who\)/, /\bSandboxTwin\.create\(/, /'--store', (root|join\()/];
/** Helpers that call requireSandbox themselves. */
const GUARDED_HELPERS = ['test/backends/linux/fixture.ts', 'test/security/harness.ts', 'test/interop/sandbox-twin.ts'];
/** Files of other suites that build in the sandbox without requireSandbox but still FAIL without it, and why. */
const FAIL_ANYWAY = new Map<string, string>([
  ['test/cli/bundle.linux.test.ts', 'builds on a chroot-style (diverted) store: refused without the sandbox'],
  ['test/interop/recursive-nix.test.ts', "sandbox-fallback = false and asserts no warning"],
]);
/** Files with a sandbox mark that need no sandbox (they build nothing sandboxed), each with why. */
const NOT_SANDBOX = new Map<string, string>([
  ['test/cli/daemon.test.ts', '--store ROOT for path-info and the daemon, no sandboxed build'],
  ['test/interop/daemon-cli.test.ts', 'Nix and drvbox daemons on a chroot store; builds are checked by the sandbox suites'],
  ['test/cli/doctor.test.ts', 'doctor only reports'],
  ['test/helpers/nix.ts', 'the Nix oracle'],
]);

function walk(dir: string, out: string[]): string[] {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('sandbox tests fail where the sandbox is unavailable', () => {
  test('every test file that builds in the sandbox calls requireSandbox (or builds through a guarded helper)', () => {
    const unguarded: string[] = [];
    for (const file of walk(join(REPO_ROOT, 'test'), [])) {
      const rel = relative(REPO_ROOT, file);
      if (GUARDED_HELPERS.includes(rel) || NOT_SANDBOX.has(rel) || FAIL_ANYWAY.has(rel) || rel === 'test/helpers/sandbox.ts') continue;
      // The recursive-build suites build with sandbox = true and sandbox-fallback = false (recursive-runner.ts): they fail without it.
      if (rel.startsWith('test/build/recursive')) continue;
      const text = readFileSync(file, 'utf8');
      if (!SANDBOX_USE.some((re) => re.test(text))) continue;
      if (text.includes('requireSandbox(')) continue;
      // Only guarded helpers build (runBuild of fixture.ts, sandbox() of harness.ts, SandboxTwin.create).
      const helperOnly = !/\blinuxBackend\.start\(/.test(text) && !/'--store', (root|join\()/.test(text);
      if (helperOnly && /fixture\.js'|harness\.js'|sandbox-twin\.js'/.test(text)) continue;
      unguarded.push(rel);
    }
    assert.deepEqual(unguarded, []);
  });

  test('a sandbox test file run without the sandbox (CI=true): fails with the reason, skips nothing', () => {
    requireLinux('the Linux sandbox tests');
    const file = join(REPO_ROOT, 'dist', 'test', 'backends', 'backend-factory.linux.test.js');
    const env: NodeJS.ProcessEnv = { ...process.env, CI: 'true', DRVBOX_LAUNCHER: '/nonexistent/drvbox-launcher' };
    delete env.NODE_TEST_CONTEXT; // a report of its own, not one for this runner
    const r = spawnSync(process.execPath, ['--test', file], { env, encoding: 'utf8' });
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /cannot run on this host: needs the Linux namespace sandbox \(backendFor choosing the namespace backend\), which is unavailable: launcher: the sandbox launcher is not built: '\/nonexistent\/drvbox-launcher' does not exist/);
    assert.match(r.stdout, /\[CI=true: the CI runner must allow user namespaces; this test fails rather than skipping\]/);
    assert.match(r.stdout, /^# pass 0$/m);
    assert.match(r.stdout, /^# cancelled 2$/m);
    assert.match(r.stdout, /^# skipped 0$/m);
  });
});
