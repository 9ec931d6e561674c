// `drvbox build TARGET...`: realise derivations, print their output paths.
// Thin: flags become settings, the library does the rest (src/build).
import type { CAC } from 'cac';
import { UsageError } from '../errors.js';
import type { CliContext } from './context.js';
import { act } from './store.js';

interface BuildOpts {
  maxJobs?: string | number;
  cores?: string | number;
  sandbox?: string | boolean;
  check?: boolean;
  repair?: boolean;
  keepFailed?: boolean;
  keepGoing?: boolean;
  timeout?: string | number;
  maxSilentTime?: string | number;
  outLink?: string | boolean;
  json?: boolean;
}

/** Flags that map onto settings (the same names as --option). */
const SETTING_FLAGS: Array<[keyof BuildOpts, string]> = [
  ['maxJobs', 'max-jobs'],
  ['cores', 'cores'],
  ['timeout', 'timeout'],
  ['maxSilentTime', 'max-silent-time'],
];

/** nix-build's out-link names: result, result-dev, result-2, result-2-dev, ... */
export function outLinkName(base: string, targetIndex: number, output: string): string {
  let name = base;
  if (targetIndex > 0) name += `-${targetIndex + 1}`;
  if (output !== 'out') name += `-${output}`;
  return name;
}

function outputOrder(names: Iterable<string>): string[] {
  // `out` first, then the others in byte order (as nix-build lists them).
  return [...names].sort((a, b) => (a === 'out' ? -1 : b === 'out' ? 1 : a < b ? -1 : a > b ? 1 : 0));
}

async function runBuild(c: CliContext, args: string[], opts: BuildOpts): Promise<number> {
  if (args.length === 0) throw new UsageError("'build' needs at least one target (a .drv store path, a .drv file or a .json file)");
  if (c.location.kind === 'daemon') return (await import('./daemon.js')).buildViaDaemon(c, args, opts);
  const s = c.settings;
  for (const [flag, name] of SETTING_FLAGS) {
    const v = opts[flag];
    if (v !== undefined) s.setOption(name, String(v));
  }
  if (opts.sandbox !== undefined) s.setOption('sandbox', String(opts.sandbox));
  if (opts.keepFailed) s.setOption('keep-failed', 'true');
  if (opts.keepGoing) s.setOption('keep-going', 'true');
  if (opts.check && opts.repair) throw new UsageError("'--check' and '--repair' cannot be used together");
  const outLink = typeof opts.outLink === 'string' ? opts.outLink : null;
  if (opts.outLink === true) throw new UsageError("'--out-link' needs a path");

  const store = await c.openStore();
  const { resolveTargets } = await import('../build/targets.js');
  const { buildTargets } = await import('../build/scheduler.js');
  const { Progress } = await import('../build/progress.js');
  const { runSettingsFrom } = await import('../build/run-settings.js');
  const targets = await resolveTargets(store, args, c.cwd);
  const progress = new Progress({ verbose: c.flags.verbose, quiet: c.flags.quiet });

  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(sig === 'SIGINT' ? 130 : 143);
    progress.message('error: interrupted by the user; killing the running builds');
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let summary;
  try {
    summary = await buildTargets(targets, {
      store,
      settings: runSettingsFrom(s, s.host.cpus),
      mode: opts.check ? 'check' : opts.repair ? 'repair' : 'normal',
      keepGoing: s.get('keep-going'),
      reporter: progress,
      signal: abort.signal,
    });
  } finally {
    progress.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  if (outLink !== null) {
    const { resolve } = await import('node:path');
    summary.targets.forEach((t, i) => {
      for (const name of outputOrder(t.outputs.keys())) {
        store.addPermRoot(t.outputs.get(name)!, resolve(c.cwd, outLinkName(outLink, i, name)));
      }
    });
  }
  if (opts.json) {
    const list = summary.targets.map((t) => {
      const o: Record<string, unknown> = {
        drvPath: t.target.drvPath,
        outputs: Object.fromEntries(outputOrder(t.outputs.keys()).map((n) => [n, t.outputs.get(n)])),
        status: t.status,
      };
      if (t.startTime !== undefined) o.startTime = t.startTime / 1000;
      if (t.stopTime !== undefined) o.stopTime = t.stopTime / 1000;
      if (t.logPath) o.logPath = t.logPath;
      // Seconds, as Nix's BuildResult JSON.
      if (t.usage) {
        o.cpuUser = t.usage.cpuUserMs / 1000;
        o.cpuSystem = t.usage.cpuSystemMs / 1000;
      }
      if (t.error) o.error = t.error.message;
      return o;
    });
    c.out(JSON.stringify(list));
  } else {
    for (const t of summary.targets) {
      if (t.status !== 'built' && t.status !== 'valid') continue;
      for (const name of outputOrder(t.outputs.keys())) c.out(t.outputs.get(name)!);
    }
  }
  if (abort.signal.aborted && summary.exitCode === 0) return 1;
  return summary.exitCode;
}

export function register(cli: CAC, ctx: () => CliContext): void {
  cli
    .command(
      'build [...targets]',
      'Build derivations: .drv store paths (optionally ^out,dev or ^*), .drv files or derivation .json files (added to the store first). ' +
        'Prints the output paths, one a line. Exit status as nix-build: 0 ok, 1 bad input, 100 a build failed (+1 timeout, +2 fixed-output hash mismatch, +4 not deterministic)',
    )
    .usage(
      'build TARGET... [options]\n\n' +
        '  TARGET: a .drv store path (with ^out,dev or ^* to pick outputs; all by default), a .drv file or a derivation .json file\n' +
        '  (both are added to the store first). Prints the output paths, one a line (targets in order, out first).\n' +
        '  Exit status as nix-build: 0 ok, 1 bad input or a failure that is not a build failure,\n' +
        '  100 a build failed (+1 timeout, +2 fixed-output hash mismatch, +4 not deterministic).',
    )
    .example('drvbox build ./hello.json')
    .example('drvbox build /nix/store/...-multi.drv^out,dev --out-link result --sandbox relaxed')
    .option('-j, --max-jobs <n>', 'Builds run at once (a number or auto) [setting max-jobs]')
    .option('--cores <n>', 'NIX_BUILD_CORES of each build; 0 = all CPUs [setting cores]')
    .option('--sandbox <mode>', 'true, false or relaxed [setting sandbox]')
    .option('--check', 'Rebuild the (valid) outputs of the targets and fail (104) when they differ')
    .option('--repair', 'Rebuild the targets and replace their outputs')
    .option('-K, --keep-failed', 'Keep the build directory of failed builds [setting keep-failed]')
    .option('-k, --keep-going', 'Keep building what does not depend on a failed build [setting keep-going]')
    .option('--timeout <seconds>', 'Kill a build after this long; 0 = no limit [setting timeout]')
    .option('--max-silent-time <seconds>', 'Kill a build silent this long; 0 = no limit [setting max-silent-time]')
    .option('-o, --out-link <path>', 'Make GC-rooted symlinks PATH, PATH-dev, PATH-2, ... to the outputs (as nix-build); none without it')
    .option('--no-out-link', 'Make no out-links (the default; for nix-build compatibility)', { default: false })
    .option('--json', 'Print a JSON list of build results (drvPath, outputs, status, startTime, stopTime, logPath, error) instead of paths')
    .action(act('build', async (targets: string[], opts: BuildOpts) => {
      const { fixKebabBooleans } = await import('./store.js');
      fixKebabBooleans(opts as Record<string, unknown>, ['keepFailed', 'keepGoing'], targets);
      return runBuild(ctx(), targets, opts);
    }));
}
