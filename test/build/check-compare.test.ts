// The diff hook (arguments, output to the log, failures never fatal), the
// non-determinism error, and the disk-full heuristic.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DISK_FULL_THRESHOLD, isDiskNearlyFull, notDeterministicError, runDiffHook } from '../../src/build/check-compare.js';
import { tempDir } from '../helpers/tmp.js';

describe('diff hook', () => {
  test('arguments: old, new, drv path, build dir; runs in /; stdout and stderr go to the log', async (t) => {
    const dir = tempDir(t);
    const hook = join(dir, 'hook');
    writeFileSync(hook, '#!/bin/sh\necho "args: $*"\necho "cwd: $(pwd)"\necho "to stderr" >&2\n', { mode: 0o755 });
    const log: string[] = [];
    await runDiffHook({ diffHook: hook, tryA: '/a', tryB: '/b', drvPath: '/nix/store/x.drv', buildDir: '/tmp/b', log: (l) => log.push(l) });
    assert.deepEqual(log.sort(), ['args: /a /b /nix/store/x.drv /tmp/b', 'cwd: /', 'to stderr'].sort());
  });

  test('a failing or missing hook is logged, not thrown', async (t) => {
    const dir = tempDir(t);
    const hook = join(dir, 'fails');
    writeFileSync(hook, '#!/bin/sh\nexit 3\n', { mode: 0o755 });
    const log: string[] = [];
    await runDiffHook({ diffHook: hook, tryA: '/a', tryB: '/b', drvPath: '/d', buildDir: '', log: (l) => log.push(l) });
    assert.deepEqual(log, [`diff hook execution failed: diff-hook program '${hook}' failed with exit code 3`]);
    const log2: string[] = [];
    await runDiffHook({ diffHook: join(dir, 'missing'), tryA: '/a', tryB: '/b', drvPath: '/d', buildDir: '', log: (l) => log2.push(l) });
    assert.equal(log2.length, 1);
    assert.match(log2[0]!, /^diff hook execution failed: diff-hook program '.*missing': .*ENOENT/);
  });

  test('an empty setting runs nothing', async () => {
    const log: string[] = [];
    await runDiffHook({ diffHook: '', tryA: '/a', tryB: '/b', drvPath: '/d', buildDir: '', log: (l) => log.push(l) });
    assert.deepEqual(log, []);
  });
});

describe('notDeterministicError', () => {
  test("Nix's message for one output, all outputs listed after it; exit 104", () => {
    const e = notDeterministicError('/nix/store/d.drv', [
      { output: 'out', path: '/r/nix/store/o', kept: '/r/nix/store/o.check' },
      { output: 'dev', path: '/r/nix/store/v', kept: null },
    ]);
    assert.equal(e.message, "derivation '/nix/store/d.drv' may not be deterministic: output '/r/nix/store/o' differs from '/r/nix/store/o.check'; output '/r/nix/store/v' differs");
    assert.equal(e.exitCode, 104);
    assert.deepEqual(e.fields.outputs, ['out', 'dev']);
  });
});

describe('disk-full heuristic', () => {
  test('threshold 8 MiB; a directory with less free space counts as full; missing directories are ignored', (t) => {
    assert.equal(DISK_FULL_THRESHOLD, 8 * 1024 * 1024);
    const dir = tempDir(t);
    assert.equal(isDiskNearlyFull([dir, '/nonexistent/dir']), false);
    assert.equal(isDiskNearlyFull([dir], Number.MAX_SAFE_INTEGER), true);
    assert.equal(isDiskNearlyFull(['/nonexistent/dir'], Number.MAX_SAFE_INTEGER), false);
  });
});
