// Starts a WorkerServer over a FakeStore on a unix socket in a temp dir.
import type { TestContext } from 'node:test';
import { join } from 'node:path';
import { createConnection, type Socket } from 'node:net';
import { tempDir } from '../helpers/tmp.js';
import { WorkerServer, type WorkerServerOptions } from '../../src/daemon/server.js';
import { connectDaemon, type WorkerClient, type WorkerClientOptions } from '../../src/daemon/client.js';
import { WireWriter } from '../../src/daemon/wire.js';
import { WORKER_MAGIC_1, PROTOCOL_VERSION } from '../../src/daemon/protocol.js';
import { FakeStore } from './fake-store.js';

export interface TestServer {
  server: WorkerServer;
  store: FakeStore;
  socketPath: string;
  /** the first 50 connection errors */
  errors: Error[];
  errorCount: () => number;
  connect(opts?: WorkerClientOptions): Promise<WorkerClient>;
}

export async function startServer(t: TestContext, opts: Partial<WorkerServerOptions> = {}): Promise<TestServer> {
  const dir = tempDir(t, 'drvbox-daemon-');
  const socketPath = join(dir, 's');
  const store = (opts.store as FakeStore | undefined) ?? new FakeStore();
  const errors: Error[] = [];
  let errorCount = 0;
  const server = new WorkerServer({
    ...opts,
    store,
    onConnectionError: (e) => {
      if (errorCount++ < 50) errors.push(e);
    },
  });
  await server.listen(socketPath);
  const clients: WorkerClient[] = [];
  t.after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await server.close();
  });
  return {
    server,
    store,
    socketPath,
    errors,
    errorCount: () => errorCount,
    async connect(o = {}) {
      const c = await connectDaemon({ socketPath }, o);
      clients.push(c);
      return c;
    },
  };
}

/** The bytes of a client handshake at 1.34 (no affinity, no reserve space). */
export function handshakeBytes(version = PROTOCOL_VERSION): Buffer {
  return new WireWriter().u64(WORKER_MAGIC_1).u64(version).u64(0).u64(0).take();
}

/** A raw socket: write bytes, collect everything the server sends until it closes. */
export function rawConnection(socketPath: string): Promise<{ sock: Socket; received: () => Buffer; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(socketPath);
    const parts: Buffer[] = [];
    sock.on('data', (d: Buffer) => parts.push(d));
    sock.on('error', () => undefined);
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.once('connect', () => resolve({ sock, received: () => Buffer.concat(parts), closed }));
    sock.once('error', reject);
  });
}

export async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
