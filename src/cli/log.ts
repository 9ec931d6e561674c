// `drvbox log DRV-OR-OUTPUT`: prints the build log of a derivation (for an
// output path: of its deriver), as `nix log` does.
import type { CAC } from 'cac';
import type { CliContext } from './context.js';
import { act } from './store.js';

export function register(cli: CAC, ctx: () => CliContext): void {
  cli
    .command('log <path>', 'Print the build log of a derivation, or of the derivation that built an output path')
    .usage('log DRV-OR-OUTPUT\n\n  Prints the log kept in <log dir>/drvs/<2 chars>/<rest of the .drv name> (Nix\'s bzip2ed logs via the host\'s bzip2).')
    .action(act('log', async (arg: string) => {
      const c = ctx();
      const store = await c.openStore();
      const { isDerivationPath } = await import('../format/store-path.js');
      const { findDrvLog } = await import('../build/logs.js');
      const { LogNotFound } = await import('../build/errors-run.js');
      const p = store.followLinksToStorePath(arg, c.cwd);
      let drvPath = p;
      if (!isDerivationPath(p)) {
        const deriver = store.queryPathInfo(p)?.deriver ?? store.queryValidDerivers(p)[0] ?? null;
        if (!deriver) throw new LogNotFound(`build log of '${p}' is not available: no derivation is known to have built it`, { path: p });
        drvPath = deriver;
      }
      const found = findDrvLog(store.layout.drvLogDir, drvPath);
      if (!found) throw new LogNotFound(`build log of '${drvPath}' is not available`, { path: drvPath });
      const { createReadStream } = await import('node:fs');
      const { pipeline } = await import('node:stream/promises');
      if (!found.compressed) {
        await pipeline(createReadStream(found.path), process.stdout);
        return 0;
      }
      // Nix 2.8 bzip2s its logs; decompress with the host's bzip2 when there is one.
      const { spawn } = await import('node:child_process');
      const child = spawn('bzip2', ['-dc', found.path], { stdio: ['ignore', 'pipe', 'inherit'] });
      const failed = new Promise<Error>((resolve) => child.once('error', resolve));
      const done = pipeline(child.stdout, process.stdout).then(() => null);
      const r = await Promise.race([done, failed]);
      if (r instanceof Error) {
        throw new LogNotFound(`build log '${found.path}' is bzip2-compressed (written by Nix) and 'bzip2' cannot be run: ${r.message}`, {
          path: found.path,
        });
      }
      return 0;
    }));
}
