// Preconditions of tests that need something of the host. A test that cannot
// run here fails with a message saying why; it is never skipped silently.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

export function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

export class HostPreconditionError extends Error {
  override name = 'HostPreconditionError';
}

/** Throws (so the test fails, loudly) when `cmd` is not on PATH. */
export function requireTool(cmd: string, install: string): string {
  const p = which(cmd);
  if (!p) throw new HostPreconditionError(`cannot run on this host: '${cmd}' not found (${install})`);
  return p;
}

export function requireRoot(why: string): void {
  if (process.getuid?.() !== 0) throw new HostPreconditionError(`cannot run on this host: needs root (${why})`);
}

export function requireLinux(why: string): void {
  if (process.platform !== 'linux') throw new HostPreconditionError(`cannot run on this host: needs Linux (${why})`);
}

/** Runs the drvbox CLI from dist/ and returns its output. */
export function drvbox(
  args: string[],
  opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input: opts.input,
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
