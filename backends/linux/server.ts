// One long-lived launcher (`drvbox-launcher --server`) that forks a monitor
// per build: forking node itself costs milliseconds that grow with its heap.
// Each monitor connects back to an abstract unix socket of this process
// twice (control and log), authenticated by a random token. See protocol.ts
// for the wire format.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { encodeRequest, Mode, parseStatusLine, type StatusLine } from './protocol.js';
import type { LauncherProcess } from './spawn.js';

/** A monitor forked ahead of time, connecting or connected. */
interface Spare {
  id: number;
  control?: Socket;
  log?: PassThrough;
  logSock?: Socket;
}

/** How many connected spare monitors to keep (each ~1 MiB, idle). */
const SPARES = 2;

/** How a job of the server ended: exit status (null: the server died) and its status lines. */
export interface JobResult {
  status: number | null;
  lines: StatusLine[];
}

export class LauncherServer {
  private readonly child: ChildProcess;
  private readonly frames: Writable;
  private readonly listener: Server;
  private readonly token = randomBytes(16).toString('hex');
  private readonly name = `drvbox-${process.pid}-${randomBytes(8).toString('hex')}`;
  /** Spares still connecting, by id. */
  private readonly connecting = new Map<number, Spare>();
  /** Connected spares, ready for a request. */
  private readonly idle: Spare[] = [];
  /** Jobs (removeTree, add-path, remove-path) waiting for their child, by frame id. */
  private readonly jobs = new Map<number, { lines: StatusLine[]; done: (r: JobResult) => void }>();
  /** start() calls waiting for a spare. */
  private readonly waiters: { take: (s: Spare) => void; fail: (e: Error) => void }[] = [];
  private nextId = 1;
  private active = 0;
  private dead: Error | null = null;
  readonly listening: Promise<void>;

