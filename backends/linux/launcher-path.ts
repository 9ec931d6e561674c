// Where the compiled launcher is, and why it is not there when it is not.
import { existsSync, readFileSync } from 'node:fs';
import { builtFile } from '../../src/native/built-file.js';
import { LauncherMissing } from './errors.js';

export const LAUNCHER_PATH = builtFile('drvbox-launcher', 'DRVBOX_LAUNCHER');
const STATUS_FILE = builtFile('build-status.json');

/** What the launcher build step (npm install / npm run build) recorded. */
export interface LauncherBuildRecord {
  ok: boolean;
  /** Where it was built (ok). */
  path?: string;
  reason?: string;
  compiler?: string;
  /** ISO time of the build step. */
  at?: string;
  /** The lines it printed when it could not build the launcher. */
  printed?: string[];
}

export function launcherBuildRecord(file = STATUS_FILE): LauncherBuildRecord | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LauncherBuildRecord;
  } catch {
    return null; // the build step never ran
  }
}

export function launcherStatus(): { ok: true; path: string } | { ok: false; reason: string } {
  if (existsSync(LAUNCHER_PATH)) return { ok: true, path: LAUNCHER_PATH };
  let reason = `'${LAUNCHER_PATH}' does not exist`;
  const s = launcherBuildRecord();
  if (s && !s.ok && s.reason) reason = s.reason;
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
