#!/usr/bin/env node
// Entry point of the `drvbox` command. Kept tiny so start-up stays fast:
// `--version` is answered before anything else loads, and the command table
// (./commands.js, cac, every command group) is imported only after that.
import { VERSION } from '../version.js';

const args = process.argv.slice(2);
if (args.length === 1 && args[0] === '--version') {
  // The line cac prints for --version.
  process.stdout.write(`drvbox/${VERSION} ${process.platform}-${process.arch} node-${process.version}\n`);
} else {
  // Stack traces of -v point into the TypeScript sources (the bundle and
  // tsc's output both carry source maps); only modules loaded after this
  // call are mapped, which is all of drvbox but this file.
  if (args.includes('-v') || args.includes('--verbose')) process.setSourceMapsEnabled(true);
  import('./commands.js')
    .then(({ run }) => run(process.argv))
    .then(
      (code) => {
        process.exitCode = code;
      },
      (err: unknown) => {
        console.error(`drvbox: internal error: ${err instanceof Error ? err.stack : String(err)}`);
        process.exitCode = 1;
      },
    );
}
