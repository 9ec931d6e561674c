// `drvbox daemon --socket` as a child process for the CLI and interop tests:
// started against a temp store, ready once it says it listens, stopped with a
// signal; the test fails if it outlives the test or leaves its socket behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { CLI } from '../helpers/host.js';

export interface DaemonProcess {
  child: ChildProcess;
  socket: string;
  stderr(): string;
  /** Waits (up to 10 s) until the daemon's stderr matches `re`. */
  waitForLog(re: RegExp): Promise<void>;
  /** Sends `signal`, waits for the exit; the exit code (or 128+signal). */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export async function startDaemon(
  t: TestContext,
  opts: { root: string; socket: string; args?: string[]; env?: NodeJS.ProcessEnv },
): Promise<DaemonProcess> {
  const args = [CLI, '--store', opts.root, ...(opts.args ?? []), 'daemon', '--socket', opts.socket];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const exited = new Promise<number>((resolve) =>
    child.once('exit', (code, sig) => resolve(code ?? 128 + (sig === 'SIGKILL' ? 9 : sig === 'SIGTERM' ? 15 : 2))),
  );
  let done = false;
  void exited.then(() => (done = true));
  t.after(async () => {
    if (!done) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const deadline = Date.now() + 15_000;
  while (!err.includes('listening on')) {
    if (done) throw new Error(`drvbox daemon exited before listening: ${err}`);
    if (Date.now() > deadline) throw new Error(`drvbox daemon did not start listening: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    child,
    socket: opts.socket,
    stderr: () => err,
    async waitForLog(re: RegExp) {
      const end = Date.now() + 10_000;
      while (!re.test(err)) {
        if (Date.now() > end) throw new Error(`the daemon never logged ${re}: ${err}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!done) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Processes whose command line mentions `needle` (stray daemons, clients). */
export function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'latin1').includes(needle)) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Temp-root files still present in a store root's state dir. */
export function tempRootFiles(root: string): string[] {
  const dir = `${root}/nix/var/nix/temproots`;
  return existsSync(dir) ? readdirSync(dir) : [];
}
