// `drvbox hash path|file`: NAR hash of a tree / flat hash of a file, printed
// as `nix hash path|file` prints them (SRI by default; --base32 and --base16
// print the bare digest, as nix-hash does).
import type { CAC } from 'cac';
import { UsageError } from '../errors.js';
import type { CliContext } from './context.js';
import { act } from './store.js';

interface HashOpts {
  type: string;
  base16?: boolean;
  base32?: boolean;
  base64?: boolean;
  sri?: boolean;
}

async function run(c: CliContext, kind: 'path' | 'file', path: string, opts: HashOpts): Promise<number> {
  const { parseHashAlgo, formatHash } = await import('../format/hash.js');
  const algo = parseHashAlgo(String(opts.type));
  const chosen = (['base16', 'base32', 'base64', 'sri'] as const).filter((k) => opts[k]);
  if (chosen.length > 1) throw new UsageError(`--${chosen[0]} and --${chosen[1]} conflict (give one)`);
  const { resolve } = await import('node:path');
  const { lstatSync } = await import('node:fs');
  const abs = resolve(c.cwd, path);
  try {
    lstatSync(abs);
  } catch {
    throw new UsageError(`cannot hash '${path}': it does not exist`);
  }
  const nar = await import('../store/nar-fs.js');
  const hash = kind === 'path' ? (await nar.hashPath(abs, algo)).hash : await nar.hashFile(abs, algo);
  switch (chosen[0]) {
    case 'base16':
      c.out(formatHash(hash, 'base16', false));
      break;
    case 'base32':
      c.out(formatHash(hash, 'nix32', false));
      break;
    case 'base64':
      c.out(formatHash(hash, 'base64', false));
      break;
    default:
      c.out(formatHash(hash, 'sri'));
  }
  return 0;
}

export function register(cli: CAC, ctx: () => CliContext): void {
  for (const kind of ['path', 'file'] as const) {
    cli
      .command(
        `hash ${kind} <path>`,
        kind === 'path'
          ? 'Hash the NAR serialisation of PATH (= nix-hash --type T PATH); prints SRI unless a base is given'
          : 'Hash the contents of the file PATH (= nix-hash --flat --type T PATH); prints SRI unless a base is given',
      )
      .option('--type <algo>', 'md5, sha1, sha256 or sha512', { default: 'sha256' })
      .option('--base16', 'Print the bare digest in hexadecimal')
      .option('--base32', "Print the bare digest in Nix's base-32")
      .option('--base64', 'Print the bare digest in base-64')
      .option('--sri', 'Print <type>-<base64> (the default)')
      .action(act(`hash ${kind}`, (path: string, opts: HashOpts) => run(ctx(), kind, path, opts)));
  }
}
