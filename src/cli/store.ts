// `drvbox store add|import|export|query|verify|gc|dump|restore`. Thin: parse
// flags, call src/store, print. Heavy modules load inside the actions.
// `store add` also works through a daemon (`--store unix://PATH`, `daemon`).
import type { CAC } from 'cac';
import { UsageError } from '../errors.js';
import type { CliContext } from './context.js';

/**
 * Standard input as chunks of one reused 1 MiB buffer: each chunk is only
 * valid until the next is requested (the store consumes every chunk
 * synchronously), so reading a stream of any size allocates nothing per
 * chunk and the peak RSS stays flat. process.stdin is left untouched (it
 * would switch fd 0 to non-blocking mode).
 */
export async function* stdinChunks(): AsyncGenerator<Uint8Array> {
  const { read } = await import('node:fs');
  const buf = Buffer.allocUnsafe(1 << 20);
  for (;;) {
    let n: number;
    try {
      n = await new Promise<number>((resolve, reject) => read(0, buf, 0, buf.length, null, (e, got) => (e ? reject(e) : resolve(got))));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') {
        await new Promise((r) => setTimeout(r, 2));
        continue;
      }
      if ((e as NodeJS.ErrnoException).code === 'EOF') return;
      throw e;
    }
    if (n === 0) return;
    yield buf.subarray(0, n);
  }
}

/** Runs a command body; raw errno errors become one-line typed errors naming the command. */
export async function guard(what: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    // The reader of stdout went away (`| head`): stop quietly, like SIGPIPE would.
    if ((e as NodeJS.ErrnoException).code === 'EPIPE') return 0;
    const { asStoreIoError } = await import('../store/errors.js');
    throw asStoreIoError(e, what);
  }
}

/** Wraps an action so that raw errno errors come out as typed one-line errors. */
export function act<A extends any[]>(what: string, fn: (...args: A) => Promise<number>): (...args: A) => Promise<number> {
  return (...args: A) => guard(what, () => fn(...args));
}

/**
 * cac 7 registers boolean options under their camelCase name only, so mri
 * treats `--kebab-case` flags as taking a value and swallows the next
 * argument. Give such a swallowed argument back to the positionals.
 */
export function fixKebabBooleans(opts: Record<string, unknown>, names: string[], positionals: string[]): void {
  for (const n of names) {
    const v = opts[n];
    if (v !== undefined && typeof v !== 'boolean') {
      positionals.unshift(String(v));
      opts[n] = true;
    }
  }
}

