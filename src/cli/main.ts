#!/usr/bin/env node
// Entry point of the `drvbox` command. Kept tiny so start-up stays fast: the
// command table is loaded lazily by ./commands.js.
import { run } from './commands.js';

run(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`drvbox: internal error: ${err instanceof Error ? err.stack : String(err)}`);
    process.exitCode = 1;
  },
);
