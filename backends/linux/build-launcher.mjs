#!/usr/bin/env node
// Compiles backends/linux/launcher.c into dist/launcher/drvbox-launcher.
// Runs from `npm install` (prepare). Only Linux needs it; a missing C
// compiler is reported clearly and does not fail the install: `drvbox doctor`
// repeats the message and `sandbox-fallback` decides what builds do.
// Also compiles src/native/nar-dump.c into dist/launcher/drvbox-nar-dump,
// the fast NAR serialiser hashPath uses for directories; without it hashing
// runs in JS (same results), so its failure is only recorded
// (nar-dump-status.json), and printed only when the compiler itself failed.
// And src/native/addon.c into dist/launcher/drvbox-native.node (flock and
// xattrs without koffi; the same fallback rule, native-status.json).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
const src = join(root, 'backends', 'linux', 'launcher.c');
const outDir = join(root, 'dist', 'launcher');
const out = join(outDir, 'drvbox-launcher');
const statusFile = join(outDir, 'build-status.json');

if (process.platform !== 'linux') process.exit(0);
mkdirSync(outDir, { recursive: true });
if (!existsSync(src)) {
  writeFileSync(statusFile, JSON.stringify({ ok: false, reason: 'launcher.c not present' }));
  process.exit(0);
}
const cc = process.env.CC || 'cc';

/**
 * Compiles an optional helper from src/native/: without it the same work is
 * done in JS (or through koffi), so a failure is only recorded in its status
 * file, and printed only when the compiler itself failed.
 */
function buildOptional({ source, output, status, flags, libs = [], without }) {
  const src = join(root, 'src', 'native', source);
  const out = join(outDir, output);
  const statusFile = join(outDir, status);
  const r = existsSync(src)
    ? spawnSync(cc, [...flags, '-Wall', '-Wextra', '-Werror', '-std=gnu11', '-o', out + '.tmp', src, ...libs], {
        stdio: ['ignore', 'inherit', 'pipe'],
        encoding: 'utf8',
      })
    : null;
  if (r && !r.error && r.status === 0) {
    spawnSync('mv', [out + '.tmp', out]);
    writeFileSync(statusFile, JSON.stringify({ ok: true, path: out, compiler: cc, at: new Date().toISOString() }));
    return;
  }
  rmSync(out + '.tmp', { force: true });
  rmSync(out, { force: true });
  const reason = !r ? `${source} not present` : r.error ? `no C compiler found (${cc}: ${r.error.code ?? r.error.message})` : `${cc} failed: ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`;
  writeFileSync(statusFile, JSON.stringify({ ok: false, reason, compiler: cc, at: new Date().toISOString() }));
  if (r && !r.error) console.warn(`drvbox: ${without}: ${reason}.`);
}

buildOptional({
  source: 'nar-dump.c',
  output: 'drvbox-nar-dump',
  status: 'nar-dump-status.json',
  flags: ['-O2', '-pthread'],
  libs: ['-ldl'],
  without: 'the native NAR serialiser was not built (hashing stays in JS, slower on big trees)',
});
// No Node headers needed: addon.c declares the Node-API functions it uses,
// which resolve against the node binary at load time.
buildOptional({
  source: 'addon.c',
  output: 'drvbox-native.node',
  status: 'native-status.json',
  flags: ['-O2', '-shared', '-fPIC', '-fvisibility=hidden'],
  without: 'the native addon was not built (file locks and xattrs go through koffi, ~10 ms more per command)',
});
const r = spawnSync(cc, ['-O2', '-Wall', '-Wextra', '-Werror', '-std=gnu11', '-o', out + '.tmp', src], {
  stdio: ['ignore', 'inherit', 'pipe'],
  encoding: 'utf8',
});
const at = new Date().toISOString();
if (r.error || r.status !== 0) {
  const reason = r.error
    ? `no C compiler found (${cc}: ${r.error.code ?? r.error.message})`
    : `${cc} failed: ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`;
  rmSync(out + '.tmp', { force: true });
  const printed = [
    `drvbox: the Linux sandbox launcher was not built: ${reason}.`,
    'drvbox: install a C compiler (e.g. `apt-get install gcc`) and run `npm run build`;',
    'drvbox: until then sandboxed builds are unavailable (see `drvbox doctor`).',
  ];
  // `drvbox doctor` shows what was printed here, long after npm install scrolled by.
  writeFileSync(statusFile, JSON.stringify({ ok: false, reason, compiler: cc, at, printed }));
  for (const line of printed) console.warn(line);
  process.exit(0);
}
spawnSync('mv', [out + '.tmp', out]);
writeFileSync(statusFile, JSON.stringify({ ok: true, path: out, compiler: cc, at }));
