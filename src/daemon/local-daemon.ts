// `drvbox daemon`: the worker-protocol server for local clients.
//
//   --socket PATH  listens on a unix socket; each connection's peer is looked
//                  up (peer-credentials.ts) and either refused, with the
//                  reason sent through the protocol's own startup error (so
//                  the Nix client prints it), or served as trusted or
//                  untrusted
//   --stdio        serves one connection on stdin/stdout, trusted (the
//                  caller already runs with the daemon's rights; as Nix)
//
// Trust is decided per connection but fixed per WorkerServer, so there are
// two pools, one for each kind, each of `maxConnections` handlers.
import { lstatSync, mkdirSync, chmodSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { defineError } from '../errors.js';
import { VERSION } from '../version.js';
import type { ConnectionEnd } from './connection.js';
import { decideAccess, identifyPeer, type AccessPolicy, type PeerIdentity } from './peer-credentials.js';
import { PROTOCOL_VERSION, protocolMinor, Since, WORKER_MAGIC_1, WORKER_MAGIC_2 } from './protocol.js';
import { StreamReader } from './reader.js';
import { maxSocketPathBytes, SocketPathTooLong, WorkerServer, type ServerStats } from './server.js';
import type { DaemonStore } from './store-api.js';
import { WireWriter, writeStderrFrame, type WireLimits } from './wire.js';

export class DaemonAlreadyRunning extends defineError('DaemonAlreadyRunning', 'E_DAEMON_ALREADY_RUNNING') {}
export class SocketPathTaken extends defineError('SocketPathTaken', 'E_SOCKET_PATH_TAKEN') {}
export class ConnectionRefused extends defineError('ConnectionRefused', 'E_CONNECTION_REFUSED') {}

export interface LocalDaemonOptions {
  store: DaemonStore;
  policy: AccessPolicy;
  /** Connection handlers per pool (trusted, untrusted). Default 16. */
  maxConnections?: number;
  maxQueuedConnections?: number;
  limits?: Partial<WireLimits>;
  nixVersion?: string;
  /** Who is connecting; default: the socket's peer credentials. Tests replace it. */
  identify?: (sock: Socket) => PeerIdentity;
  onAccepted?: (peer: PeerIdentity, trusted: boolean) => void;
  onRefused?: (peer: PeerIdentity | null, reason: string) => void;
  onConnectionError?: (err: Error) => void;
}

export interface LocalDaemonStats {
  trusted: ServerStats;
  untrusted: ServerStats;
  refused: number;
}

/** How long a refused client gets to finish its greeting before we hang up. */
const REFUSAL_TIMEOUT_MS = 5000;

export class LocalDaemon {
  private readonly trusted: WorkerServer;
  private readonly untrusted: WorkerServer;
  private server: Server | null = null;
  private socketPath: string | null = null;
  private refusedCount = 0;
  private readonly refusing = new Set<Socket>();
  private closing = false;

  constructor(private readonly opts: LocalDaemonOptions) {
    const common = {
      store: opts.store,
      maxConnections: opts.maxConnections ?? 16,
      ...(opts.maxQueuedConnections !== undefined ? { maxQueuedConnections: opts.maxQueuedConnections } : {}),
      ...(opts.limits ? { limits: opts.limits } : {}),
      nixVersion: opts.nixVersion ?? `drvbox ${VERSION}`,
      ...(opts.onConnectionError ? { onConnectionError: opts.onConnectionError } : {}),
    };
    this.trusted = new WorkerServer({ ...common, trusted: true });
    this.untrusted = new WorkerServer({ ...common, trusted: false });
  }

  get stats(): LocalDaemonStats {
    return { trusted: this.trusted.stats, untrusted: this.untrusted.stats, refused: this.refusedCount };
  }

  get path(): string | null {
    return this.socketPath;
  }

  /**
   * Listens on `socketPath` (parent directories created). A stale socket
   * left by a dead daemon is replaced; a live one is an error. The socket is
   * world-connectable by default (0666): access is decided per peer.
   */
  async listen(socketPath: string, opts: { mode?: number } = {}): Promise<void> {
    if (this.server) throw new Error('LocalDaemon is already listening');
    const max = maxSocketPathBytes();
    if (Buffer.byteLength(socketPath) > max) {
      throw new SocketPathTooLong(
        `socket path '${socketPath}' is ${Buffer.byteLength(socketPath)} bytes, longer than the ${max}-byte limit of unix sockets on ${process.platform}`,
        { path: socketPath, limit: max },
      );
    }
    mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
    await clearSocketPath(socketPath);
    const server = createServer({ allowHalfOpen: false, pauseOnConnect: true }, (sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.opts.onConnectionError?.(e));
    chmodSync(socketPath, opts.mode ?? 0o666);
    this.server = server;
    this.socketPath = socketPath;
  }

  private accept(sock: Socket): void {
    sock.on('error', () => {
      // reported through the connection
    });
    if (this.closing) {
      sock.destroy();
      return;
    }
    let peer: PeerIdentity | null = null;
    let reason: string;
    try {
      peer = (this.opts.identify ?? identifyPeer)(sock);
      const d = decideAccess(peer, this.opts.policy);
      if (d.allowed) {
        this.opts.onAccepted?.(peer, d.trusted);
        void (d.trusted ? this.trusted : this.untrusted).serveStream(sock, sock);
        return;
      }
      reason = d.reason;
    } catch (e) {
      reason = `cannot identify the connecting user: ${(e as Error).message}`;
    }
    this.refusedCount++;
    this.opts.onRefused?.(peer, reason);
    this.refusing.add(sock);
    void refuseConnection(sock, reason).finally(() => this.refusing.delete(sock));
  }

  /** Serves one trusted connection over a pair of streams (stdin/stdout). */
  serveStdio(input: Readable, output: Writable): Promise<ConnectionEnd> {
    return this.trusted.serveStream(input, output);
  }

  /**
   * Stops accepting, ends every connection (store operations see their
   * signal fire), waits for the handlers and removes the socket.
   */
  async close(): Promise<void> {
    this.closing = true;
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const s of this.refusing) s.destroy();
    const steps = [this.trusted.close(), this.untrusted.close(), closed];
    for (const r of await Promise.allSettled(steps)) {
      if (r.status === 'rejected') this.opts.onConnectionError?.(r.reason as Error);
    }
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

/** Removes a dead daemon's socket; refuses to touch a live one or a non-socket. */
async function clearSocketPath(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new SocketPathTaken(`cannot listen on '${path}': it exists and is not a socket`, { path });
  const live = await new Promise<boolean>((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new DaemonAlreadyRunning(`cannot listen on '${path}': a daemon is already listening there`, { path });
  try {
    unlinkSync(path);
  } catch {
    // raced with its owner
  }
}

/**
 * Answers the client's greeting and fails its startup with `message` (the
 * protocol's way of refusing: a Nix client prints "cannot open connection to
 * remote store …: <message>"), then hangs up.
 */
export async function refuseConnection(sock: Socket, message: string, timeoutMs = REFUSAL_TIMEOUT_MS): Promise<void> {
  const src = new StreamReader(sock, { limits: { maxStringBytes: 4096, maxListLength: 16, maxRequestBytes: 65536 } });
  const timer = setTimeout(() => src.abort(new ConnectionRefused('client did not finish its greeting')), timeoutMs);
  try {
    sock.resume();
    const magic = await src.u64('client magic');
    if (magic !== BigInt(WORKER_MAGIC_1)) return;
    sock.write(new WireWriter(16).u64(WORKER_MAGIC_2).u64(PROTOCOL_VERSION).take());
    const clientVersion = await src.int('client version');
    const minor = Math.min(protocolMinor(clientVersion), protocolMinor(PROTOCOL_VERSION));
    if (minor >= Since.CpuAffinity && (await src.u64('cpu affinity flag')) !== 0n) await src.u64('cpu affinity');
    if (minor >= Since.ReserveSpace) await src.u64('reserve space');
    const w = new WireWriter(256);
    if (minor >= Since.NixVersionString) w.string(`drvbox ${VERSION}`);
    writeStderrFrame(w, { type: 'error', error: { message, level: 0, status: 1, traces: [] } }, minor);
    await new Promise<void>((resolve) => sock.end(w.take(), () => resolve()));
  } catch {
    // the client went away or sent garbage: nothing more to tell it
  } finally {
    clearTimeout(timer);
    src.detach();
    sock.destroy();
  }
}
