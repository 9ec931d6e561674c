// Prestart with the real Linux sandbox: the next link of a chain is held
// while its input builds, gets its input when that is registered, and its
// builder sees exactly its input closure. Unsandboxed builds on Linux are
// held too (their init waits in its PID namespace).
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { backendFor, type BackendForInput, type SandboxSpec } from '../../backends/backend.js';
import { buildTargets } from '../../src/build/scheduler.js';
import { requireSandbox } from '../helpers/sandbox.js';
import { requireTool } from '../helpers/host.js';
import type { RunSettings } from '../../src/build/goal.js';
import type { LocalStore } from '../../src/store/local-store.js';
import { addDrv, Recorder, realStore, settings } from './engine-fixture.js';

before(() => requireSandbox('held sandboxes through the scheduler'));

const BB = '/usr/bin/busybox';

/** Builds `target` with the backend the settings choose (asserted to be `backend`); returns how many holds worked. */
async function buildCountingHolds(store: LocalStore, target: string, backend: string, s: RunSettings): Promise<number> {
  let held = 0;
  const chooseBackend = async (i: BackendForInput) => {
    const choice = await backendFor(i);
    const be = choice.backend;
    assert.equal(be.name, backend);
    // Counted when the hold worked (the goal falls back to an ordinary start otherwise).
    const startHeld = async (spec: SandboxSpec) => {
      const h = await be.startHeld!(spec);
      held++;
      return h;
    };
    return { ...choice, backend: { ...be, startHeld } };
  };
  const rec = new Recorder();
  const r = await buildTargets([{ arg: target, drvPath: target, outputs: null }], { store, settings: s, mode: 'normal', keepGoing: false, reporter: rec, chooseBackend });
  assert.equal(r.exitCode, 0, rec.messages.join('\n') + rec.finished_.map((f) => f.error?.message ?? '').join('\n'));
  return held;
}

describe('prestart in the Linux sandbox', () => {
  test('a chain: each next link is held, then sees exactly its input closure (not the inputs of its input)', async (t) => {
    requireTool('busybox', 'apt-get install busybox-static');
    const { store, buildDir } = await realStore(t);
    const a = await addDrv(store, { name: 'a', script: 'echo a > $out; $BB sleep 0.3', env: { BB } });
    // b's output does not refer to a: a is not in c's closure.
    const b = await addDrv(store, { name: 'b', script: 'read x < $a; echo "$x b" > $out; $BB sleep 0.3', env: { BB, a: a.drv.env.get('out')! }, inputDrvs: { [a.drvPath]: ['out'] } });
    const c = await addDrv(store, {
      name: 'c',
      script: 'read x < $b; $BB ls -a $NIX_STORE > $TMPDIR/ls; { echo "$x c"; $BB cat $TMPDIR/ls; } > $out',
      env: { BB, b: b.drv.env.get('out')! },
      inputDrvs: { [b.drvPath]: ['out'] },
    });
    const held = await buildCountingHolds(store, c.drvPath, 'linux', settings(buildDir, { sandboxMode: 'true', sandboxFallback: false, sandboxPaths: ['/bin/sh=/usr/bin/busybox', '/usr/bin/busybox'] }));
    assert.equal(held, 2, 'b and c were held');
    const bOut = b.drv.env.get('out')!;
    const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);
    assert.equal(readFileSync(store.toRealPath(c.drv.env.get('out')!), 'utf8'), `a b c\n.\n..\n${base(bOut)}\n`);
    assert.deepEqual(readdirSync(buildDir), []);
  });

  test('unsandboxed (sandbox = false): the next links are held in their PID namespace, and the chain builds', async (t) => {
    requireTool('busybox', 'apt-get install busybox-static');
    const { store, buildDir } = await realStore(t);
    const a = await addDrv(store, { name: 'a', script: 'echo a > $out; $BB sleep 0.2', env: { BB } });
    const b = await addDrv(store, { name: 'b', script: 'read x < $a; echo "$x b" > $out; $BB sleep 0.2', env: { BB, a: a.drv.env.get('out')! }, inputDrvs: { [a.drvPath]: ['out'] } });
    const c = await addDrv(store, { name: 'c', script: 'read x < $b; echo "$x c" > $out', env: { BB, b: b.drv.env.get('out')! }, inputDrvs: { [b.drvPath]: ['out'] } });
    const held = await buildCountingHolds(store, c.drvPath, 'none', settings(buildDir, { sandboxMode: 'false' }));
    assert.equal(held, 2, 'b and c were held');
    assert.equal(readFileSync(store.toRealPath(c.drv.env.get('out')!), 'utf8'), 'a b c\n');
    assert.deepEqual(readdirSync(buildDir), []);
  });
});
