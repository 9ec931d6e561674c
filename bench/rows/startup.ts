// (3b) CLI start-up: `drvbox --version` against `node -e 0`, the floor of
// any Node program, spawned directly (no GNU time around them: at ~20 ms a
// fork+exec more would blur the ratio), alternately.
import type { BenchContext } from '../lib/context.js';
import { cleanEnv, drvboxEntry } from '../lib/env.js';
import { run } from '../lib/proc.js';
import { check, side, type RowResult } from '../lib/report.js';
import { alternate, median, summarize } from '../lib/stats.js';

export async function startupRow(ctx: BenchContext): Promise<RowResult> {
  const env = cleanEnv();
  const entry = drvboxEntry();
  const rounds = ctx.quick ? 10 : 30;
  const d: number[] = [];
  const n: number[] = [];
  const h: number[] = [];
  let version = '';
  for (let i = 0; i < 3; i++) {
    version = run(process.execPath, [entry, '--version'], { env }).stdout.toString().trim();
    run(process.execPath, ['-e', '0'], { env });
  }
  await alternate(rounds, [
    () => void d.push(run(process.execPath, [entry, '--version'], { env }).ms),
    () => void n.push(run(process.execPath, ['-e', '0'], { env }).ms),
    () => void h.push(run(process.execPath, [entry, '--help'], { env }).ms),
  ]);
  ctx.log(`start-up: drvbox --version ${median(d).toFixed(1)} ms, --help ${median(h).toFixed(1)} ms, node -e 0 ${median(n).toFixed(1)} ms`);
  return {
    id: 'startup',
    n: '3b',
    title: 'CLI start-up',
    sides: [
      side('drvbox --version', 'ms', d, summarize(d)),
      side('drvbox --help', 'ms', h, summarize(h)),
      side('node -e 0', 'ms', n, summarize(n)),
    ],
    checks: [check('drvbox --version vs node -e 0', median(d) / median(n), '×', 1.3)],
    missing: [],
    notes: [`\`drvbox --version\` prints \`${version}\`; the entry is ${entry.slice(entry.indexOf('/dist/') + 1)} (package.json bin)`],
  };
}
