// The command table. Each command parses its flags and calls the library.
import { cac } from 'cac';
import { isDrvboxError } from '../errors.js';
import { VERSION } from '../version.js';

export async function run(argv: string[]): Promise<number> {
  const cli = cac('drvbox');
  cli.option('--store <root>', 'Store root (chroot-style: ROOT/nix/store)');
  cli.option('--store-dir <dir>', 'Logical store directory (default /nix/store)');
  cli.option('--option <name> <value>', 'Set a setting (repeatable)');
  cli.option('-v, --verbose', 'Verbose output, stack traces on errors');
  cli.option('--quiet', 'Print only results');
  cli.help();
  cli.version(VERSION);
  try {
    cli.parse(argv, { run: false });
    if (!cli.matchedCommand && cli.args.length > 0) {
      console.error(`drvbox: unknown command '${cli.args[0]}' (see 'drvbox --help')`);
      return 1;
    }
    await cli.runMatchedCommand();
    return 0;
  } catch (e) {
    if (isDrvboxError(e)) {
      console.error(`drvbox: ${e.message}`);
      return e.exitCode;
    }
    throw e;
  }
}
