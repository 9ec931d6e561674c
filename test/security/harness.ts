// The security battery's harness: every escape attempt runs twice, as root
// (in this process) and as an unprivileged user created here (through
// runner.js under runuser), against the real Linux backend.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { BuildRequest } from '../../backends/backend.js';
import { REPO_ROOT, requireLinux, requireRoot, requireTool } from '../helpers/host.js';
import { removeTree } from '../helpers/tmp.js';
import { BUSYBOX, makeFixture, runBuild, type Fixture } from '../backends/linux/fixture.js';

export const TEST_USER = 'drvbox-test';
export type Who = 'root' | 'user';
export const WHO: readonly Who[] = ['root', 'user'];

export interface Ids {
  uid: number;
  gid: number;
}

let userIds: Ids | null = null;

/** The unprivileged user of the battery, created when missing. */
export function ensureTestUser(): Ids {
  if (userIds) return userIds;
  requireLinux('namespace sandbox');
  requireRoot(`creates the unprivileged test user '${TEST_USER}' and runs builds as it`);
  const id = (flag: string): number | null => {
    const r = spawnSync('id', [flag, TEST_USER], { encoding: 'utf8' });
    return r.status === 0 ? Number(r.stdout.trim()) : null;
  };
  if (id('-u') === null) {
    const r = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', TEST_USER], { encoding: 'utf8' });
    if (r.status !== 0 && id('-u') === null) throw new Error(`useradd ${TEST_USER} failed: ${r.stderr}`);
  }
  userIds = { uid: id('-u')!, gid: id('-g')! };
  return userIds;
}

let toolsBuilt: string | null = null;

/** Compiles escape-tools.c (static) once per process. */
export function escapeTools(): string {
  if (toolsBuilt && existsSync(toolsBuilt)) return toolsBuilt;
  requireTool('cc', 'apt-get install -y gcc');
  const dir = join('/tmp', `drvbox-escape-tools-${process.pid}`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const out = join(dir, 'tools');
  const r = spawnSync('cc', ['-static', '-O1', '-o', out, join(REPO_ROOT, 'test', 'security', 'escape-tools.c')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`compiling escape-tools.c failed: ${r.stderr}`);
  chmodSync(out, 0o755);
  process.once('exit', () => removeTree(dir));
  toolsBuilt = out;
  return out;
}

export interface Result {
  code: number | null;
  signal: string | null;
  log: string;
  outPath: string;
  monitorPid: number;
  sandboxPid: number;
  error?: string;
}

export interface Sandbox {
  who: Who;
  fx: Fixture;
  ids: Ids;
  /** Runs `script` (busybox sh; $B = busybox, $T = escape tools). */
  run(script: string, over?: Partial<BuildRequest>, opts?: { killAfterMs?: number }): Promise<Result>;
}

const RUNNER = join(REPO_ROOT, 'dist', 'test', 'security', 'runner.js');

export function sandbox(t: TestContext, who: Who): Sandbox {
  const user = ensureTestUser();
  const tools = escapeTools();
  const ids: Ids = who === 'root' ? { uid: 0, gid: 0 } : user;
  const fx = makeFixture('/tmp', who === 'root' ? undefined : ids);
  t.after(() => removeTree(fx.root));
  const toolsCopy = join(fx.root, 'tools');
  copyFileSync(tools, toolsCopy);
  chmodSync(toolsCopy, 0o755);
  const sandboxPaths = [
    { target: '/bin/sh', source: BUSYBOX, optional: false },
    { target: '/bin/busybox', source: BUSYBOX, optional: false },
    { target: '/bin/tools', source: toolsCopy, optional: false },
  ];
  return {
    who,
    fx,
    ids,
    async run(script, over = {}, opts = {}) {
      const request = fx.request(`B=/bin/busybox; T=/bin/tools; ${script}`, { sandboxPaths, ...over });
      if (who === 'root') {
        let monitorPid = 0;
        let sandboxPid = 0;
        const r = await runBuild(request, (b) => {
          monitorPid = b.pid;
          sandboxPid = b.sandboxPid;
          if (opts.killAfterMs !== undefined) setTimeout(() => void b.kill(), opts.killAfterMs);
        });
        return { code: r.code, signal: r.signal, log: r.log, outPath: r.outPath, monitorPid, sandboxPid };
      }
      const child = spawn('runuser', ['-u', TEST_USER, '--', process.execPath, RUNNER], {
        stdio: ['pipe', 'pipe', 'pipe'],
        cwd: '/',
      });
      child.stdin.end(JSON.stringify({ request, killAfterMs: opts.killAfterMs }));
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => err.push(c));
      const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
      const text = Buffer.concat(out).toString('utf8');
      if (code !== 0 || text === '') {
        throw new Error(`runner as ${TEST_USER} failed (${code}): ${Buffer.concat(err).toString('utf8')}`);
      }
      const r = JSON.parse(text) as Result;
      if (r.error) throw new Error(`build as ${TEST_USER} failed to start: ${r.error}`);
      return r;
    },
  };
}

/** Pids of live processes whose command line contains `needle`. */
export function processesMatching(needle: string): number[] {
  const found: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').replaceAll('\0', ' ').includes(needle)) found.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}
