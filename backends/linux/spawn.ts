// Spawning the launcher: fd 3 carries the request, fd 4 the status lines
// (EOF = exec), fd 5 the monitor's result line. Shared by run, probe,
// add-path and kill-user.
import { spawn } from 'node:child_process';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { parseStatusLine, type StatusLine } from './protocol.js';

export interface LauncherProcess {
  /** The monitor's pid (0 until known in server mode). */
  pid: number;
  log: Readable | null;
  /** Resolves with every status line once the status channel hits EOF. */
  status: Promise<StatusLine[]>;
  /** Resolves with the result channel's text at EOF. */
  result: Promise<string>;
  /** Resolves when the launcher process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** SIGTERM: the monitor kills the sandbox and reports; SIGKILL: the monitor dies (and the sandbox with it). */
  kill(sig: 'SIGTERM' | 'SIGKILL'): void;
  /** Server mode, a HOLD request: the status lines up to "H" (without it: the setup failed or the monitor died). */
  held?: Promise<StatusLine[]>;
  /** Server mode, a HOLD request: starts the held builder. */
  go?(): void;
}

function readAll(stream: Readable | null | undefined): Promise<string> {
  return new Promise((resolve) => {
    if (!stream) return resolve('');
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stream.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/**
 * Starts the launcher with `request`. `withLog`: fd 1 is a pipe returned as
 * `log` (the builder's merged stdout/stderr); otherwise /dev/null.
 */
export function spawnLauncher(launcher: string, request: Buffer, withLog: boolean): LauncherProcess {
  const child = spawn(launcher, [], {
    stdio: ['ignore', withLog ? 'pipe' : 'ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    // Own session: no controlling terminal for anything in the sandbox, and
    // terminal signals go to drvbox, which decides.
    detached: true,
    env: {},
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: null, signal: null }));
  });
  const stdio = child.stdio as unknown as (Readable | Writable | null)[];
  const req = stdio[3] as Writable | null;
  req?.on('error', () => {
    /* the launcher died early; its status says why */
  });
  req?.end(request);
  const status = readAll(stdio[4] as Readable).then((text) =>
    text
      .split('\n')
      .filter((l) => l !== '')
      .map(parseStatusLine),
  );
  const result = readAll(stdio[5] as Readable);
  // Node resumes (and discards) unused child stdio when the child exits; a
  // fast builder can finish before the caller attaches to the log, so the
  // bytes are held in a PassThrough that only the caller drains.
  let log: Readable | null = null;
  if (withLog && child.stdout) {
    const pass = new PassThrough({ highWaterMark: 1 << 20 });
    child.stdout.pipe(pass);
    log = pass;
  }
  return {
    pid: child.pid ?? 0,
    log,
    status,
    result,
    exited,
    alive: () => child.exitCode === null && child.signalCode === null,
    kill: (sig) => {
      try {
        child.kill(sig);
      } catch {
        // already gone
      }
    },
  };
}
