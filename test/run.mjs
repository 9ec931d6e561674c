#!/usr/bin/env node
// Runs the compiled test files with node's own test runner.
//   node test/run.mjs              unit, property, security and rootless tests
//   node test/run.mjs --interop    the differential suite against Nix 2.8
//   node test/run.mjs PATTERN...   only files whose path contains a pattern
// Tests are compiled by `npm run build` into dist/test.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const testDir = join(root, 'dist', 'test');
if (!existsSync(testDir)) {
  console.error('dist/test is missing: run `npm run build` first');
  process.exit(1);
}

const argv = process.argv.slice(2);
const interop = argv.includes('--interop');
const patterns = argv.filter((a) => !a.startsWith('--'));

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) collect(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

// Platform-only files say so in their name: `x.linux.test.ts`, `x.darwin.test.ts`.
const platformOf = (f) => (/\.(linux|darwin)\.test\.js$/.exec(f) ?? [])[1] ?? null;
const notHere = [];
const files = collect(testDir, []).filter((f) => {
  const rel = relative(testDir, f);
  const isInterop = rel.startsWith('interop/');
  if (interop !== isInterop) return false;
  if (patterns.length > 0 && !patterns.some((p) => rel.includes(p))) return false;
  const platform = platformOf(rel);
  if (platform && platform !== process.platform) {
    notHere.push(rel);
    return false;
  }
  return true;
});
if (notHere.length > 0) {
  console.log(`# not run on ${process.platform}: ${notHere.length} platform-only file(s) for another OS:`);
  for (const f of notHere) console.log(`#   ${f}`);
}
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const concurrency = process.env.DRVBOX_TEST_CONCURRENCY ?? '2';
const r = spawnSync(
  process.execPath,
  ['--test', `--test-concurrency=${concurrency}`, '--enable-source-maps', ...files],
  { stdio: 'inherit', env: { ...process.env, DRVBOX_REPO_ROOT: root } },
);
process.exit(r.status ?? 1);
