#!/usr/bin/env node
// Bundles the CLI for start-up time, after tsc (`npm run build`, and so
// `npm install`'s prepare). Writes dist/bundle/cli/:
//   drvbox.cjs (+ .map)  src/cli/main.ts and everything it imports, one
//                        CommonJS file: no ESM loader, no module resolution
//                        of ~150 files; modules reached through import()
//                        still initialise lazily (esbuild wraps them)
//   main.cjs             the `drvbox` bin (src/cli/bundle-entry.cts): answers
//                        --version at once, else runs drvbox.cjs through V8's
//                        code cache
//   main.js              `import './main.cjs'`, for what starts `<dir>/main.js`
//                        (the daemon's service files)
//   drvbox.cjs.<hash>.v8-<version>-<arch>.cache
//                        the code cache, trained here by a few commands on a
//                        throwaway store (best effort: without it the first
//                        run writes it)
// The files sit at the same depth under dist/ as tsc's output, so code that
// finds the launcher or profiles/ from import.meta.url finds them from here.
// Without esbuild (no dev dependencies) main.cjs loads the unbundled CLI.
//
//   node src/cli/build-bundle.mjs [dist/<a>/<b>]   (tests bundle into another dir of that depth)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
const outDir = process.argv[2] ?? join(root, 'dist', 'bundle', 'cli');
if (relative(join(root, 'dist'), outDir).split('/').length !== 2) throw new Error(`${outDir} is not two levels under dist/`);
const bundle = join(outDir, 'drvbox.cjs');
const entry = join(outDir, 'main.cjs');

/**
 * Packages loaded from node_modules at run time; the rest is bundled.
 * better-sqlite3's JavaScript is bundled (src/store/db.ts hands it its addon
 * by path); koffi finds its own addon, plist is for macOS only.
 */
const EXTERNAL = ['koffi', 'plist'];

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'main.js'), "import './main.cjs';\n");

let esbuild;
try {
  esbuild = await import('esbuild');
} catch (e) {
  const unbundled = relative(outDir, join(root, 'dist', 'src', 'cli', 'main.js'));
  writeFileSync(entry, `#!/usr/bin/env node\n// esbuild was not installed: the unbundled CLI.\nimport('./${unbundled}');\n`);
  chmodSync(entry, 0o755);
  console.warn(`drvbox: esbuild is not installed (${e.code ?? e.message}); the CLI runs unbundled (slower start-up).`);
  process.exit(0);
}

/**
 * Node built-ins that are not already loaded when a script starts. A module
 * that imports one loads it at start-up even when the command never uses it
 * (a no-op build paid for crypto, net, streams, child_process: ~12% of its
 * CPU profile). Imports of these resolve to a stand-in whose exports are
 * getters that load the built-in on first use; call sites read them at use
 * time, and classes are the real ones (instanceof, extends).
 */
const LAZY_BUILTINS = ['crypto', 'net', 'stream', 'stream/promises', 'child_process', 'timers/promises', 'os', 'fs/promises', 'string_decoder', 'readline', 'zlib', 'http', 'https', 'worker_threads'];

const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(build) {
    const filter = new RegExp(`^(node:)?(${LAZY_BUILTINS.map((b) => b.replace('/', '\\/')).join('|')})$`);
    build.onResolve({ filter }, (a) =>
      a.namespace === 'lazy-builtin'
        ? { path: a.path.startsWith('node:') ? a.path : `node:${a.path}`, external: true } // the stand-in's own require
        : { path: a.path.replace(/^node:/, ''), namespace: 'lazy-builtin' },
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, async (a) => {
      const names = Object.keys(await import(`node:${a.path}`)).filter((n) => n !== 'default' && /^[A-Za-z_$][\w$]*$/.test(n));
      const lines = [`let m; const load = () => (m ??= require('node:${a.path}'));`];
      for (const n of names) lines.push(`Object.defineProperty(exports, '${n}', { enumerable: true, get: () => load().${n} });`);
      return { contents: lines.join('\n'), loader: 'js' };
    });
  },
};

