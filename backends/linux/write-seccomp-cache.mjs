#!/usr/bin/env node
// Part of `npm install` / `npm run build` on Linux, after tsc: compiles the
// default seccomp program with libseccomp and keeps it in
// dist/launcher/seccomp-<arch>.json, so builds need not load koffi and
// libseccomp to get it (backends/linux/seccomp-cache.ts). Without
// libseccomp nothing is written and nothing fails: builds compile the
// program themselves, or fail with the usual message.
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

if (process.platform !== 'linux') process.exit(0);
const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
const { writeSeccompCache } = await import(join(root, 'dist', 'backends', 'linux', 'seccomp.js'));
const r = writeSeccompCache();
if (!r.written) console.error(`note: seccomp program not precompiled (${r.detail}); builds compile it themselves`);
