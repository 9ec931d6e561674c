// Prestart: while a derivation builds, the scheduler starts the goal that
// waits for it, which prepares everything and (with a backend that can)
// holds its sandbox with the paths the input may refer to; when the input
// is registered, the sandbox gets exactly the input closure and the builder
// starts. Driven through the fake backend, which records what happens.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { buildTargets } from '../../src/build/scheduler.js';
import { drvLogPath } from '../../src/build/logs.js';
import { addDrv, FakeBackend, Recorder, realStore, settings } from './engine-fixture.js';
import type { LocalStore } from '../../src/store/local-store.js';

/** a -> b -> c, each `action` (fake backend), a and b reading the source `src`. */
async function chain(store: LocalStore, actions: [string, string, string]) {
  const { addTextToStore } = await import('../../src/store/add.js');
  const src = await addTextToStore(store, 'src', 'source\n', []);
  const a = await addDrv(store, { name: 'a', env: { FAKE: actions[0], src }, inputSrcs: [src] });
  const b = await addDrv(store, { name: 'b', env: { FAKE: actions[1], a: a.drv.env.get('out')!, src }, inputDrvs: { [a.drvPath]: ['out'] }, inputSrcs: [src] });
  const c = await addDrv(store, { name: 'c', env: { FAKE: actions[2], b: b.drv.env.get('out')! }, inputDrvs: { [b.drvPath]: ['out'] } });
  return { src, a, b, c };
}

const target = (d: { drvPath: string }) => ({ arg: d.drvPath, drvPath: d.drvPath, outputs: null });

/** Builds `d` (and what it needs) in `store` through `fake`; -j2 and no keep-going unless `o` says otherwise. */
function build(
  s: { store: LocalStore; buildDir: string },
  d: { drvPath: string },
  fake: FakeBackend,
  rec: Recorder,
  o: { keepGoing?: boolean; maxJobs?: number; signal?: AbortSignal } = {},
) {
  return buildTargets([target(d)], {
    store: s.store,
    settings: settings(s.buildDir, o.maxJobs === undefined ? {} : { maxJobs: o.maxJobs }),
    mode: 'normal',
    keepGoing: o.keepGoing ?? false,
    reporter: rec,
    chooseBackend: fake.choose,
    ...(o.signal ? { signal: o.signal } : {}),
  });
}

/** The events of one derivation, in order. */
const of = (events: string[], name: string) => events.filter((e) => e.split(' ')[1] === name);