  constructor(launcher: string) {
    this.listener = createServer((sock) => this.accept(sock));
    this.listening = new Promise((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen('\0' + this.name, () => resolve());
    });
    this.listener.unref();
    this.child = spawn(launcher, ['--server'], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'], detached: true, env: {} });
    const ctl = (this.child.stdio as unknown as (Socket | null)[])[3]!;
    this.frames = ctl;
    let buf = '';
    ctl.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const d = /^D (\d+) (\d+)$/.exec(line);
        if (d) {
          const job = this.jobs.get(Number(d[1]));
          this.jobs.delete(Number(d[1]));
          job?.done({ status: Number(d[2]), lines: job.lines });
          continue;
        }
        const s = /^M (\d+) (.*)$/.exec(line);
        if (s) {
          this.jobs.get(Number(s[1]))?.lines.push(parseStatusLine(s[2]!));
          continue;
        }
        // A spare could not connect back: nothing else will work either.
        const m = /^F (\d+) (.*)$/.exec(line);
        if (m) this.die(new Error(m[2]));
      }
    });
    ctl.on('error', () => {});
    this.child.on('exit', (code, signal) => this.die(new Error(`the launcher server exited (${code ?? signal})`)));
    this.child.on('error', (e) => {
      this.dead = e;
    });
    this.child.unref();
    ctl.unref();
    this.frames.write(frame(0, encodeRequest({ mode: Mode.RUN, parentPid: process.pid, socketName: this.name, token: this.token })));
    this.replenish();
  }

  private die(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    for (const w of this.waiters.splice(0)) w.fail(e);
    const pending = [...this.jobs.values()];
    this.jobs.clear();
    for (const job of pending) job.done({ status: null, lines: job.lines });
    for (const s of [...this.idle.splice(0), ...this.connecting.values()]) {
      s.control?.destroy();
      s.logSock?.destroy();
    }
    this.connecting.clear();
    if (server === this) server = null;
    this.listener.close();
    try {
      this.child.kill('SIGKILL');
    } catch {
      // gone
    }
  }

  /** Asks the zygote for spares until SPARES are connected or on the way. */
  private replenish(): void {
    if (this.dead) return;
    while (this.idle.length + this.connecting.size < SPARES + this.waiters.length) {
      const id = this.nextId++;
      this.connecting.set(id, { id });
      this.frames.write(frame(id, Buffer.alloc(0)));
    }
  }

  private connected(s: Spare): void {
    if (!s.control || !s.log) return;
    this.connecting.delete(s.id);
    s.control.unref();
    s.logSock!.unref();
    // A spare whose connection drops (e.g. killed) is simply forgotten.
    s.control.once('close', () => {
      const i = this.idle.indexOf(s);
      if (i >= 0) this.idle.splice(i, 1);
    });
    const w = this.waiters.shift();
    if (w) w.take(s);
    else this.idle.push(s);
  }

  private accept(sock: Socket): void {
    let head = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      head = Buffer.concat([head, c]);
      const nl = head.indexOf(10);
      if (nl < 0) {
        if (head.length > 256) sock.destroy();
        return;
      }
      sock.off('data', onData);
      sock.pause();
      const m = /^([0-9a-f]+) (\d+) ([CL])$/.exec(head.subarray(0, nl).toString('latin1'));
      const rest = head.subarray(nl + 1);
      const p = m && m[1] === this.token ? this.connecting.get(Number(m[2])) : undefined;
      if (!m || !p) {
        sock.destroy();
        return;
      }
      if (m[3] === 'C') {
        p.control = sock;
        if (rest.length) sock.unshift(rest);
      } else {
        const pass = new PassThrough({ highWaterMark: 1 << 20 });
        if (rest.length) pass.write(rest);
        sock.pipe(pass);
        p.log = pass;
        p.logSock = sock;
      }
      this.connected(p);
    };
    sock.on('data', onData);
    sock.on('error', () => {});
  }

  /** Starts one build from a RUN request on a spare monitor. */
  async start(request: Buffer): Promise<LauncherProcess> {
    if (this.dead) throw this.dead;
    this.hold();
    try {
      let spare = this.idle.shift();
      if (!spare) {
        await this.listening;
        spare = await new Promise<Spare>((take, fail) => {
          this.waiters.push({ take, fail });
          this.replenish();
        });
      }
      this.replenish();
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32LE(request.length, 0);
      spare.control!.ref();
      spare.logSock!.ref();
      spare.control!.write(Buffer.concat([len, request]));
      return this.wrap(spare.control!, spare.log!);
    } catch (e) {
      this.release();
      throw e;
    }
  }

  /**
   * Removes the tree at `path` (absolute; a chroot dir renamed aside) in a
   * process the server forks for it, so neither node's main thread nor the
   * start of other builds waits for it. Resolves with the remover's exit
   * status (0: gone; otherwise something was left, e.g. a mount point it
   * refused to enter), or null when the server died first (then nothing
   * says how far it got: the caller may remove what is left itself). Node
   * stays alive until it resolves, so no removal is cut short at exit.
   */
  removeTree(path: string): Promise<number | null> {
    const request = encodeRequest({ mode: Mode.REMOVE_TREE, target: path }, `removing '${path}'`);
    return this.job(request).then((r) => r.status);
  }

  /**
   * Runs one request of mode REMOVE_TREE, ADD_PATH or REMOVE_PATH in a child
   * the server forks for it (about a millisecond, against a launcher spawned
   * from node). Resolves with its exit status (null: the server died first)
   * and its status lines.
   */
  job(request: Buffer): Promise<JobResult> {
    if (this.dead) return Promise.resolve({ status: null, lines: [] });
    const id = this.nextId++;
    this.hold();
    return new Promise((resolve) => {
      this.jobs.set(id, {
        lines: [],
        done: (r) => {
          this.release();
          resolve(r);
        },
      });
      this.frames.write(frame(id, request));
    });
  }

  /** Keeps node alive while builds are pending or running, not otherwise. */
  private hold(): void {
    if (this.active++ === 0) {
      this.child.ref();
      this.listener.ref();
    }
  }

  private release(): void {
    if (--this.active === 0) {
      this.child.unref();
      this.listener.unref();
    }
  }

  /** Build channels: statuses until exec, then the result; releases the hold on close. */
  private wrap(control: Socket, log: PassThrough): LauncherProcess {
    let text = '';
    let statusDone = false;
    const statusLines: StatusLine[] = [];
    let resolveStatus!: (l: StatusLine[]) => void;
    let resolveResult!: (s: string) => void;
    let resolveHeld!: (l: StatusLine[]) => void;
    const status = new Promise<StatusLine[]>((r) => (resolveStatus = r));
    // A held build's lines up to "H", or all of them when it never got there.
    const held = new Promise<StatusLine[]>((r) => (resolveHeld = r));
    const result = new Promise<string>((r) => (resolveResult = r));
    let monitorPid = 0;
    let closed = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      control.on('close', () => {
        closed = true;
        resolveHeld(statusLines);
        if (!statusDone) resolveStatus(statusLines);
        resolveResult('');
        this.release();
        resolve({ code: 0, signal: null });
      });
    });
    const proc: LauncherProcess = {
      pid: 0,
      log: log as Readable,
      status,
      result,
      exited,
      alive: () => !closed,
      held,
      go: () => {
        if (!closed) control.write('G\n');
      },
      kill: (sig) => {
        if (closed) return;
        if (sig === 'SIGKILL' && monitorPid > 0) {
          try {
            process.kill(monitorPid, 'SIGKILL');
          } catch {
            // gone
          }
          return;
        }
        control.write('K\n');
      },
    };
    control.on('data', (c: Buffer) => {
      text += c.toString('utf8');
      let nl;
      while ((nl = text.indexOf('\n')) >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        if (line.startsWith('X ')) {
          resolveResult(line + '\n');
          continue;
        }
        const s = parseStatusLine(line);
        if (s.kind === 'pid') {
          monitorPid = s.monitorPid ?? 0;
          proc.pid = monitorPid;
        }
        if (statusDone) continue;
        if (s.kind === 'other' && s.text === 'R') {
          statusDone = true;
          resolveStatus(statusLines);
          continue;
        }
        statusLines.push(s);
        if (s.kind === 'held') resolveHeld([...statusLines]);
        if (s.kind === 'error' || s.kind === 'exec-failed') {
          statusDone = true;
          resolveHeld(statusLines);
          resolveStatus(statusLines);
        }
      }
    });
    control.resume();
    return proc;
  }
}

function frame(id: number, body: Buffer): Buffer {
  const h = Buffer.allocUnsafe(12);
  h.writeUInt32LE(body.length, 0);
  h.writeBigUInt64LE(BigInt(id), 4);
  return Buffer.concat([h, body]);
}

let server: LauncherServer | null = null;

/** The process-wide launcher server if one is running (none in one-shot mode, or after it died). */
export function runningLauncherServer(): LauncherServer | null {
  return server;
}

/** The process-wide launcher server, started on first use. */
export function launcherServer(launcher: string): LauncherServer {
  server ??= new LauncherServer(launcher);
  return server;
}
