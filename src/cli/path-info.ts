// `drvbox path-info`: what the store knows about paths, as `nix path-info`
// prints it (with --json: the same fields, order and encodings as Nix 2.8),
// from a local store or through a daemon (`--store unix://PATH`, `daemon`).
import type { CAC } from 'cac';
import { UsageError } from '../errors.js';
import type { CliContext } from './context.js';
import { act } from './store.js';
import type { PathInfo } from '../store/path-info.js';

/** What path-info reads: a LocalStore (synchronous) or a daemon's RemoteStore. */
interface PathInfoSource {
  followLinksToStorePath(arg: string, cwd: string): string;
  queryPathInfo(path: string): PathInfo | null | Promise<PathInfo | null>;
  /** Throws for an invalid path. */
  computeClosure(paths: Iterable<string>): Set<string> | Promise<Set<string>>;
  closureSize(path: string): number | Promise<number>;
}

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
      // a local store answers synchronously, a daemon asynchronously: await both
      const store: PathInfoSource = c.location.kind === 'daemon' ? await (await import('../daemon/remote-store.js')).openRemoteStore(c) : await c.openStore();
      const { pathInfoJson } = await import('../store/path-info.js');
      const { InvalidPath } = await import('../store/errors.js');
      const args = paths.map((p) => store.followLinksToStorePath(p, c.cwd));
      let selected = new Set(args);
      if (opts.recursive) selected = await store.computeClosure(args);
      // Nix prints a StorePathSet: sorted, each path once.
      const sorted = [...selected].sort();
      if (opts.json) {
        const list: Record<string, unknown>[] = [];
        const invalid: string[] = [];
        for (const p of sorted) {
          const info = await store.queryPathInfo(p);
          if (!info) {
            invalid.push(p);
            list.push({ path: p, valid: false });
          } else list.push(pathInfoJson(info, opts.closureSize ? await store.closureSize(p) : undefined));
        }
        c.out(JSON.stringify(list));
        if (invalid.length > 0) c.warn(`not valid: ${invalid.join(', ')}`);
        return 0;
      }
      const width = Math.max(...sorted.map((p) => p.length));
      for (const p of sorted) {
        const info = await store.queryPathInfo(p);
        if (!info) throw new InvalidPath(`path '${p}' is not valid`, { path: p });
        let line = p;
        if (opts.size || opts.closureSize) line += ' '.repeat(width - p.length);
        if (opts.size) line += '\t' + String(info.narSize).padStart(11);
        if (opts.closureSize) line += '\t' + String(await store.closureSize(p)).padStart(11);
        c.out(line);
      }
      return 0;
    }));
}
