// `drvbox sandbox explain [--platform linux|darwin|none] DRV`: the sandbox
// a build of DRV would get, without building it.
import type { CAC } from 'cac';
import { UsageError } from '../errors.js';
import type { CliContext } from './context.js';
import { act } from './store.js';

export function register(cli: CAC, ctx: () => CliContext): void {
  cli
    .command(
      'sandbox explain <target>',
      "Show the sandbox plan for a derivation without building it: the Linux mount table and seccomp rules, the macOS .sb profile, or the unsandboxed run; by default the backend a build would use (setting 'sandbox')",
    )
    .usage(
      'sandbox explain [--platform linux|darwin|none] TARGET\n\n' +
        '  TARGET as for build. Plans the build (outputs, environment, files) exactly as a build would and prints the\n' +
        '  backend\'s plan without building: nothing is locked, created or run.',
    )
    .option('--platform <platform>', "linux, darwin or none: explain that backend's plan (darwin's works on any OS)")
    .option('--sandbox <mode>', 'true, false or relaxed [setting sandbox]')
    .action(act('sandbox explain', async (target: string, opts: { platform?: string; sandbox?: string }) => {
      const c = ctx();
      if (opts.platform !== undefined && !['linux', 'darwin', 'none'].includes(String(opts.platform))) {
        throw new UsageError(`invalid --platform '${opts.platform}' (expected linux, darwin or none)`);
      }
      if (opts.sandbox !== undefined) c.settings.setOption('sandbox', String(opts.sandbox));
      const store = await c.openStore();
      const { resolveTargets } = await import('../build/targets.js');
      const { explainDerivation } = await import('../build/explain.js');
      const { defaultParts } = await import('../build/goal.js');
      const { runSettingsFrom } = await import('../build/run-settings.js');
      const [t] = await resolveTargets(store, [target], c.cwd);
      const text = await explainDerivation({
        store,
        drvPath: t!.drvPath,
        settings: runSettingsFrom(c.settings, c.settings.host.cpus),
        parts: await defaultParts(),
        ...(opts.platform ? { platform: opts.platform as 'linux' | 'darwin' | 'none' } : {}),
      });
      process.stdout.write(text);
      return 0;
    }));
}
