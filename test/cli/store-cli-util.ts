// Running the CLI with binary stdin/stdout against a temp store.
import { spawnSync } from 'node:child_process';
import { CLI } from '../helpers/host.js';

export interface Run {
  status: number | null;
  stdout: Buffer;
  out: string;
  stderr: string;
}

/** drvbox ARGS with DRVBOX_STORE=root (binary-safe). */
export function dx(root: string, args: string[], input?: Buffer | string, cwd?: string): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input,
    cwd,
    env: { ...process.env, DRVBOX_STORE: root, DRVBOX_CONFIG: '' },
    maxBuffer: 1 << 30,
  });
  return { status: r.status, stdout: r.stdout, out: r.stdout.toString(), stderr: r.stderr.toString() };
}

export function lines(s: string): string[] {
  return s.split('\n').filter(Boolean);
}
