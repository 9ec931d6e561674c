// Timings of held builds and of paths added inside, for the record (not a
// test): `node dist/test/backends/linux/held-timing.js [rounds]`.
// Prints medians in ms: addPaths (1 path) through the server, release() until
// the builder exec'd, and addPath through a one-shot launcher.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { linuxBackend, localPlanHost, type LinuxHeldBuild, type LinuxSandboxSpec } from '../../../backends/linux/index.js';
import type { LinuxRunningBuild } from '../../../backends/linux/run.js';
import { requireSandbox } from '../../helpers/sandbox.js';
import { removeTree } from '../../helpers/tmp.js';
import { BUSYBOX_PATHS, makeFixture } from './fixture.js';

await requireSandbox('held build timings');
const rounds = Number(process.argv[2] ?? 30);
const BB = BUSYBOX_PATHS;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fx = makeFixture();
const paths = Array.from({ length: rounds }, (_, i) => fx.addStoreDir(`${String(i).padStart(4, '0').repeat(8)}-p`));
const add: number[] = [];
const release: number[] = [];
const oneShot: number[] = [];
try {
  for (let i = 0; i < rounds; i++) {
    // The builder's first act marks the exec: a fifo would do too, this is simpler.
    const spec = linuxBackend.plan(fx.request('exec /bin/busybox true', { sandboxPaths: BB, held: true }), localPlanHost()) as LinuxSandboxSpec;
    const h = (await linuxBackend.startHeld!(spec)) as LinuxHeldBuild;
    let t = performance.now();
    await h.addPaths([paths[i]!]);
    add.push(performance.now() - t);
    t = performance.now();
    const b = (await h.release()) as LinuxRunningBuild;
    release.push(performance.now() - t);
    b.log.resume();
    await b.wait();
    await linuxBackend.cleanup(spec);
  }
  process.env.DRVBOX_LAUNCHER_ONESHOT = '1';
  const spec = linuxBackend.plan(
    fx.request(': > /build/started; while [ ! -e /build/go ]; do /bin/busybox sleep 0.05; done', { sandboxPaths: BB, requiredSystemFeatures: ['recursive-nix'] }),
    localPlanHost(),
  ) as LinuxSandboxSpec;
  const b = (await linuxBackend.start(spec)) as LinuxRunningBuild;
  b.log.resume();
  while (!existsSync(join(fx.buildDir, 'started'))) await sleep(10);
  for (const p of paths) {
    const t = performance.now();
    await b.addPath(p);
    oneShot.push(performance.now() - t);
  }
  await b.kill();
  await linuxBackend.cleanup(spec);
  console.log(
    JSON.stringify({ rounds, addPathsServerMs: median(add), releaseToExecMs: median(release), addPathOneShotMs: median(oneShot) }),
  );
} finally {
  removeTree(fx.root);
}
