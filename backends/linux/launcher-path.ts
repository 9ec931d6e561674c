// Where the compiled launcher is, and why it is not there when it is not.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LauncherMissing } from './errors.js';

// dist/backends/linux/launcher-path.js -> dist/launcher/drvbox-launcher
const distDir = join(fileURLToPath(import.meta.url), '..', '..', '..');
export const LAUNCHER_PATH = process.env.DRVBOX_LAUNCHER ?? join(distDir, 'launcher', 'drvbox-launcher');
const STATUS_FILE = join(distDir, 'launcher', 'build-status.json');

export function launcherStatus(): { ok: true; path: string } | { ok: false; reason: string } {
  if (existsSync(LAUNCHER_PATH)) return { ok: true, path: LAUNCHER_PATH };
  let reason = `'${LAUNCHER_PATH}' does not exist`;
  try {
    const s = JSON.parse(readFileSync(STATUS_FILE, 'utf8')) as { ok: boolean; reason?: string };
    if (!s.ok && s.reason) reason = s.reason;
  } catch {
    // no status file: the build step never ran
  }
  return { ok: false, reason };
}

export function requireLauncher(): string {
  const s = launcherStatus();
  if (s.ok) return s.path;
  throw new LauncherMissing(
    `the Linux sandbox launcher is not built: ${s.reason}; install a C compiler (e.g. 'apt-get install gcc') ` +
      `and run 'npm run build', or build with '--sandbox false'`,
    { reason: s.reason },
  );
}