function asArray(v: unknown): string[] {
  if (v === undefined || v === null || v === false) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

function formatBytes(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(2)} MiB`;
}

export function register(cli: CAC, ctx: () => CliContext): void {
  cli
    .command('store add <path>', 'Add a file or directory to the store; prints its store path')
    .option('--name <name>', 'Name of the store path (default: the base name of PATH)')
    .option('--mode <mode>', 'nar: hash the NAR serialisation (like nix-store --add); flat: hash the contents of a regular file (like nix-store --add-fixed); text: a text file, as builtins.toFile', { default: 'nar' })
    .option('--type <algo>', 'Hash algorithm of the content address for nar/flat: md5, sha1, sha256 or sha512', { default: 'sha256' })
    .option('--reference <path>', 'A store path the new path refers to (text, and nar with sha256; repeatable)')
    .option('--repair', 'Rewrite the contents even when the path is already valid')
    .action(act('store add', async (path: string, opts: { name?: string; mode: string; type: string; reference?: unknown; repair?: boolean }) => {
      const c = ctx();
      const mode = opts.mode;
      if (mode !== 'nar' && mode !== 'flat' && mode !== 'text') {
        throw new UsageError(`invalid --mode '${mode}' (expected nar, flat or text)`);
      }
      const { parseHashAlgo } = await import('../format/hash.js');
      const hashAlgo = parseHashAlgo(String(opts.type));
      if (mode === 'text' && hashAlgo !== 'sha256') throw new UsageError(`--mode text always uses sha256, not '${hashAlgo}'`);
      const { resolve } = await import('node:path');
      const addOpts = {
        ...(opts.name !== undefined ? { name: String(opts.name) } : {}),
        method: mode === 'nar' ? ('recursive' as const) : (mode as 'flat' | 'text'),
        hashAlgo,
        repair: Boolean(opts.repair),
      };
      if (c.location.kind === 'daemon') {
        // through a daemon: the contents are streamed to it
        const { openRemoteStore } = await import('../daemon/remote-store.js');
        const remote = await openRemoteStore(c);
        const refs = asArray(opts.reference).map((r) => remote.followLinksToStorePath(r, c.cwd));
        c.out(await remote.addPath(resolve(c.cwd, path), { ...addOpts, references: refs }));
        return 0;
      }
      const store = await c.openStore();
      const refs = asArray(opts.reference).map((r) => store.followLinksToStorePath(r, c.cwd));
      const { addPathToStore } = await import('../store/add.js');
      const sp = await addPathToStore(store, resolve(c.cwd, path), { ...addOpts, references: refs });
      c.out(sp);
      return 0;
    }));

  cli
    .command('store import', 'Import a nix-store --export stream from stdin; prints the imported paths (all or nothing)')
    .action(act('store import', async () => {
      const c = ctx();
      const store = await c.openStore();
      const { importPaths } = await import('../store/import.js');
      const res = await importPaths(store, stdinChunks());
      for (const p of res.paths) c.out(p);
      return 0;
    }));

  cli
    .command('store export [...paths]', 'Write the given valid paths (not their closure) to stdout as a nix-store --export stream, references first')
    .action(act('store export', async (paths: string[]) => {
      const c = ctx();
      if (paths.length === 0) throw new UsageError("'store export' needs at least one path");
      const store = await c.openStore();
      const sps = paths.map((p) => store.followLinksToStorePath(p, c.cwd));
      for (const p of sps) store.requirePathInfo(p);
      const { exportPathsToFd } = await import('../store/export.js');
      await exportPathsToFd(store, sps, 1);
      return 0;
    }));

  cli
    .command('store query [...paths]', 'Query the database about store paths (one query flag; default --outputs)')
    .option('--references', 'The paths the given paths refer to')
    .option('--referrers', 'The valid paths that refer to the given paths')
    .option('-R, --requisites', 'The closure of the given paths (references first)')
    .option('--include-outputs', 'With --requisites: also the outputs of derivations in the closure')
    .option('--deriver', "The deriver of each path ('unknown-deriver' when none)")
    .option('--outputs', 'For a .drv, its output paths; for any other path, the path itself')
    .action(act('store query',
      async (
        paths: string[],
        opts: { references?: boolean; referrers?: boolean; requisites?: boolean; deriver?: boolean; outputs?: boolean; includeOutputs?: boolean },
      ) => {
        const c = ctx();
        fixKebabBooleans(opts as Record<string, unknown>, ['includeOutputs'], paths);
        const kinds = (['references', 'referrers', 'requisites', 'deriver', 'outputs'] as const).filter((k) => opts[k]);
        if (kinds.length > 1) throw new UsageError(`query flags --${kinds[0]} and --${kinds[1]} conflict (give one)`);
        const kind = kinds[0] ?? 'outputs';
        if (paths.length === 0) throw new UsageError("'store query' needs at least one path");
        const store = await c.openStore();
        const { isDerivationPath } = await import('../format/store-path.js');
        const sps = paths.map((p) => store.followLinksToStorePath(p, c.cwd));
        if (kind === 'deriver') {
          for (const p of sps) c.out(store.queryDeriver(p) ?? 'unknown-deriver');
          return 0;
        }
        if (kind === 'outputs') {
          for (const p of sps) {
            if (!isDerivationPath(p)) {
              store.requirePathInfo(p);
              c.out(p);
              continue;
            }
            const outs = store.queryPartialDerivationOutputMap(p);
            for (const [name, o] of [...outs].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
              if (o === null) throw new UsageError(`output '${name}' of '${p}' has no known path yet (a content-addressed output not built)`);
              c.out(o);
            }
          }
          return 0;
        }
        const set = new Set<string>();
        for (const p of sps) {
          store.requirePathInfo(p);
          if (kind === 'requisites') for (const q of store.computeClosure([p], { includeOutputs: Boolean(opts.includeOutputs) })) set.add(q);
          else if (kind === 'references') for (const q of store.queryReferences(p)) set.add(q);
          else for (const q of store.queryReferrers(p)) set.add(q);
        }
        for (const p of store.topoSortPaths(set).reverse()) c.out(p);
        return 0;
      },
    ));

  cli
    .command('store verify', 'Check that every valid path exists (and with --check-contents, has its registered hash); prints problems, exit 1 if any remain')
    .option('--check-contents', 'Recompute the NAR hash of every valid path')
    .option('--repair', 'Fix what can be fixed: unregister vanished paths, fill in missing hashes and sizes, drop corrupt .links entries')
    .action(act('store verify', async (opts: { checkContents?: boolean; repair?: boolean }) => {
      const c = ctx();
      const extra: string[] = [];
      fixKebabBooleans(opts as Record<string, unknown>, ['checkContents'], extra);
      if (extra.length > 0) throw new UsageError(`'store verify' takes no arguments (got '${extra[0]}')`);
      const store = await c.openStore();
      const { verifyStore } = await import('../store/verify.js');
      const res = await verifyStore(store, {
        checkContents: Boolean(opts.checkContents),
        repair: Boolean(opts.repair),
        log: (m) => c.info(m),
      });
      for (const p of res.problems) c.out(p.repaired ? `${p.message} [repaired: ${p.repaired}]` : p.message);
      if (res.errors) {
        c.warn(`not all store errors were fixed (${res.problems.filter((p) => !p.repaired).length} remain)`);
        return 1;
      }
      return 0;
    }));

  cli
    .command('store gc', 'Delete store paths not reachable from a GC root, a temp root of a live process, or a running program; prints them and the bytes freed')
    .option('--dry-run', 'Only print what would be deleted')
    .option('--max-freed <bytes>', 'Stop after freeing this many bytes')
    .option('--no-runtime-roots', 'Do not scan running processes for store paths they use')
    .action(act('store gc', async (opts: { dryRun?: boolean; maxFreed?: string; runtimeRoots?: boolean }) => {
      const c = ctx();
      const extra: string[] = [];
      fixKebabBooleans(opts as Record<string, unknown>, ['dryRun'], extra);
      if (extra.length > 0) throw new UsageError(`'store gc' takes no arguments (got '${extra[0]}')`);
      let maxFreed: number | undefined;
      if (opts.maxFreed !== undefined) {
        if (!/^\d+$/.test(String(opts.maxFreed))) throw new UsageError(`invalid --max-freed '${opts.maxFreed}' (expected a number of bytes)`);
        maxFreed = Number(opts.maxFreed);
      }
      const store = await c.openStore();
      const { collectGarbage } = await import('../store/gc.js');
      const res = await collectGarbage(store, {
        action: opts.dryRun ? 'returnDead' : 'deleteDead',
        ...(maxFreed !== undefined ? { maxFreed } : {}),
        runtimeRoots: opts.runtimeRoots !== false,
        log: (m) => c.info(m),
      });
      for (const p of res.paths) c.out(p);
      c.out(
        opts.dryRun
          ? `${res.paths.length} store paths would be deleted, ${formatBytes(res.bytesFreed)} would be freed`
          : `${res.paths.length} store paths deleted, ${formatBytes(res.bytesFreed)} freed`,
      );
      return 0;
    }));

  cli
    .command('store dump <path>', 'Write the NAR serialisation of PATH to stdout (a store path or any file-system path)')
    .action(act('store dump', async (path: string) => {
      const c = ctx();
      const { resolve } = await import('node:path');
      let real = resolve(c.cwd, path);
      if (c.location.kind === 'local') {
        const loc = c.location;
        const inStore = (dir: string) => real === dir || real.startsWith(dir + '/');
        if (loc.root !== null && inStore(loc.storeDir) && !inStore(loc.realStoreDir)) {
          real = loc.realStoreDir + real.slice(loc.storeDir.length);
        }
      }
      const { streamNar } = await import('../store/nar-fs.js');
      const { writeAllSync } = await import('../store/export.js');
      const { lstatSync } = await import('node:fs');
      try {
        lstatSync(real);
      } catch {
        throw new UsageError(`cannot dump '${path}': it does not exist`);
      }
      await streamNar(real, (chunk) => writeAllSync(1, chunk));
      return 0;
    }));

  cli
    .command('store restore <path>', 'Read a NAR from stdin and materialise it at PATH (which must not exist)')
    .action(act('store restore', async (path: string) => {
      const c = ctx();
      const { resolve } = await import('node:path');
      const { existsSync, lstatSync } = await import('node:fs');
      const target = resolve(c.cwd, path);
      let exists = existsSync(target);
      try {
        lstatSync(target);
        exists = true;
      } catch {
        /* good: absent */
      }
      if (exists) {
        const { RestoreTargetExists } = await import('../store/errors.js');
        throw new RestoreTargetExists(`cannot restore to '${target}': it already exists`, { path: target });
      }
      const { restoreNar } = await import('../store/nar-fs.js');
      await restoreNar(target, stdinChunks());
      return 0;
    }));
}
