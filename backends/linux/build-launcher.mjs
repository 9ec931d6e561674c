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

{
  const narSrc = join(root, 'src', 'native', 'nar-dump.c');
  const narOut = join(outDir, 'drvbox-nar-dump');
  const narStatus = join(outDir, 'nar-dump-status.json');
  const n = existsSync(narSrc)
    ? spawnSync(cc, ['-O2', '-pthread', '-Wall', '-Wextra', '-Werror', '-std=gnu11', '-o', narOut + '.tmp', narSrc, '-ldl'], {
        stdio: ['ignore', 'inherit', 'pipe'],
        encoding: 'utf8',
      })
    : null;
  if (n && !n.error && n.status === 0) {
    spawnSync('mv', [narOut + '.tmp', narOut]);
    writeFileSync(narStatus, JSON.stringify({ ok: true, path: narOut, compiler: cc, at: new Date().toISOString() }));
  } else {
    rmSync(narOut + '.tmp', { force: true });
    rmSync(narOut, { force: true });
    const reason = !n ? 'nar-dump.c not present' : n.error ? `no C compiler found (${cc}: ${n.error.code ?? n.error.message})` : `${cc} failed: ${n.stderr.trim().split('\n').slice(-5).join(' | ')}`;
    writeFileSync(narStatus, JSON.stringify({ ok: false, reason, compiler: cc, at: new Date().toISOString() }));
    if (n && !n.error) console.warn(`drvbox: the native NAR serialiser was not built (hashing stays in JS, slower on big trees): ${reason}.`);
  }
}
{
  // No Node headers needed: addon.c declares the Node-API functions it uses,
  // which resolve against the node binary at load time.
  const addonSrc = join(root, 'src', 'native', 'addon.c');
  const addonOut = join(outDir, 'drvbox-native.node');
  const addonStatus = join(outDir, 'native-status.json');
  const a = existsSync(addonSrc)
    ? spawnSync(cc, ['-O2', '-shared', '-fPIC', '-fvisibility=hidden', '-Wall', '-Wextra', '-Werror', '-std=gnu11', '-o', addonOut + '.tmp', addonSrc], {
        stdio: ['ignore', 'inherit', 'pipe'],
        encoding: 'utf8',
      })
    : null;
  if (a && !a.error && a.status === 0) {
    spawnSync('mv', [addonOut + '.tmp', addonOut]);
    writeFileSync(addonStatus, JSON.stringify({ ok: true, path: addonOut, compiler: cc, at: new Date().toISOString() }));
  } else {
    rmSync(addonOut + '.tmp', { force: true });
    rmSync(addonOut, { force: true });
    const reason = !a ? 'addon.c not present' : a.error ? `no C compiler found (${cc}: ${a.error.code ?? a.error.message})` : `${cc} failed: ${a.stderr.trim().split('\n').slice(-5).join(' | ')}`;
    writeFileSync(addonStatus, JSON.stringify({ ok: false, reason, compiler: cc, at: new Date().toISOString() }));
    if (a && !a.error) console.warn(`drvbox: the native addon was not built (file locks and xattrs go through koffi, ~10 ms more per command): ${reason}.`);
  }
}
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
