// (7) Sandbox launch: drvbox's Linux backend from start() to the builder's
// exit (`sh -c 'exit 0'` in a sandbox with inputs, build dir, /proc, /dev,
// seccomp), against an equivalent `bwrap --unshare-all …` and plain
// `unshare -Urmpiun --fork true`, spawned from the same Node process,
// interleaved (bench/sandbox-launch.ts).
import { missingPeer, type BenchContext } from '../lib/context.js';
import { check, side, type RowResult } from '../lib/report.js';
import { summarize } from '../lib/stats.js';
import { benchSandboxLaunch } from '../sandbox-launch.js';

export async function launchRow(ctx: BenchContext): Promise<RowResult> {
  const iterations = ctx.quick ? 30 : 100;
  const results = await benchSandboxLaunch(iterations, ctx.quick ? 5 : 10);
  const by = (prefix: string) => results.find((r) => r.name.startsWith(prefix));
  const drv = by('drvbox (launcher server)')!;
  const one = by('drvbox (one launcher per build)');
  const bwrap = by('bwrap');
  const unshare = by('unshare');
  ctx.log(`sandbox launch: ${results.map((r) => `${r.name} ${r.toExitMs.toFixed(2)} ms`).join(', ')}`);
  const sides = [side('drvbox start → exit', 'ms', drv.exitSamples!, summarize(drv.exitSamples!))];
  if (one) sides.push(side('drvbox, one launcher process per build', 'ms', one.exitSamples!, summarize(one.exitSamples!)));
  if (bwrap) sides.push(side('bwrap --unshare-all (equivalent sandbox)', 'ms', bwrap.exitSamples!, summarize(bwrap.exitSamples!)));
  if (unshare) sides.push(side('unshare -Urmpiun --fork true', 'ms', unshare.exitSamples!, summarize(unshare.exitSamples!)));
  return {
    id: 'launch',
    n: '7',
    title: `sandbox launch to builder exit (${iterations} each, interleaved)`,
    sides,
    checks: [
      check('time vs bwrap', bwrap ? drv.toExitMs / bwrap.toExitMs : null, '×', 1),
      check('time vs unshare (no sandbox set-up)', unshare ? drv.toExitMs / unshare.toExitMs : null, '×', null),
    ],
    missing: [...(bwrap ? [] : [missingPeer('bwrap')]), ...(unshare ? [] : [missingPeer('unshare')])],
    notes: drv.toExecMs !== null ? [`drvbox start → builder exec: median ${drv.toExecMs.toFixed(2)} ms`] : [],
  };
}
