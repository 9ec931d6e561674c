// The goal's own rules: the purity check of unsandboxed builds, Nix's
// messages for exit statuses and platforms, the request handed to backends.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { checkPlatform, defaultParts, describeExit, flushBackgroundWork, parseSandboxPathSetting, runGoal } from '../../src/build/goal.js';
import { Semaphore } from '../../src/build/scheduler.js';
import { addDrv, FakeBackend, Recorder, realStore, settings } from './engine-fixture.js';

describe('goal', () => {
  test("Nix's words for how a builder ended", () => {
    assert.equal(describeExit(3, null), 'failed with exit code 3');
    assert.equal(describeExit(null, 'SIGKILL'), 'failed due to signal 9 (Killed)');
    assert.equal(describeExit(null, 'SIGSEGV'), 'failed due to signal 11 (Segmentation fault)');
  });

  test('sandbox-paths entries: TARGET=SOURCE, PATH, optional with ?', () => {
    assert.deepEqual(parseSandboxPathSetting(['/bin/sh=/usr/bin/busybox', '/etc/hosts?', '', '/dev']), [
      { target: '/bin/sh', source: '/usr/bin/busybox', optional: false },
      { target: '/etc/hosts', source: '/etc/hosts', optional: true },
      { target: '/dev', source: '/dev', optional: false },
    ]);
  });

  test('platform: builtin builders run anywhere; features must all be offered', async (t) => {
    const { store, buildDir } = await realStore(t);
    const b = await addDrv(store, { name: 'b', builder: 'builtin:buildenv', system: 'builtin', args: [] });
    checkPlatform(b.drvPath, b.drv, settings(buildDir));
    const f = await addDrv(store, { name: 'f', env: { requiredSystemFeatures: 'big-parallel kvm' } });
    checkPlatform(f.drvPath, f.drv, settings(buildDir));
    assert.throws(() => checkPlatform(f.drvPath, f.drv, settings(buildDir, { systemFeatures: ['kvm'] })), {
      message: `a 'x86_64-linux' with features {big-parallel, kvm} is required to build '${f.drvPath}', but I am a 'x86_64-linux' with features {kvm}`,
    });
  });

  test("an unsandboxed build refuses to run when the home directory exists (Nix's purity check); nothing is left behind", async (t) => {
    const { store, buildDir, dir } = await realStore(t);
    const home = join(dir, 'homeless-shelter');
    mkdirSync(home);
    const d = await addDrv(store, { name: 'pure' });
    const fake = new FakeBackend();
    const rec = new Recorder();
    const r = await runGoal({
      store,
      drvPath: d.drvPath,
      drv: d.drv,
      wantedOutputs: null,
      mode: 'normal',
      settings: settings(buildDir),
      slots: new Semaphore(1),
      report: rec,
      signal: new AbortController().signal,
      parts: await defaultParts(),
      chooseBackend: fake.choose,
      homelessShelter: home,
    });
    assert.equal(r.status, 'failed');
    assert.equal(r.failure, 'misc');
    assert.equal(r.error!.message, `home directory '${home}' exists; please remove it to assure purity of builds without sandboxing`);
    assert.equal(r.logPath, null);
    assert.deepEqual(fake.starts, []);
    await flushBackgroundWork();
    assert.deepEqual(readdirSync(buildDir), []);
  });
});
