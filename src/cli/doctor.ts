// `drvbox doctor`: what this host offers, where the store is, which settings apply.
import type { CAC } from 'cac';
import type { CliContext } from './context.js';
import { VERSION } from '../version.js';

export function register(cli: CAC, ctx: () => CliContext): void {
  cli
    .command('doctor', 'Report host capabilities, the store and the configuration')
    .option('--json', 'Print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      const c = ctx();
      const loc = c.location;
      const s = c.settings;
      const report = {
        drvbox: VERSION,
        node: process.version,
        os: process.platform,
        arch: process.arch,
        system: s.get('system'),
        store: loc,
        sandbox: s.get('sandbox'),
        settings: Object.fromEntries(s.origins),
        warnings: s.warnings,
      };
      if (opts.json) {
        c.out(JSON.stringify(report, null, 2));
        return 0;
      }
      c.out(`drvbox ${VERSION} on node ${process.version}, ${process.platform}/${process.arch} (system ${report.system})`);
      if (loc.kind === 'local') {
        c.out(`store: ${loc.storeDir} at ${loc.realStoreDir} (${loc.root ? 'chroot-style root ' + loc.root : 'real store dir'}; ${loc.origin || 'flag'})`);
      } else c.out(`store: daemon at ${loc.socket}`);
      c.out(`sandbox: ${report.sandbox}`);
      for (const w of s.warnings) c.out(`warning: ${w}`);
      return 0;
    });
}
