// `drvbox path-info`: what the store knows about paths, as `nix path-info`
// prints it (with --json: the same fields, order and encodings as Nix 2.8).
import type { CAC } from 'cac';
import { UsageError } from '../errors.js';
import type { CliContext } from './context.js';
import { act } from './store.js';

export function register(cli: CAC, ctx: () => CliContext): void {
  cli
    .command('path-info [...paths]', 'Show the registered information about store paths (as nix path-info)')
    .option('--json', 'Print a JSON list like nix path-info --json (narHash in SRI form)')
    .option('-r, --recursive', 'Apply to the closure of the given paths')
    .option('-s, --size', 'Print the NAR size of each path')
    .option('-S, --closure-size', 'Print the sum of the NAR sizes of the closure of each path')
    .action(act('path-info', async (paths: string[], opts: { json?: boolean; recursive?: boolean; size?: boolean; closureSize?: boolean }) => {
      const c = ctx();
      const { fixKebabBooleans } = await import('./store.js');
      fixKebabBooleans(opts as Record<string, unknown>, ['closureSize'], paths);
      if (paths.length === 0) throw new UsageError("'path-info' needs at least one path");
      const store = await c.openStore();
      const { pathInfoJson } = await import('../store/path-info.js');
      const { InvalidPath } = await import('../store/errors.js');
      const args = paths.map((p) => store.followLinksToStorePath(p, c.cwd));
      let selected = new Set(args);
      if (opts.recursive) {
        for (const p of args) store.requirePathInfo(p);
        selected = store.computeClosure(args);
      }
      // Nix prints a StorePathSet: sorted, each path once.
      const sorted = [...selected].sort();
      if (opts.json) {
        const list = sorted.map((p) => {
          const info = store.queryPathInfo(p);
          if (!info) return { path: p, valid: false };
          return pathInfoJson(info, opts.closureSize ? store.closureSize(p) : undefined);
        });
        c.out(JSON.stringify(list));
        const invalid = sorted.filter((p) => !store.isValidPath(p));
        if (invalid.length > 0) c.warn(`not valid: ${invalid.join(', ')}`);
        return 0;
      }
      const width = Math.max(...sorted.map((p) => p.length));
      for (const p of sorted) {
        const info = store.queryPathInfo(p);
        if (!info) throw new InvalidPath(`path '${p}' is not valid`, { path: p });
        let line = p;
        if (opts.size || opts.closureSize) line += ' '.repeat(width - p.length);
        if (opts.size) line += '\t' + String(info.narSize).padStart(11);
        if (opts.closureSize) line += '\t' + String(store.closureSize(p)).padStart(11);
        c.out(line);
      }
      return 0;
    }));
}
