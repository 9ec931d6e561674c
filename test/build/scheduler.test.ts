// The scheduler and the goal over a real store, with the real
// planOutputs/desugar/registerOutputs, and either the real unsandboxed
// backend or a fake one (to count concurrent builds and inject failures).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTargets, exitStatus, Semaphore } from '../../src/build/scheduler.js';
import { NoBuildSlots } from '../../src/build/errors-run.js';
import { addDrv, FakeBackend, Recorder, realStore, settings } from './engine-fixture.js';

describe('scheduler', () => {
  test('exit status as nix-build: 100 + 1 timeout + 2 hash mismatch + 4 not deterministic; 1 otherwise', () => {
    assert.equal(exitStatus([]), 0);
    assert.equal(exitStatus(['permanent']), 100);
    assert.equal(exitStatus(['timedOut']), 101);
    assert.equal(exitStatus(['hashMismatch']), 102);
    assert.equal(exitStatus(['timedOut', 'hashMismatch']), 103);
    assert.equal(exitStatus(['notDeterministic']), 104);
    assert.equal(exitStatus(['permanent', 'notDeterministic']), 108);
    assert.equal(exitStatus(['inputRejected']), 100);
    assert.equal(exitStatus(['outputRejected']), 1);
    assert.equal(exitStatus(['transient', 'dependency']), 1);
    assert.equal(exitStatus(['misc']), 1);
    assert.equal(exitStatus(['interrupted']), 1);
  });

  test('semaphore: at most n at once; aborted waiters leave the queue', async () => {
    const s = new Semaphore(1);
    await s.acquire();
    const ac = new AbortController();
    const waiting = s.acquire(ac.signal);
    ac.abort(new Error('stop'));
    await assert.rejects(waiting, /stop/);
    let got = false;
    const next = s.acquire().then(() => (got = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(got, false);
    s.release();
    await next;
    assert.equal(got, true);
  });

  test('a chain is built in dependency order with the unsandboxed backend; a rebuild is a no-op', async (t) => {
    const { store, buildDir } = await realStore(t);
    const a = await addDrv(store, { name: 'a', script: 'echo a > $out' });
    const aOut = a.drv.env.get('out')!;
    const b = await addDrv(store, { name: 'b', script: 'read x < $a; echo "$x b" > $out', env: { a: aOut }, inputDrvs: { [a.drvPath]: ['out'] } });
    const bOut = b.drv.env.get('out')!;
    const c = await addDrv(store, { name: 'c', script: 'read x < $b; echo "$x c" > $out', env: { b: bOut }, inputDrvs: { [b.drvPath]: ['out'] } });
    const rec = new Recorder();
    const r = await buildTargets([{ arg: c.drvPath, drvPath: c.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: rec,
    });
    assert.equal(r.exitCode, 0, rec.messages.join('\n') + rec.finished_.map((f) => f.error?.message).join('\n'));
    assert.deepEqual(rec.planned_, [a.drvPath, b.drvPath, c.drvPath].sort());
    assert.deepEqual(rec.started_, [a.drvPath, b.drvPath, c.drvPath]);
    const cOut = c.drv.env.get('out')!;
    assert.equal(readFileSync(store.toRealPath(cOut), 'utf8'), 'a b c\n');
    assert.deepEqual([...r.targets[0]!.outputs], [['out', cOut]]);
    assert.deepEqual(store.requirePathInfo(cOut).references, []);
    assert.equal(store.requirePathInfo(cOut).deriver, c.drvPath);
    // The build dirs are gone, the logs are there.
    assert.deepEqual(readdirSync(buildDir), []);
    assert.ok(existsSync(r.goals.get(c.drvPath)!.logPath!));

    const rec2 = new Recorder();
    const again = await buildTargets([{ arg: c.drvPath, drvPath: c.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: rec2,
    });
    assert.equal(again.exitCode, 0);
    assert.deepEqual(rec2.planned_, []);
    assert.equal(again.targets[0]!.status, 'valid');
  });

  test('max-jobs bounds the builds running at once', async (t) => {
    const { store, buildDir } = await realStore(t);
    const targets = [];
    for (let i = 0; i < 6; i++) {
      const d = await addDrv(store, { name: `p${i}`, env: { FAKE: 'sleep:40' } });
      targets.push({ arg: d.drvPath, drvPath: d.drvPath, outputs: null });
    }
    for (const jobs of [1, 3]) {
      const fake = new FakeBackend();
      const r = await buildTargets(targets, {
        store,
        settings: settings(buildDir, { maxJobs: jobs }),
        mode: jobs === 1 ? 'normal' : 'repair',
        keepGoing: false,
        reporter: new Recorder(),
        chooseBackend: fake.choose,
      });
      assert.equal(r.exitCode, 0);
      assert.equal(fake.starts.length, 6);
      assert.equal(fake.maxRunning, jobs);
    }
  });

  test('max-jobs 0: Nix\'s error, nothing runs', async (t) => {
    const { store, buildDir } = await realStore(t);
    const d = await addDrv(store, { name: 'p' });
    await assert.rejects(
      buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
        store,
        settings: settings(buildDir, { maxJobs: 0 }),
        mode: 'normal',
        keepGoing: false,
        reporter: new Recorder(),
      }),
      (e: unknown) => e instanceof NoBuildSlots && e.message === "unable to start any build; either increase '--max-jobs' or enable remote builds",
    );
  });

  test('keep-going: independent builds go on; dependents of a failure fail with Nix\'s message; exit 100', async (t) => {
    const { store, buildDir } = await realStore(t);
    const bad = await addDrv(store, { name: 'bad', env: { FAKE: 'fail' } });
    const dep = await addDrv(store, { name: 'dep', env: { x: bad.drv.env.get('out')! }, inputDrvs: { [bad.drvPath]: ['out'] } });
    const ok = await addDrv(store, { name: 'ok', env: { FAKE: 'sleep:50' } });
    const targets = [dep, ok].map((d) => ({ arg: d.drvPath, drvPath: d.drvPath, outputs: null }));
    const fake = new FakeBackend();
    const rec = new Recorder();
    const r = await buildTargets(targets, { store, settings: settings(buildDir), mode: 'normal', keepGoing: true, reporter: rec, chooseBackend: fake.choose });
    assert.equal(r.exitCode, 100);
    assert.deepEqual(
      r.targets.map((x) => x.status),
      ['failed', 'built'],
    );
    assert.deepEqual(
      rec.finished_.filter((f) => f.status === 'failed').map((f) => f.error!.message),
      [`builder for '${bad.drvPath}' failed with exit code 3`, `1 dependencies of derivation '${dep.drvPath}' failed to build`],
    );
    assert.equal(fake.starts.includes(dep.drvPath), false);
  });

  test('without keep-going the first failure stops the run and kills the others', async (t) => {
    const { store, buildDir } = await realStore(t);
    const bad = await addDrv(store, { name: 'bad', env: { FAKE: 'fail' } });
    const slow = await addDrv(store, { name: 'slow', env: { FAKE: 'sleep:5000' } });
    const fake = new FakeBackend();
    const started = Date.now();
    const r = await buildTargets(
      [slow, bad].map((d) => ({ arg: d.drvPath, drvPath: d.drvPath, outputs: null })),
      { store, settings: settings(buildDir), mode: 'normal', keepGoing: false, reporter: new Recorder(), chooseBackend: fake.choose },
    );
    assert.ok(Date.now() - started < 3000, 'the slow build was not killed');
    assert.equal(r.exitCode, 100);
    assert.deepEqual(
      r.targets.map((x) => x.status),
      ['cancelled', 'failed'],
    );
    assert.equal(fake.running, 0);
  });

  test('two runs building the same derivation at once build it once (locks), the other reuses it', async (t) => {
    const { store, buildDir } = await realStore(t);
    const d = await addDrv(store, { name: 'shared', env: { FAKE: 'sleep:200' } });
    const fake = new FakeBackend();
    const run = (rec: Recorder) =>
      buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
        store,
        settings: settings(buildDir),
        mode: 'normal',
        keepGoing: false,
        reporter: rec,
        chooseBackend: fake.choose,
      });
    const r1 = new Recorder();
    const r2 = new Recorder();
    const [a, b] = await Promise.all([run(r1), run(r2)]);
    assert.equal(a.exitCode, 0);
    assert.equal(b.exitCode, 0);
    assert.equal(fake.starts.length, 1);
    assert.deepEqual([...a.targets[0]!.outputs], [...b.targets[0]!.outputs]);
    assert.equal([...r1.messages, ...r2.messages].filter((m) => m.startsWith('waiting for lock on')).length, 1);
  });

  test('platform and features are checked with Nix\'s message', async (t) => {
    const { store, buildDir } = await realStore(t);
    const d = await addDrv(store, { name: 'arm', system: 'aarch64-darwin', env: { requiredSystemFeatures: 'kvm foo' } });
    const rec = new Recorder();
    const r = await buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: rec,
    });
    assert.equal(r.exitCode, 1);
    assert.equal(
      rec.finished_[0]!.error!.message,
      `a 'aarch64-darwin' with features {foo, kvm} is required to build '${d.drvPath}', but I am a 'x86_64-linux' with features {big-parallel, kvm}`,
    );
    // extra-platforms and builtin builders are accepted.
    const i686 = await addDrv(store, { name: 'i686', system: 'i686-linux' });
    const ok = await buildTargets([{ arg: i686.drvPath, drvPath: i686.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir, { extraPlatforms: ['i686-linux'] }),
      mode: 'normal',
      keepGoing: false,
      reporter: new Recorder(),
    });
    assert.equal(ok.exitCode, 0);
  });

  test('timeout and max-silent-time kill the build: exit 101 and Nix\'s messages', async (t) => {
    const { store, buildDir } = await realStore(t);
    const d = await addDrv(store, { name: 'slow', script: 'echo started; /usr/bin/busybox sleep 30' });
    for (const [over, suffix] of [
      [{ timeout: 1 }, 'timed out after 1 seconds'],
      [{ maxSilentTime: 1 }, 'timed out after 1 seconds of silence'],
    ] as const) {
      const rec = new Recorder();
      const t0 = Date.now();
      const r = await buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
        store,
        settings: settings(buildDir, over),
        mode: 'normal',
        keepGoing: false,
        reporter: rec,
      });
      assert.ok(Date.now() - t0 < 5000);
      assert.equal(r.exitCode, 101);
      assert.equal(rec.finished_[0]!.error!.message, `building of '${d.drvPath}!*' from .drv file ${suffix}`);
      assert.deepEqual(rec.finished_[0]!.logTail, ['started']);
    }
    assert.deepEqual(readdirSync(buildDir), []);
  });

  test('keep-failed keeps the build dir and says where; otherwise partial outputs are removed', async (t) => {
    const { store, buildDir } = await realStore(t);
    const d = await addDrv(store, { name: 'half', script: 'echo partial > $out; echo in-build-dir > file; exit 1' });
    const out = d.drv.env.get('out')!;
    const rec = new Recorder();
    const r = await buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: rec,
    });
    assert.equal(r.exitCode, 100);
    assert.equal(existsSync(store.toRealPath(out)), false);
    assert.deepEqual(readdirSync(buildDir), []);
    const rec2 = new Recorder();
    await buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir, { keepFailed: true }),
      mode: 'normal',
      keepGoing: false,
      reporter: rec2,
    });
    const kept = rec2.finished_[0]!.keptBuildDir!;
    assert.equal(kept, join(buildDir, 'nix-build-half.drv-' + kept.slice(kept.lastIndexOf('-') + 1)));
    assert.equal(readFileSync(join(kept, 'file'), 'utf8'), 'in-build-dir\n');
    assert.ok(rec2.messages.includes(`note: keeping build directory '${kept}'`));
    assert.equal(readFileSync(store.toRealPath(out), 'utf8'), 'partial\n');
    assert.equal(store.isValidPath(out), false);
  });

  test('selected outputs: ^dev builds the derivation and reports only dev', async (t) => {
    const { store, buildDir } = await realStore(t);
    const d = await addDrv(store, { name: 'multi', outputs: ['out', 'dev'], script: 'echo o > $out; echo d > $dev' });
    const r = await buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: ['dev'] }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: new Recorder(),
    });
    assert.equal(r.exitCode, 0);
    assert.deepEqual([...r.targets[0]!.outputs.keys()], ['dev']);
    assert.ok(store.isValidPath(d.drv.env.get('out')!));
  });

  test('Ctrl-C: every running build is killed, exit 1', async (t) => {
    const { store, buildDir } = await realStore(t);
    const d = await addDrv(store, { name: 'long', script: '/usr/bin/busybox sleep 30' });
    const ac = new AbortController();
    const rec = new Recorder();
    setTimeout(() => ac.abort(), 300);
    const t0 = Date.now();
    const r = await buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: rec,
      signal: ac.signal,
    });
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(r.exitCode, 1);
    assert.equal(r.targets[0]!.status, 'cancelled');
    assert.deepEqual(readdirSync(buildDir), []);
  });

  test('recursive builds: the hook starts a daemon for recursive-nix derivations; paths it adds count as references', async (t) => {
    const { store, buildDir } = await realStore(t);
    const extra = await addDrv(store, { name: 'built-inside', script: 'echo inside > $out' });
    const r0 = await buildTargets([{ arg: extra.drvPath, drvPath: extra.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir),
      mode: 'normal',
      keepGoing: false,
      reporter: new Recorder(),
    });
    const inside = r0.targets[0]!.outputs.get('out')!;
    const d = await addDrv(store, {
      name: 'recursive',
      env: { requiredSystemFeatures: 'recursive-nix' },
      script: `echo "$NIX_REMOTE" > $out; echo ${inside} >> $out`,
    });
    const events: string[] = [];
    const r = await buildTargets([{ arg: d.drvPath, drvPath: d.drvPath, outputs: null }], {
      store,
      settings: settings(buildDir, { systemFeatures: ['recursive-nix'] }),
      mode: 'normal',
      keepGoing: false,
      reporter: new Recorder(),
      recursive: {
        async start(ctx) {
          events.push(`start ${ctx.drvPath === d.drvPath} ${ctx.buildDirSandbox === ctx.buildDirHost}`);
          await ctx.addPath(inside);
          return {
            socketHost: join(ctx.buildDirHost, 'nix-socket'),
            env: { NIX_REMOTE: `unix://${ctx.buildDirSandbox}/nix-socket` },
            stop: async () => {
              events.push('stop');
            },
          };
        },
      },
    });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(events, ['start true true', 'stop']);
    const out = r.targets[0]!.outputs.get('out')!;
    assert.match(readFileSync(out, 'utf8'), /^unix:\/\/.*\/nix-build-recursive\.drv-0\/nix-socket\n/);
    assert.deepEqual(store.requirePathInfo(out).references, [inside]);
  });
});
