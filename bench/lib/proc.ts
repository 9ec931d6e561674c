// Whole-process measurements: wall time taken around the spawn, peak RSS and
// CPU time of the process tree from GNU time (`/usr/bin/time -f '%M %U %S'`,
// which reports the largest process's maximum RSS and the CPU of every
// descendant that was waited for). Without GNU time, RSS and CPU are null.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuCgroup } from './cgroup.js';

export const GNU_TIME = '/usr/bin/time';

export interface ProcResult {
  ms: number;
  status: number | null;
  stdout: Buffer;
  stderr: string;
  /** Largest maximum RSS among the process and its waited-for descendants, MiB. */
  peakRssMB: number | null;
  /** CPU of the waited-for tree (GNU time), ms. */
  userMs: number | null;
  sysMs: number | null;
  /** CPU of everything the command started, daemons included (its own cgroup), ms. */
  treeCpuMs: number | null;
}

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  input?: Buffer | string;
  cwd?: string;
  /** Measure RSS and CPU through GNU time (a fork+exec more, on every side alike). */
  usage?: boolean;
  /** Do not throw on a non-zero exit. */
  allowFail?: boolean;
  /** Run the command in a cgroup of its own and report its whole tree's CPU. */
  treeCpu?: boolean;
}

let timeOutDir: string | null = null;
let haveGnuTime: boolean | null = null;

export function gnuTimeAvailable(): boolean {
  haveGnuTime ??= existsSync(GNU_TIME) && spawnSync(GNU_TIME, ['-f', '%M', 'true']).status === 0;
  return haveGnuTime;
}

export function run(cmd: string, args: readonly string[], o: RunOptions): ProcResult {
  let argv = [cmd, ...args];
  const cg = o.treeCpu ? cpuCgroup() : null;
  // The shell joins the cgroup, then becomes the command.
  if (cg) argv = ['/bin/sh', '-c', 'echo $$ > "$0" && exec "$@"', cg.procs, ...argv];
  let usageFile: string | null = null;
  if (o.usage && gnuTimeAvailable()) {
    timeOutDir ??= mkdtempSync(join(tmpdir(), 'drvbox-bench-time-'));
    usageFile = join(timeOutDir, 'usage');
    argv = [GNU_TIME, '-f', '%M %U %S', '-o', usageFile, ...argv];
  }
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), { env: o.env, input: o.input, cwd: o.cwd, maxBuffer: 1 << 30 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const res: ProcResult = {
    ms,
    status: r.status,
    stdout: r.stdout ?? Buffer.alloc(0),
    stderr: String(r.stderr ?? ''),
    peakRssMB: null,
    userMs: null,
    sysMs: null,
    treeCpuMs: null,
  };
  if (cg) {
    res.treeCpuMs = cg.usageMs();
    cg.remove();
  }
  if (r.error) throw new Error(`cannot run ${cmd}: ${r.error.message}`);
  if (usageFile) {
    // GNU time writes "Command exited with non-zero status N" first when it failed.
    const line = readFileSync(usageFile, 'utf8').trim().split('\n').pop() ?? '';
    const m = /^(\d+) ([\d.]+) ([\d.]+)$/.exec(line);
    if (m) {
      res.peakRssMB = Number(m[1]) / 1024;
      res.userMs = Number(m[2]) * 1000;
      res.sysMs = Number(m[3]) * 1000;
    }
  }
  if (!o.allowFail && r.status !== 0) {
    throw new Error(`${cmd} ${args.slice(0, 6).join(' ')} failed (exit ${r.status ?? r.signal}): ${res.stderr.slice(-3000)}`);
  }
  return res;
}

export function cleanupProcFiles(): void {
  if (timeOutDir) rmSync(timeOutDir, { recursive: true, force: true });
  timeOutDir = null;
}

/** Absolute path of a command on PATH, or null. */
export function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', 'command -v "$0"', cmd], { encoding: 'utf8' });
  const p = r.status === 0 ? r.stdout.trim() : '';
  return p.startsWith('/') ? p : null;
}

/** First line of `cmd --version`-like output, for the machine description. */
export function versionOf(cmd: string, args: string[] = ['--version']): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return null;
  return (r.stdout || r.stderr).trim().split('\n')[0] ?? null;
}
