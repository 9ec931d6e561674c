// Where the build step (backends/linux/build-launcher.mjs and
// write-seccomp-cache.mjs) puts what it compiles: dist/launcher/.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/src/native/built-file.js (or dist/bundle/cli/drvbox.cjs) -> dist
const distDir = join(fileURLToPath(import.meta.url), '..', '..', '..');

/** `dist/launcher/<name>`, or the value of `process.env[envVar]` when it is set ('' turns an optional file off). */
export function builtFile(name: string, envVar?: string): string {
  return (envVar !== undefined ? process.env[envVar] : undefined) ?? join(distDir, 'launcher', name);
}
