// The pre-build hook protocol (Nix's): extra-sandbox-paths blocks, errors
// for anything else, the arguments the hook gets.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parsePreBuildHookOutput, runPreBuildHook } from '../../src/build/pre-build-hook.js';
import { tempDir } from '../helpers/tmp.js';

describe('parsePreBuildHookOutput', () => {
  test('blocks of target=source or plain paths, both spellings, several blocks', () => {
    assert.deepEqual(parsePreBuildHookOutput('extra-sandbox-paths\n/a=/b\n/c\n\nextra-chroot-dirs\n/d=/e=f\n/opt/x?\n'), [
      { target: '/a', source: '/b', optional: false },
      { target: '/c', source: '/c', optional: false },
      { target: '/d', source: '/e=f', optional: false },
      { target: '/opt/x?', source: '/opt/x?', optional: false },
    ]);
  });

  test('nothing, or a last line without newline (ignored, as Nix does)', () => {
    assert.deepEqual(parsePreBuildHookOutput(''), []);
    assert.deepEqual(parsePreBuildHookOutput('extra-sandbox-paths\n/a'), []);
  });

  test('unknown commands, including an empty line outside a block', () => {
    assert.throws(() => parsePreBuildHookOutput('sandbox-paths\n/a\n'), { name: 'PreBuildHookUnknownCommand', message: "unknown pre-build hook command 'sandbox-paths'" });
    assert.throws(() => parsePreBuildHookOutput('extra-sandbox-paths\n/a\n\n\n'), { message: "unknown pre-build hook command ''" });
  });
});

describe('runPreBuildHook', () => {
  test('gets the drv path and the sandbox root; stderr goes to the log', async (t) => {
    const dir = tempDir(t);
    const hook = join(dir, 'hook');
    writeFileSync(hook, '#!/bin/sh\necho "args $#: $*" >&2\necho extra-sandbox-paths\necho "/in=$2/x"\necho\n', { mode: 0o755 });
    const log: string[] = [];
    const paths = await runPreBuildHook({ hook, drvPath: '/nix/store/x.drv', sandboxRoot: '/root-dir', log: (l) => log.push(l) });
    assert.deepEqual(paths, [{ target: '/in', source: '/root-dir/x', optional: false }]);
    assert.deepEqual(log, ['args 2: /nix/store/x.drv /root-dir']);
    const one: string[] = [];
    await runPreBuildHook({ hook, drvPath: '/nix/store/x.drv', log: (l) => one.push(l) });
    assert.deepEqual(one, ['args 1: /nix/store/x.drv']);
  });

  test('a failing hook is an error naming it; so is garbage output', async (t) => {
    const dir = tempDir(t);
    const bad = join(dir, 'bad');
    writeFileSync(bad, '#!/bin/sh\nexit 2\n', { mode: 0o755 });
    await assert.rejects(runPreBuildHook({ hook: bad, drvPath: '/d' }), { name: 'PreBuildHookFailed', message: `program '${bad}' failed with exit code 2` });
    const noisy = join(dir, 'noisy');
    writeFileSync(noisy, '#!/bin/sh\necho hello\n', { mode: 0o755 });
    await assert.rejects(runPreBuildHook({ hook: noisy, drvPath: '/d' }), { message: "unknown pre-build hook command 'hello'" });
    await assert.rejects(runPreBuildHook({ hook: join(dir, 'missing'), drvPath: '/d' }), { name: 'PreBuildHookFailed' });
  });
});
