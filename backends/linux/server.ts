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

interface Pending {
  control?: Socket;
  log?: PassThrough;
  ready: (p: LauncherProcess) => void;
  fail: (e: Error) => void;
  got(): void;
}

export class LauncherServer {
  private readonly child: ChildProcess;
  private readonly frames: Writable;
  private readonly listener: Server;
  private readonly token = randomBytes(16).toString('hex');
  private readonly name = `drvbox-${process.pid}-${randomBytes(8).toString('hex')}`;
  private readonly pending = new Map<number, Pending>();
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
        const m = /^F (\d+) (.*)$/.exec(line);
        const p = m && this.pending.get(Number(m[1]));
        if (m && p) {
          this.pending.delete(Number(m[1]));
          p.fail(new Error(m[2]));
        }
      }
    });
    ctl.on('error', () => {});
    this.child.on('exit', (code, signal) => {
      this.dead = new Error(`the launcher server exited (${code ?? signal})`);
      for (const p of this.pending.values()) p.fail(this.dead);
      this.pending.clear();
      if (server === this) server = null;
      this.listener.close();
    });
    this.child.on('error', (e) => {
      this.dead = e;
    });
    this.child.unref();
    ctl.unref();
    this.frames.write(frame(0, encodeRequest({ mode: Mode.RUN, parentPid: process.pid, socketName: this.name, token: this.token })));
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
      const p = m && m[1] === this.token ? this.pending.get(Number(m[2])) : undefined;
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
      }
      p.got();
    };
    sock.on('data', onData);
    sock.on('error', () => {});
  }

  /** Starts one build from a RUN request; resolves once both channels are up. */
  async start(request: Buffer): Promise<LauncherProcess> {
    if (this.dead) throw this.dead;
    await this.listening;
    const id = this.nextId++;
    this.hold();
    return new Promise<LauncherProcess>((resolve, reject) => {
      const p: Pending = {
        ready: resolve,
        fail: (e) => {
          this.release();
          reject(e);
        },
        got: () => {
          if (!p.control || !p.log) return;
          this.pending.delete(id);
          resolve(this.wrap(p.control, p.log));
        },
      };
      this.pending.set(id, p);
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

  private wrap(control: Socket, log: PassThrough): LauncherProcess {
    let text = '';
    let statusDone = false;
    const statusLines: StatusLine[] = [];
    let resolveStatus!: (l: StatusLine[]) => void;
    let resolveResult!: (s: string) => void;
    const status = new Promise<StatusLine[]>((r) => (resolveStatus = r));
    const result = new Promise<string>((r) => (resolveResult = r));
    let monitorPid = 0;
    let closed = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      control.on('close', () => {
        closed = true;
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
        if (s.kind === 'error') {
          statusDone = true;
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

/** The process-wide launcher server, started on first use. */
export function launcherServer(launcher: string): LauncherServer {
  server ??= new LauncherServer(launcher);
  return server;
}
