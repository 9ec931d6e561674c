// `drvbox derivation add FILE...` and `drvbox derivation show DRV...`.
import type { CAC } from 'cac';
import { UsageError } from '../errors.js';
import type { CliContext } from './context.js';
import { act } from './store.js';

export function register(cli: CAC, ctx: () => CliContext): void {
  cli
    .command(
      'derivation add [...files]',
      'Write derivations from .json files (completed as nix-instantiate would: output paths and their env values) or .drv files into the store; prints each .drv path',
    )
    .usage('derivation add FILE...\n\n  FILE: a .json derivation (see the README; a keyed file may hold several) or an ATerm .drv file. Prints each .drv path.')
    .action(act('derivation add', async (files: string[]) => {
      if (files.length === 0) throw new UsageError("'derivation add' needs a .json or .drv file");
      const c = ctx();
      const store = await c.openStore();
      const { addDerivationFile } = await import('../build/targets.js');
      const { resolve } = await import('node:path');
      for (const f of files) for (const p of await addDerivationFile(store, resolve(c.cwd, f))) c.out(p);
      return 0;
    }));

  cli
    .command(
      'derivation show [...paths]',
      "Print derivations as JSON keyed by .drv path, exactly as 'nix show-derivation' (an output path shows its deriver)",
    )
    .usage('derivation show PATH...\n\n  PATH: a .drv store path, or an output path (its deriver is shown). Prints JSON keyed by .drv path, in path order.')
    .option('-r, --recursive', 'Also show the input derivations, recursively')
    .action(act('derivation show', async (paths: string[], opts: { recursive?: boolean }) => {
      if (paths.length === 0) throw new UsageError("'derivation show' needs at least one path");
      const c = ctx();
      const store = await c.openStore();
      const { isDerivationPath } = await import('../format/store-path.js');
      const { printDerivationsJson } = await import('../format/derivation-json.js');
      const { InvalidPath } = await import('../store/errors.js');
      const wanted = new Set<string>();
      for (const arg of paths) {
        const p = store.followLinksToStorePath(arg, c.cwd);
        if (isDerivationPath(p)) {
          if (!store.isValidPath(p)) throw new InvalidPath(`path '${p}' is not valid`, { path: p });
          wanted.add(p);
          continue;
        }
        const deriver = store.queryPathInfo(p)?.deriver ?? null;
        if (!deriver || !store.isValidPath(deriver)) throw new InvalidPath(`path '${p}' has no valid deriver`, { path: p });
        wanted.add(deriver);
      }
      if (opts.recursive) {
        const stack = [...wanted];
        while (stack.length > 0) {
          for (const input of store.readDerivation(stack.pop()!).inputDrvs.keys()) {
            if (!wanted.has(input)) {
              wanted.add(input);
              stack.push(input);
            }
          }
        }
      }
      const sorted = [...wanted].sort();
      process.stdout.write(printDerivationsJson(sorted.map((p) => [p, store.readDerivation(p)] as const), store.storeDir));
      return 0;
    }));
}
