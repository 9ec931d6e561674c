#!/usr/bin/env node
// Compiles backends/linux/launcher.c into dist/launcher/drvbox-launcher.
// Runs from `npm install` (prepare). Only Linux needs it; a missing C
// compiler is reported clearly and does not fail the install: `drvbox doctor`
// repeats the message and `sandbox-fallback` decides what builds do.
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
