// `drvbox doctor`: what this host offers (the sandbox checks of its backend,
// each failure with its fix), where the store is, which settings apply, and
// what a build would therefore do. Exit status 0 whatever it finds.
import type { CAC } from 'cac';
import type { CliContext } from './context.js';
import { VERSION } from '../version.js';

/** What builds do with these settings on this host, in one sentence. */
export function buildsWill(o: { sandbox: string; usable: boolean; fallback: boolean; diverted: boolean; platform: NodeJS.Platform }): string {
  const wantSandbox = o.sandbox !== 'false' || (o.diverted && o.platform === 'linux');
  if (o.diverted && o.platform !== 'linux') return 'builds fail: the store is diverted, which only the Linux sandbox supports';
  if (!wantSandbox) return "builds run without a sandbox (sandbox = false)";
  const forced = o.sandbox === 'false' ? ' (sandbox = false, but the diverted store needs it)' : o.sandbox === 'relaxed' ? ' (relaxed: not for __noChroot or fixed-output derivations)' : '';
  if (o.usable) return `builds run in the sandbox${forced}`;
  if (o.diverted) {
    return "builds fail: the store's physical directory differs from its logical one and only the sandbox can show its paths there; fix the sandbox (above) or use '--store-dir DIR'";
  }
  if (o.fallback) return 'builds run WITHOUT a sandbox, with a warning on each (sandbox-fallback = true); fix the sandbox (above) to sandbox them';
  return "builds fail: the sandbox is unavailable and sandbox-fallback is false; fix it (above) or build with '--sandbox false'";
}

export function register(cli: CAC, ctx: () => CliContext): void {
  cli
    .command('doctor', 'Report host capabilities (the sandbox, each failure with its fix), the store and the configuration')
    .option('--json', 'Print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      const c = ctx();
      const loc = c.location;
      const s = c.settings;
      const { doctorSections } = await import('../../backends/backend.js');
      const sections = await doctorSections();
      const diverted = loc.kind === 'local' && loc.storeDir !== loc.realStoreDir;
      const builds = buildsWill({
        sandbox: s.get('sandbox'),
        usable: sections.some((x) => x.usable),
        fallback: s.get('sandbox-fallback'),
        diverted,
        platform: process.platform,
      });
      const report = {
        drvbox: VERSION,
        node: process.version,
        os: process.platform,
        arch: process.arch,
        uid: process.getuid?.() ?? null,
        system: s.get('system'),
        store: loc,
        sandbox: s.get('sandbox'),
        sandboxFallback: s.get('sandbox-fallback'),
        builds,
        sections,
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
      c.out(`sandbox: ${report.sandbox} (sandbox-fallback: ${report.sandboxFallback})`);
      for (const sec of sections) {
        c.out(`${sec.title}: ${sec.usable ? 'works' : 'UNAVAILABLE'}`);
        for (const k of sec.checks) {
          c.out(`  ${k.ok ? 'ok  ' : 'FAIL'} ${k.name}: ${k.detail}`);
          if (!k.ok && k.fix) c.out(`       fix: ${k.fix}`);
        }
        for (const n of sec.notes) c.out(n.split('\n').map((l) => `  ${l}`).join('\n'));
      }
      c.out(builds);
      for (const [name, origin] of s.origins) c.out(`setting ${name} from ${origin}`);
      for (const w of s.warnings) c.out(`warning: ${w}`);
      return 0;
    });
}
