// The `drvbox` bin of the bundled CLI (built by build-bundle.mjs into
// dist/bundle/cli/main.cjs, next to the bundle drvbox.cjs). Node 20 has no
// compile cache for modules, so this entry keeps one itself: it compiles the
// bundle with vm.Script and V8's code cache (bytecode of the functions a
// typical run needs), which spares most of the parsing and compiling that
// otherwise dominates a short command such as a no-op build.
//
// The cache file is named after the bundle's content hash and V8's version:
// V8 checks only the source length, so a rebuilt bundle must never meet an
// old cache. It is written at exit when it was missing or V8 rejected it
// (another Node), and only where the install dir is writable; concurrent
// writers each rename their own temp file into place.
//
// `--version` is answered without loading the bundle; with -v (stack traces
// in the TypeScript sources through the source map) or DRVBOX_CODE_CACHE=off
// the bundle is loaded by Node's own loader, without the cache.
// Modules are required where they are used, not here: node:module and
// node:vm are not loaded yet when a script starts, and --version needs neither.
import type { Script } from 'node:vm';

// Filled in by build-bundle.mjs (esbuild `define`).
declare const __DRVBOX_VERSION__: string;
declare const __DRVBOX_BUNDLE__: string;
declare const __DRVBOX_BUNDLE_HASH__: string;

const args = process.argv.slice(2);
const bundle = `${__dirname}/${__DRVBOX_BUNDLE__}`;
const mode = process.env.DRVBOX_CODE_CACHE;

function saveCache(script: Script, file: string): void {
  const { accessSync, constants, renameSync, unlinkSync, writeFileSync } = require('node:fs') as typeof import('node:fs');
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    accessSync(__dirname, constants.W_OK);
    writeFileSync(tmp, script.createCachedData());
    renameSync(tmp, file);
  } catch {
    // a read-only install compiles every time
    try {
      unlinkSync(tmp);
    } catch {
      // never written
    }
  }
}

/**
 * For a process that will run builds: V8's optimising compiler skips
 * functions over 8 KiB of bytecode (V8's default: 60 KiB). A drvbox process
 * lives seconds, and its few huge functions (runGoal, ~12 KiB: one call per
 * derivation) cost 100+ ms of compiler time each time they are optimised,
 * more than optimising saves them; they were also deoptimised and recompiled
 * whenever a goal took a path the first ones had not. The hot loops
 * (hashing, scanning, NAR) are small. Measured on a 1,000-derivation DAG:
 * 3.74 -> 3.27 ms of drvbox's CPU per derivation; a sandboxed chain of 30:
 * 285 -> 256 ms.
 *
 * The scheduler calls it (src/build/v8-tuning.ts) once it has something to
 * build: loading node:v8 costs ~2 ms, which other commands need not pay. V8's
 * code cache records the flags it was made with, so it is installed only in
 * runs that will not write the cache.
 */
function installV8Tuning(): void {
  (globalThis as { [k: symbol]: unknown })[Symbol.for('drvbox.tuneV8')] = () => {
    const { setFlagsFromString } = require('node:v8') as typeof import('node:v8');
    setFlagsFromString('--max-optimized-bytecode-size=8192');
  };
}

function runCached(): void {
  const { readFileSync } = require('node:fs') as typeof import('node:fs');
  const { createRequire, wrap } = require('node:module') as typeof import('node:module');
  const { Script } = require('node:vm') as typeof import('node:vm');
  const cacheFile = `${bundle}.${__DRVBOX_BUNDLE_HASH__}.v8-${process.versions.v8}-${process.arch}.cache`;
  // The bundle is ASCII (esbuild escapes the rest): latin1 decodes it fastest, into a one-byte string.
  const source = readFileSync(bundle, 'latin1');
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    // first run of this bundle with this Node
  }
  const script = new Script(wrap(source), { filename: bundle, ...(cachedData ? { cachedData } : {}) });
  // `write`: the build's training runs add what they compiled to the cache.
  if (cachedData === undefined || script.cachedDataRejected || mode === 'write') process.once('exit', () => saveCache(script, cacheFile));
  else installV8Tuning();
  const mod = { exports: {} };
  const fn = script.runInThisContext() as (...a: unknown[]) => void;
  fn.call(mod.exports, mod.exports, createRequire(bundle), mod, bundle, __dirname);
}

if (args.length === 1 && args[0] === '--version') {
  // The line cac prints for --version (src/cli/main.ts answers the same).
  process.stdout.write(`drvbox/${__DRVBOX_VERSION__} ${process.platform}-${process.arch} node-${process.version}\n`);
} else if (mode === 'off' || args.includes('-v') || args.includes('--verbose')) {
  process.setSourceMapsEnabled(true);
  installV8Tuning();
  require(bundle);
} else {
  runCached();
}