describe('prestart', () => {
  test('a chain: each goal holds its sandbox (with the inputs there so far) while its input builds; the rest is added before release', async (t) => {
    const { store, buildDir } = await realStore(t);
    // Long enough for the goals behind to be set up meanwhile, also on a loaded machine.
    const { a, b, c } = await chain(store, ['sleep:400', 'sleep:400', 'sleep:60']);
    const fake = new FakeBackend({ hold: true });
    const rec = new Recorder();
    const r = await build({ store, buildDir }, c, fake, rec);
    assert.equal(r.exitCode, 0, rec.messages.join('\n'));
    // b is held with its source, c with nothing; each gets its input's
    // output once registered (the fake outputs refer to nothing).
    assert.deepEqual(of(fake.events, 'a'), ['start a', 'exit a']);
    assert.deepEqual(of(fake.events, 'b'), ['held b src', 'add b a', 'release b', 'start b', 'exit b']);
    assert.deepEqual(of(fake.events, 'c'), ['held c', 'add c b', 'release c', 'start c', 'exit c']);
    const at = (e: string) => fake.events.indexOf(e);
    assert.ok(at('held b src') < at('exit a') && at('exit a') < at('add b a'), fake.events.join(', '));
    assert.ok(at('held c') < at('exit b') && at('exit b') < at('add c b'), fake.events.join(', '));
    // The link after next is held too (max-jobs 2: two may wait at once), while a still builds.
    assert.ok(at('held c') < at('exit a'), fake.events.join(', '));
    assert.deepEqual(rec.started_, [a.drvPath, b.drvPath, c.drvPath]);
    assert.equal(fake.maxRunning, 1);
    assert.equal(readFileSync(store.toRealPath(c.drv.env.get('out')!), 'utf8'), 'out\n');
    assert.deepEqual(readdirSync(buildDir), []);
    for (const d of [a, b, c]) assert.ok(existsSync(r.goals.get(d.drvPath)!.logPath!));
  });

  test('no more prestarted goals wait at once than max-jobs: in a chain of four with -j2, d is held only once a is done', async (t) => {
    const { store, buildDir } = await realStore(t);
    const { c } = await chain(store, ['sleep:400', 'sleep:400', 'sleep:60']);
    const d = await addDrv(store, { name: 'd', env: { FAKE: 'write', c: c.drv.env.get('out')! }, inputDrvs: { [c.drvPath]: ['out'] } });
    const fake = new FakeBackend({ hold: true });
    const rec = new Recorder();
    const r = await build({ store, buildDir }, d, fake, rec);
    assert.equal(r.exitCode, 0, rec.messages.join('\n'));
    const at = (e: string) => fake.events.indexOf(e);
    assert.ok(at('held c') < at('exit a') && at('exit a') < at('held d') && at('held d') < at('exit b'), fake.events.join(', '));
    assert.deepEqual(of(fake.events, 'd'), ['held d', 'add d c', 'release d', 'start d', 'exit d']);
    assert.equal(fake.maxRunning, 1);
  });

  test('a held goal gets its input\'s output when it is placed, before it is registered; the builder starts once it is valid', async (t) => {
    const { store, buildDir } = await realStore(t);
    const { c } = await chain(store, ['sleep:300', 'sleep:300', 'write']);
    const fake = new FakeBackend({ hold: true, isValid: (p) => store.isValidPath(p) });
    const rec = new Recorder();
    const r = await build({ store, buildDir }, c, fake, rec);
    assert.equal(r.exitCode, 0, rec.messages.join('\n'));
    assert.deepEqual(of(fake.events, 'b'), ['held b src', 'add b a(placed)', 'release b a(valid) src(valid)', 'start b', 'exit b']);
    assert.deepEqual(of(fake.events, 'c'), ['held c', 'add c b(placed)', 'release c b(valid)', 'start c', 'exit c']);
  });

  test('an input with several outputs: the held goal gets the one it uses, not its sibling', async (t) => {
    const { store, buildDir } = await realStore(t);
    const a = await addDrv(store, { name: 'a', outputs: ['out', 'dev'], env: { FAKE: 'sleep:300' } });
    const b = await addDrv(store, { name: 'b', env: { FAKE: 'write', dev: a.drv.env.get('dev')! }, inputDrvs: { [a.drvPath]: ['dev'] } });
    const fake = new FakeBackend({ hold: true, isValid: (p) => store.isValidPath(p) });
    const rec = new Recorder();
    const r = await build({ store, buildDir }, b, fake, rec);
    assert.equal(r.exitCode, 0, rec.messages.join('\n'));
    assert.deepEqual(of(fake.events, 'b'), ['held b', 'add b a-dev(placed)', 'release b a-dev(valid)', 'start b', 'exit b']);
    assert.ok(store.isValidPath(a.drv.env.get('out')!), 'a was built whole');
  });

  test('max-jobs 1: nothing is prestarted (a held sandbox waits for a slot no builder uses)', async (t) => {
    const { store, buildDir } = await realStore(t);
    const { c } = await chain(store, ['sleep:20', 'sleep:20', 'write']);
    const fake = new FakeBackend({ hold: true });
    const r = await build({ store, buildDir }, c, fake, new Recorder(), { maxJobs: 1 });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(fake.events, ['start a', 'exit a', 'start b', 'exit b', 'start c', 'exit c']);
  });

  for (const keepGoing of [false, true]) {
    test(`an input fails while its dependent is held (keep-going ${keepGoing}): abandoned, Nix's dependency message, no log, no build dir`, async (t) => {
      const { store, buildDir } = await realStore(t);
      const { a, b, c } = await chain(store, ['failafter:80', 'write', 'write']);
      const fake = new FakeBackend({ hold: true });
      const rec = new Recorder();
      const r = await build({ store, buildDir }, c, fake, rec, { keepGoing });
      assert.equal(r.exitCode, 100);
      assert.deepEqual(of(fake.events, 'a'), ['start a', 'exit a']);
      assert.deepEqual(of(fake.events, 'b'), ['held b src', 'abandon b']);
      assert.ok(fake.events.indexOf('held b src') < fake.events.indexOf('exit a'), fake.events.join(', '));
      // c was held behind b; it is abandoned as well, and fails as a dependency (not as a build).
      assert.deepEqual(of(fake.events, 'c'), ['held c', 'abandon c']);
      assert.deepEqual(
        rec.finished_.map((f) => [f.drvPath, f.status, f.failure, f.error?.message]),
        [
          [a.drvPath, 'failed', 'permanent', `builder for '${a.drvPath}' failed with exit code 3`],
          [b.drvPath, 'failed', 'dependency', `1 dependencies of derivation '${b.drvPath}' failed to build`],
          [c.drvPath, 'failed', 'dependency', `1 dependencies of derivation '${c.drvPath}' failed to build`],
        ],
      );
      assert.deepEqual(rec.started_, [a.drvPath]);
      assert.deepEqual(r.targets.map((x) => x.status), ['failed']);
      // b never ran: no log of it, and its build dir is gone.
      assert.equal(existsSync(drvLogPath(store.layout.drvLogDir, b.drvPath)), false);
      assert.equal(existsSync(drvLogPath(store.layout.drvLogDir, a.drvPath)), true);
      assert.deepEqual(readdirSync(buildDir), []);
    });
  }

  test('a prestarted goal whose preparation fails does not cut its input short: the input builds, then the goal fails as without prestart', async (t) => {
    const { store, buildDir } = await realStore(t);
    const { a, b, c } = await chain(store, ['sleep:300', 'planfail', 'write']);
    const fake = new FakeBackend({ hold: true });
    const rec = new Recorder();
    const r = await build({ store, buildDir }, c, fake, rec);
    assert.equal(r.exitCode, 1);
    // b was refused while a built (prestarted), and again once a was valid.
    assert.deepEqual(of(fake.events, 'a'), ['start a', 'exit a']);
    assert.deepEqual(of(fake.events, 'b'), ['refuse b', 'refuse b']);
    assert.ok(fake.events.indexOf('refuse b') < fake.events.indexOf('exit a'), fake.events.join(', '));
    assert.ok(store.isValidPath(a.drv.env.get('out')!), 'the input was built, not killed');
    assert.deepEqual(
      rec.finished_.map((f) => [f.drvPath, f.status, f.failure, f.error?.message]),
      [
        [a.drvPath, 'built', undefined, undefined],
        [b.drvPath, 'failed', 'misc', 'fake plan of b refused'],
        [c.drvPath, 'failed', 'dependency', `1 dependencies of derivation '${c.drvPath}' failed to build`],
      ],
    );
    assert.deepEqual(rec.started_, [a.drvPath]);
    assert.deepEqual(readdirSync(buildDir), []);
  });

  test('a derivation for another platform is not prestarted: its input builds, then it fails with Nix\'s message', async (t) => {
    const { store, buildDir } = await realStore(t);
    const a = await addDrv(store, { name: 'a', env: { FAKE: 'sleep:60' } });
    const b = await addDrv(store, { name: 'b', system: 'mips-plan9', env: { a: a.drv.env.get('out')! }, inputDrvs: { [a.drvPath]: ['out'] } });
    const fake = new FakeBackend({ hold: true });
    const rec = new Recorder();
    const r = await build({ store, buildDir }, b, fake, rec);
    assert.equal(r.exitCode, 1);
    assert.deepEqual(fake.events, ['start a', 'exit a']);
    assert.ok(store.isValidPath(a.drv.env.get('out')!), 'the input was built, not killed');
    assert.match(rec.finished_.at(-1)!.error!.message, /^a 'mips-plan9' with features \{\} is required to build '.*-b\.drv', but I am a 'x86_64-linux'/);
  });

  test('Ctrl-C while a goal is held: the held sandbox is abandoned, everything is cancelled, nothing is left', async (t) => {
    const { store, buildDir } = await realStore(t);
    const { c } = await chain(store, ['sleep:5000', 'write', 'write']);
    const fake = new FakeBackend({ hold: true });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const t0 = Date.now();
    const r = await build({ store, buildDir }, c, fake, new Recorder(), { signal: ac.signal });
    assert.ok(Date.now() - t0 < 3000);
    assert.equal(r.exitCode, 1);
    assert.deepEqual(r.targets.map((x) => x.status), ['cancelled']);
    assert.deepEqual(of(fake.events, 'a'), ['start a', 'exit a']);
    assert.deepEqual(of(fake.events, 'b'), ['held b src', 'abandon b']);
    assert.deepEqual(of(fake.events, 'c'), ['held c', 'abandon c']);
    assert.equal(fake.running, 0);
    assert.deepEqual(readdirSync(buildDir), []);
  });

  test('a backend that cannot hold: the goal prepares, then waits for its input before starting', async (t) => {
    const { store, buildDir } = await realStore(t);
    const { c } = await chain(store, ['sleep:30', 'sleep:30', 'write']);
    const fake = new FakeBackend();
    const rec = new Recorder();
    const r = await build({ store, buildDir }, c, fake, rec);
    assert.equal(r.exitCode, 0, rec.messages.join('\n'));
    assert.deepEqual(fake.events, ['start a', 'exit a', 'start b', 'exit b', 'start c', 'exit c']);
    assert.deepEqual(readdirSync(buildDir), []);
  });
});
