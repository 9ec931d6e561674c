// The unsandboxed backend's held start (Backend.startHeld): the launcher sets
// the PID namespace up, the builder runs only when released, and an
// abandoned build never runs anything.
import { before, test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { PlanHost } from '../../../backends/backend.js';
import { createNoneBackend } from '../../../backends/none/index.js';
import { requireSandbox } from '../../helpers/sandbox.js';
import { tempDir } from '../../helpers/tmp.js';
import { collect, request } from './fixture.js';

const host: PlanHost = { platform: 'linux', arch: process.arch, lstat: () => 'missing', realpath: (p) => p };
const be = createNoneBackend({ plan: { containment: 'pid-namespace' } });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Processes working in `dir` (the held init has changed into the build dir). */
function processesIn(dir: string): number[] {
  const res: number[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      if (readlinkSync(`/proc/${n}/cwd`) === dir) res.push(Number(n));
    } catch {
      // gone, or not ours
    }
  }
  return res;
}

describe('none backend: held start', () => {
  before(() => requireSandbox('builders in their own PID namespace'));

  test('nothing runs until release; then the builder runs with its argv, log and exit code', async (t) => {
    const dir = tempDir(t);
    const marker = join(dir, 'ran');
    const spec = be.plan(request({ held: true, builder: '/bin/sh', args: ['-c', `echo started; : > ${marker}; exit 3`], buildDirHost: dir }), host);
    const h = await be.startHeld!(spec);
    await sleep(150);
    assert.equal(existsSync(marker), false, 'the builder ran before release()');
    const r = await h.release();
    const [text, status] = await Promise.all([collect(r), r.wait()]);
    assert.deepEqual(status, { code: 3, signal: null });
    assert.equal(text, 'started\n');
    assert.equal(existsSync(marker), true);
  });

  test('abandon(): the builder never runs and no process is left', async (t) => {
    const dir = tempDir(t);
    const marker = join(dir, 'ran');
    const spec = be.plan(request({ held: true, builder: '/bin/sh', args: ['-c', `: > ${marker}`], buildDirHost: dir }), host);
    const h = await be.startHeld!(spec);
    assert.equal(processesIn(dir).length, 1, 'the held init, in the build dir');
    await h.abandon();
    await h.abandon(); // idempotent
    await sleep(100);
    assert.equal(existsSync(marker), false);
    assert.deepEqual(processesIn(dir), []);
    await assert.rejects(h.release(), { code: 'E_HELD_BUILD_ABANDONED' });
    await assert.rejects(h.addPaths(['/s/store/0000000000000000000000000000000c-y']), { code: 'E_HELD_BUILD_ABANDONED' });
  });

  test('addPaths records; removePaths is refused (the builder sees the whole store); release() once', async (t) => {
    const dir = tempDir(t);
    const input = '/s/store/0000000000000000000000000000000c-in';
    const spec = be.plan(request({ held: true, inputPaths: [input], buildDirHost: dir }), host);
    const h = await be.startHeld!(spec);
    assert.deepEqual([...h.visible], [input]);
    await h.addPaths(['/s/store/0000000000000000000000000000000d-more']);
    assert.deepEqual([...h.visible].sort(), [input, '/s/store/0000000000000000000000000000000d-more']);
    await assert.rejects(h.removePaths([input]), {
      code: 'E_HELD_BUILD_CANNOT_HIDE',
      message: `derivation '/s/store/0000000000000000000000000000000a-x.drv': an unsandboxed builder sees the whole store; '${input}' cannot be hidden from it`,
    });
    const r = await h.release();
    await assert.rejects(h.release(), { code: 'E_HELD_BUILD_ALREADY_RELEASED' });
    const [text, status] = await Promise.all([collect(r), r.wait()]);
    assert.deepEqual(status, { code: 0, signal: null });
    assert.equal(text, 'hi\n');
    await h.abandon(); // after release: nothing to do
  });

  test('a builder that cannot be executed fails after release as an unheld one does (exit 1, the reason in the log)', async (t) => {
    const dir = tempDir(t);
    const spec = be.plan(request({ held: true, builder: join(dir, 'missing'), args: [], buildDirHost: dir }), host);
    const h = await be.startHeld!(spec);
    const r = await h.release();
    const [text, status] = await Promise.all([collect(r), r.wait()]);
    assert.deepEqual(status, { code: 1, signal: null });
    assert.match(text, new RegExp(`executing '${join(dir, 'missing')}': No such file or directory`));
  });

  test('refused without `held` in the plan, with process groups, and with the one-shot launcher', async (t) => {
    const dir = tempDir(t);
    await assert.rejects(be.startHeld!(be.plan(request({ buildDirHost: dir }), host)), { code: 'E_HELD_BUILD_NOT_PLANNED' });
    const groups = createNoneBackend({ plan: { containment: 'process-group' } });
    await assert.rejects(groups.startHeld!(groups.plan(request({ held: true, buildDirHost: dir }), host)), {
      code: 'E_HELD_BUILD_UNAVAILABLE',
      message: "derivation '/s/store/0000000000000000000000000000000a-x.drv': cannot hold the builder: builders run in process groups here",
    });
    process.env.DRVBOX_LAUNCHER_ONESHOT = '1';
    try {
      await assert.rejects(be.startHeld!(be.plan(request({ held: true, buildDirHost: dir }), host)), { code: 'E_HELD_BUILD_UNAVAILABLE' });
    } finally {
      delete process.env.DRVBOX_LAUNCHER_ONESHOT;
    }
    await assert.rejects(be.startHeld!(be.plan(request({ held: true, buildDirHost: join(dir, 'gone') }), host)), { code: 'E_BUILDER_START_FAILED' });
  });

  test('the log of a released build is the builder\'s only (no launcher status text)', async (t) => {
    const dir = tempDir(t);
    const spec = be.plan(request({ held: true, builder: '/bin/sh', args: ['-c', 'printf "a\\nb"'], buildDirHost: dir }), host);
    const h = await be.startHeld!(spec);
    const r = await h.release();
    const [text] = await Promise.all([collect(r), r.wait()]);
    assert.equal(text, 'a\nb');
  });
});
