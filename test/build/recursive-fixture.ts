// Runs recursive-runner.js scenarios as the current user or, through
// runuser, as the unprivileged test user, and returns their JSON reports.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireLinux, requireRoot, requireTool } from '../helpers/host.js';

export const TEST_USER = 'drvbox-test';
export type Who = 'current' | 'rootless';
const RUNNER = join(fileURLToPath(import.meta.url), '..', 'recursive-runner.js');

/** The unprivileged user, created when missing (needs root). */
export function ensureTestUser(): void {
  requireRoot(`runs the builds as the unprivileged user '${TEST_USER}'`);
  requireTool('runuser', 'util-linux');
  if (spawnSync('id', ['-u', TEST_USER]).status === 0) return;
  const r = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', TEST_USER], { encoding: 'utf8' });
  if (r.status !== 0 && spawnSync('id', ['-u', TEST_USER]).status !== 0) throw new Error(`useradd ${TEST_USER} failed: ${r.stderr}`);
}

export interface ScenarioRun<T> {
  uid: number;
  report: T;
}

/** Runs one scenario in a fresh node process and parses its report. */
export function runScenario<T = Record<string, unknown>>(who: Who, args: string[], timeoutMs = 120_000): Promise<ScenarioRun<T>> {
  requireLinux('the recursive-build scenarios use the Linux sandbox');
  const node = [process.execPath, '--expose-gc', RUNNER, ...args];
  let cmd: string;
  let argv: string[];
  if (who === 'rootless') {
    ensureTestUser();
    cmd = 'runuser';
    argv = ['-u', TEST_USER, '--', 'env', 'HOME=/tmp', 'TMPDIR=/tmp', ...node];
  } else {
    cmd = node[0]!;
    argv = node.slice(1);
  }
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, argv, { cwd: '/tmp', stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('error', reject);
    c.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`recursive-runner ${args.join(' ')} as ${who} exited ${code ?? signal}: ${err.slice(-4000)}`));
        return;
      }
      try {
        resolve(JSON.parse(out) as ScenarioRun<T>);
      } catch {
        reject(new Error(`recursive-runner ${args.join(' ')} printed no report: ${out.slice(-2000)} ${err.slice(-2000)}`));
      }
    });
  });
}

/** What every scenario reports about its daemon after the build. */
export interface SessionReport {
  stopped: boolean;
  socketLeft: boolean;
  listening: boolean;
  stats: { active: number; queued: number; served: number; refused: number; failed: number; peakActive: number };
  added: number;
}
