// The command table. Each command group lives in its own module with a
// `register(cli, ctx)` function; modules import heavy code lazily inside their
// actions, so `drvbox --version` and `--help` stay fast.
import { cac, type CAC } from 'cac';
import { isDrvboxError, UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import { CliContext, type GlobalFlags } from './context.js';

export type Register = (cli: CAC, ctx: () => CliContext) => void;

/** Command groups whose second word is part of the command name. */
const GROUPS = new Set(['store', 'derivation', 'hash', 'sandbox']);

/** Global flags that take a value (so the value is not the command word). */
const GLOBAL_VALUE_FLAGS = new Set(['--store', '--store-dir', '--storeDir']);

/**
 * cac registers options under camelCase names but hands mri the raw argv, so
 * a kebab-case boolean (`--closure-size PATH`) would swallow the next word.
 * Spelling every long flag in camelCase before parsing avoids that; `--no-x`
 * keeps its prefix so negation still works.
 */
export function camelFlag(a: string): string {
  const m = /^--(no-)?([a-z0-9]+(?:-[a-z0-9]+)*)(=.*)?$/s.exec(a);
  if (!m || !m[2]!.includes('-')) return a;
  const camel = m[2]!.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  return `--${m[1] ?? ''}${camel}${m[3] ?? ''}`;
}

interface PreParsed {
  argv: string[];
  options: Array<[string, string]>;
}

/**
 * cac knows neither two-valued options nor two-word commands: pull out every
 * `--option NAME VALUE` and join `store add` into one word before it parses.
 */
export function preParse(args: string[]): PreParsed {
  const out: string[] = [];
  const options: Array<[string, string]> = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    if (a === '--option') {
      const name = args[i + 1];
      const value = args[i + 2];
      if (name === undefined || value === undefined) throw new UsageError("'--option' needs a name and a value");
      options.push([name, value]);
      i += 2;
      continue;
    }
    out.push(camelFlag(a));
  }
  // The command word is the first argument that is neither a flag nor the
  // value of a global flag that takes one.
  let first = -1;
  for (let i = 0; i < out.length; i++) {
    const a = out[i]!;
    if (a === '--') break;
    if (GLOBAL_VALUE_FLAGS.has(a)) {
      i++;
      continue;
    }
    if (!a.startsWith('-')) {
      first = i;
      break;
    }
  }
  if (first >= 0 && GROUPS.has(out[first]!) && out[first + 1] !== undefined && !out[first + 1]!.startsWith('-')) {
    out.splice(first, 2, `${out[first]} ${out[first + 1]}`);
  }
  return { argv: out, options };
}

async function loadRegistrations(): Promise<Register[]> {
  const mods = await Promise.all([import('./register-all.js')]);
  return mods.flatMap((m) => m.registrations);
}

export async function run(argv: string[]): Promise<number> {
  const cli = cac('drvbox');
  let ctx: CliContext | null = null;
  let verbose = argv.includes('-v') || argv.includes('--verbose');
  try {
    const pre = preParse(argv.slice(2));
    cli.option('--store <root>', 'Store root (chroot-style ROOT/nix/store), unix://PATH or daemon [env DRVBOX_STORE]');
    cli.option('--store-dir <dir>', 'Logical store directory (default /nix/store)');
    cli.option('--option <name> <value>', 'Set a setting, e.g. --option sandbox false (repeatable)');
    cli.option('-v, --verbose', 'Verbose output, stack traces on errors');
    cli.option('--quiet', 'Print only results');
    cli.help();
    cli.version(VERSION, '--version');
    const getCtx = () => {
      if (!ctx) {
        const o = cli.options as Record<string, unknown>;
        const flags: GlobalFlags = {
          store: typeof o.store === 'string' ? o.store : undefined,
          storeDir: typeof o.storeDir === 'string' ? o.storeDir : undefined,
          verbose: Boolean(o.verbose),
          quiet: Boolean(o.quiet),
          options: pre.options,
        };
        if (o.store !== undefined && typeof o.store !== 'string') throw new UsageError("'--store' needs a value");
        ctx = new CliContext(flags);
      }
      return ctx;
    };
    for (const register of await loadRegistrations()) register(cli, getCtx);
    cli.parse(['node', 'drvbox', ...pre.argv], { run: false });
    verbose = Boolean((cli.options as Record<string, unknown>).verbose);
    if (cli.options.help || cli.options.version) return 0;
    if (!cli.matchedCommand) {
      if (cli.args.length > 0) throw new UsageError(`unknown command '${cli.args[0]}' (see 'drvbox --help')`);
      cli.outputHelp();
      return 1;
    }
    const result: unknown = await cli.runMatchedCommand();
    return typeof result === 'number' ? result : 0;
  } catch (e) {
    if (isDrvboxError(e)) {
      process.stderr.write(`error: ${e.message}\n`);
      if (verbose && e.stack) process.stderr.write(e.stack + '\n');
      return e.exitCode;
    }
    if (e instanceof Error && /^(Unknown option|missing required args|Unused args)/i.test(e.message)) {
      process.stderr.write(`error: ${e.message} (see 'drvbox --help')\n`);
      return 1;
    }
    throw e;
  } finally {
    const c = ctx as CliContext | null;
    if (c) await c.close();
  }
}