await esbuild.build({
  absWorkingDir: root,
  entryPoints: ['src/cli/main.ts'],
  plugins: [lazyBuiltins],
  outfile: bundle,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  // import.meta.url of every module is the bundle's URL (same dir depth as tsc's files).
  banner: { js: 'var __drvbox_import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
  define: { 'import.meta.url': '__drvbox_import_meta_url' },
  // import('node:fs') and the like become require(): the ESM loader never starts.
  supported: { 'dynamic-import': false },
  // Less to parse; the source map gives -v traces in the TypeScript sources.
  // No keepNames: its __name() calls ran at every closure creation (1.6% of
  // a large build's main thread); nothing reads function names, and error
  // names come from defineError.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  sourcesContent: false,
  legalComments: 'none',
  logLevel: 'warning',
});
// main.ts's hashbang would be a syntax error inside the CommonJS wrapper;
// blank it, keeping the line so the source map stays aligned.
let code = readFileSync(bundle, 'utf8');
if (code.startsWith('#!')) code = code.slice(code.indexOf('\n'));
writeFileSync(bundle, code);

const { VERSION } = await import(pathToFileURL(join(root, 'dist', 'src', 'version.js')).href);
await esbuild.build({
  absWorkingDir: root,
  entryPoints: ['src/cli/bundle-entry.cts'],
  outfile: entry,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  banner: { js: '#!/usr/bin/env node' },
  define: {
    __DRVBOX_VERSION__: JSON.stringify(VERSION),
    __DRVBOX_BUNDLE__: JSON.stringify('drvbox.cjs'),
    __DRVBOX_BUNDLE_HASH__: JSON.stringify(createHash('sha256').update(code).digest('hex').slice(0, 16)),
  },
  logLevel: 'warning',
});
chmodSync(entry, 0o755);

train();

/**
 * Fills the code cache with what common commands compile: help, an
 * unsandboxed build of a trivial derivation in a throwaway store dir, its
 * no-op rebuild, path-info, and (where this host can sandbox) a sandboxed
 * build of a derivation and its dependent with -j2, the sandbox's code and
 * the prestarted dependent's. Each run adds to the cache
 * (DRVBOX_CODE_CACHE=write).
 */
function train() {
  const tmp = mkdtempSync(join(tmpdir(), 'drvbox-code-cache-'));
  try {
    const os = process.platform === 'darwin' ? 'darwin' : 'linux';
    const system = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-${os}`;
    const drv = join(tmp, 'train.json');
    writeFileSync(
      drv,
      JSON.stringify({ name: 'train', system, builder: '/bin/sh', args: ['-c', 'echo trained > $out'], env: { name: 'train', system, builder: '/bin/sh' } }),
    );
    const env = { ...process.env, HOME: tmp, XDG_CONFIG_HOME: tmp, XDG_DATA_HOME: tmp, TMPDIR: tmp, DRVBOX_CODE_CACHE: 'write' };
    for (const k of ['DRVBOX_STORE', 'DRVBOX_CONFIG', 'NODE_OPTIONS']) delete env[k];
    const store = ['--store-dir', join(tmp, 'store')];
    let out = '';
    const runs = [
      () => ['--help'],
      () => ['build', '--help'],
      () => [...store, 'build', '--sandbox', 'false', drv],
      () => [...store, 'build', '--sandbox', 'false', '--quiet', drv],
      () => [...store, 'path-info', '--json', '-r', out],
    ];
    for (const argsOf of runs) {
      const args = argsOf();
      const r = spawnSync(process.execPath, [entry, ...args], { env, encoding: 'utf8' });
      if (r.status !== 0) {
        console.warn(`drvbox: code cache training stopped at 'drvbox ${args.join(' ')}' (${r.status ?? r.signal}): ${(r.stderr || '').trim().split('\n')[0]}`);
        return;
      }
      out = r.stdout.trim().split('\n').pop() ?? '';
    }
    // Sandboxed, best effort: a host without user namespaces (or macOS
    // without sandbox-exec) just leaves this part to the first real build.
    const deps = join(root, 'examples', 'dependency.json');
    const sandboxed = ['--store', join(tmp, 'root'), 'build', '--sandbox', 'true', '-j', '2', '--quiet', deps];
    spawnSync(process.execPath, [entry, ...sandboxed], { env, encoding: 'utf8' });
  } finally {
    spawnSync('chmod', ['-R', 'u+w', tmp]);
    rmSync(tmp, { recursive: true, force: true });
  }
}
