// The worker-protocol server: a fixed pool of connection handlers in front of
// a DaemonStore.
//
// At most `maxConnections` connections are served at once. Further ones wait,
// unread (the kernel's socket buffer and the client's blocking handshake are
// the back-pressure), in a queue of at most `maxQueuedConnections`; beyond
// that they are closed at once. Nothing grows with the number of clients.
import { lstatSync, chmodSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { defineError } from '../errors.js';
import { VERSION } from '../version.js';
import { Connection, type ConnectionEnd } from './connection.js';
import type { DaemonStore } from './store-api.js';
import { DEFAULT_LIMITS, type WireLimits } from './wire.js';

export class SocketPathTooLong extends defineError('SocketPathTooLong', 'E_SOCKET_PATH_TOO_LONG') {}
export class ServerClosed extends defineError('ServerClosed', 'E_SERVER_CLOSED') {}

export interface WorkerServerOptions {
  store: DaemonStore;
  /** Whether clients are trusted (trusted-users; the stdio daemon). Default false. */
  trusted?: boolean;
  /** A recursive-build daemon: client settings are not applied (as in Nix). */
  recursive?: boolean;
  /** Connection handlers (the pool size). Default 16. */
  maxConnections?: number;
  /** Connections waiting for a handler before new ones are refused. Default 64. */
  maxQueuedConnections?: number;
  limits?: Partial<WireLimits>;
  /** Version reported to clients >= 1.33 (`nix store ping`). */
  nixVersion?: string;
  /** Log output allowed to wait for a slow client before lines are dropped. Default 4 MiB. */
  maxPendingLogBytes?: number;
  /** Called when a connection ends with an error (protocol violation, I/O). */
  onConnectionError?: (err: Error) => void;
}

export interface ServerStats {
  active: number;
  queued: number;
  /** connections served to their end */
  served: number;
  /** connections closed at once because the queue was full */
  refused: number;
  /** connections that ended with an error */
  failed: number;
  /** most connections served at once (never above the pool size) */
  peakActive: number;
}

interface Pending {
  input: Readable;
  output: Writable;
  close: () => void;
  resolve: (end: ConnectionEnd) => void;
}

/** Longest unix socket path (sun_path minus the terminating NUL). */
export function maxSocketPathBytes(platform: NodeJS.Platform = process.platform): number {
  return platform === 'linux' ? 107 : 103;
}

export class WorkerServer {
  private readonly store: DaemonStore;
  private readonly poolSize: number;
  private readonly maxQueued: number;
  private readonly active = new Map<Connection, Pending>();
  private readonly queue: Pending[] = [];
  private readonly counters = { served: 0, refused: 0, failed: 0, peakActive: 0 };
  private server: Server | null = null;
  private socketPath: string | null = null;
  private closing = false;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: WorkerServerOptions) {
    this.store = opts.store;
    this.poolSize = Math.max(1, opts.maxConnections ?? 16);
    this.maxQueued = Math.max(0, opts.maxQueuedConnections ?? 64);
  }

  get stats(): ServerStats {
    return { active: this.active.size, queued: this.queue.length, ...this.counters };
  }

  get path(): string | null {
    return this.socketPath;
  }

  /** Listens on a unix socket (created with `mode`, default 0600). */
  async listen(socketPath: string, opts: { mode?: number } = {}): Promise<void> {
    if (this.server) throw new Error('WorkerServer is already listening');
    const max = maxSocketPathBytes();
    if (Buffer.byteLength(socketPath) > max) {
      throw new SocketPathTooLong(
        `socket path '${socketPath}' is ${Buffer.byteLength(socketPath)} bytes, longer than the ${max}-byte limit of unix sockets on ${process.platform}`,
        { path: socketPath, limit: max },
      );
    }
    removeStaleSocket(socketPath);
    const server = createServer({ allowHalfOpen: false, pauseOnConnect: true }, (sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(socketPath, opts.mode ?? 0o600);
    this.server = server;
    this.socketPath = socketPath;
  }

  private accept(sock: Socket): void {
    if (this.closing) {
      sock.destroy();
      return;
    }
    sock.on('error', () => {
      // reported through the connection; keep the process alive
    });
    void this.enqueue(sock, sock, () => sock.destroy());
  }

  /**
   * Serves one connection over a pair of streams (stdio, a child's pipes) and
   * resolves when it ends. It takes a handler from the pool like any other.
   */
  serveStream(input: Readable, output: Writable): Promise<ConnectionEnd> {
    if (this.closing) return Promise.resolve({ error: new ServerClosed('the server is shutting down'), ops: 0 });
    return this.enqueue(input, output, () => {
      input.destroy();
      if (output !== process.stdout && output !== process.stderr) output.destroy();
    });
  }

  private enqueue(input: Readable, output: Writable, close: () => void): Promise<ConnectionEnd> {
    return new Promise<ConnectionEnd>((resolve) => {
      const p: Pending = { input, output, close, resolve };
      if (this.active.size < this.poolSize) {
        this.start(p);
        return;
      }
      if (this.queue.length >= this.maxQueued) {
        this.counters.refused++;
        close();
        resolve({ error: new ServerClosed('too many connections waiting'), ops: 0 });
        return;
      }
      this.queue.push(p);
      // a client that gives up while waiting leaves the queue
      input.once('close', () => {
        const i = this.queue.indexOf(p);
        if (i >= 0) {
          this.queue.splice(i, 1);
          resolve({ error: null, ops: 0 });
        }
      });
    });
  }

  private start(p: Pending): void {
    const conn = new Connection(p.input, p.output, {
      store: this.store,
      trusted: this.opts.trusted ?? false,
      recursive: this.opts.recursive ?? false,
      limits: { ...DEFAULT_LIMITS, ...this.opts.limits },
      nixVersion: this.opts.nixVersion ?? `drvbox ${VERSION}`,
      maxPendingLogBytes: this.opts.maxPendingLogBytes ?? 4 * 1024 * 1024,
    });
    this.active.set(conn, p);
    this.counters.peakActive = Math.max(this.counters.peakActive, this.active.size);
    p.input.resume();
    conn
      .run()
      .catch((e: unknown) => ({ error: e instanceof Error ? e : new Error(String(e)), ops: 0 }))
      .then((end) => {
        this.active.delete(conn);
        if (end.error) {
          this.counters.failed++;
          try {
            this.opts.onConnectionError?.(end.error);
          } catch {
            // a reporting hook must not take the server down
          }
        } else this.counters.served++;
        try {
          p.close();
        } catch {
          // already closed
        }
        p.resolve(end);
        this.next();
      });
  }

  private next(): void {
    while (this.active.size < this.poolSize && this.queue.length > 0) {
      const p = this.queue.shift()!;
      if (p.input.destroyed) {
        p.resolve({ error: null, ops: 0 });
        continue;
      }
      this.start(p);
    }
    if (this.active.size === 0 && this.queue.length === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /**
   * Stops accepting, ends every connection (a store op in progress sees its
   * AbortSignal fire), waits for the handlers to finish and removes the socket.
   */
  async close(): Promise<void> {
    this.closing = true;
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const p of this.queue.splice(0)) {
      try {
        p.close();
      } catch {
        // already closed
      }
      p.resolve({ error: new ServerClosed('the server is shutting down'), ops: 0 });
    }
    const reason = new ServerClosed('the server is shutting down');
    for (const [c, p] of this.active) {
      c.kill(reason);
      try {
        p.close();
      } catch {
        // already closed
      }
    }
    if (this.active.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await closed;
    if (this.socketPath) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already gone
      }
      this.socketPath = null;
    }
  }
}

function removeStaleSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // nothing there
  }
}
