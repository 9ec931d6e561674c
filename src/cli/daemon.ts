// `drvbox daemon`: serve the store over the Nix worker protocol, on a unix
// socket (each peer trusted, untrusted or refused per trusted-users /
// allowed-users) or on stdin/stdout (one trusted client); `--install` writes
// a launchd plist (macOS) or systemd unit (Linux) that runs it.
import type { CAC } from 'cac';
import { defineError, UsageError } from '../errors.js';
import type { CliContext } from './context.js';
import { act } from './store.js';

export class ServiceActivationFailed extends defineError('ServiceActivationFailed', 'E_SERVICE_ACTIVATION') {}

/** The socket `--store daemon` connects to. */
export const DEFAULT_DAEMON_SOCKET = '/nix/var/nix/daemon-socket/socket';

interface DaemonOpts {
  stdio?: boolean;
  socket?: string;
  install?: boolean;
  user?: boolean;
  print?: boolean;
  writeOnly?: boolean;
  platform?: string;
}

export function register(cli: CAC, ctx: () => CliContext): void {
  cli
    .command('daemon', 'Serve the store over the Nix worker protocol (nix-daemon compatible)')
    .option('--stdio', 'Serve one trusted client on stdin/stdout, then exit')
    .option('--socket <path>', `Listen on this unix socket (default ${DEFAULT_DAEMON_SOCKET}, or a per-user path with --user)`)
    .option('--install', 'Install a service running the daemon: a launchd plist on macOS, a systemd unit on Linux')
    .option('--user', 'With --install/--print: a per-user service (launchd agent / systemd --user) instead of a system one')
    .option('--print', 'Print the service definition instead of installing it')
    .option('--write-only', 'With --install: write the file but do not load or start it')
    .option('--platform <os>', 'With --print: darwin or linux (default: this machine)')
    .action(act('daemon', async (opts: DaemonOpts) => {
      const c = ctx();
      if (opts.stdio && opts.socket !== undefined) throw new UsageError("'daemon' takes --stdio or --socket, not both");
      if (opts.socket !== undefined && typeof opts.socket !== 'string') throw new UsageError("'--socket' needs a path");
      if (opts.install || opts.print) return installService(c, opts);
      if (opts.user) throw new UsageError("'--user' only applies to --install and --print");
      if (opts.stdio) return serveStdio(c);
      return serveSocket(c, opts.socket ?? DEFAULT_DAEMON_SOCKET);
    }));
}

async function openDaemonStore(c: CliContext) {
  const { LocalStoreAdapter } = await import('../daemon/local-store-adapter.js');
  const { findBuildEngine } = await import('../daemon/build-engine.js');
  const store = await c.openStore();
  const build = await findBuildEngine(c.settings);
  const adapter = new LocalStoreAdapter(store, build ? { build } : {});
  // runs before the store closes (closers run in reverse order)
  c.onClose(() => adapter.close());
  if (!build) c.debug('no build engine available: derivations cannot be built through this daemon');
  return adapter;
}

/** Resolves on SIGINT/SIGTERM (handlers removed afterwards). */
function untilSignal(extra?: Promise<unknown>): { done: Promise<string>; dispose: () => void } {
  let dispose = () => {};
  const done = new Promise<string>((resolve) => {
    const on = (sig: string) => () => resolve(sig);
    const int = on('SIGINT');
    const term = on('SIGTERM');
    process.once('SIGINT', int);
    process.once('SIGTERM', term);
    dispose = () => {
      process.off('SIGINT', int);
      process.off('SIGTERM', term);
    };
    void extra?.then(() => resolve('end'));
  });
  return { done, dispose };
}

function policyFrom(c: CliContext) {
  const s = c.settings;
  return {
    trustedUsers: s.get('trusted-users'),
    allowedUsers: s.get('allowed-users'),
    buildUsersGroup: s.get('build-users-group'),
    daemonUid: process.getuid?.() ?? null,
  };
}

async function serveSocket(c: CliContext, socketPath: string): Promise<number> {
  const { resolve } = await import('node:path');
  const path = resolve(c.cwd, socketPath);
  const store = await openDaemonStore(c);
  const { LocalDaemon } = await import('../daemon/local-daemon.js');
  const daemon = new LocalDaemon({
    store,
    policy: policyFrom(c),
    maxConnections: Math.max(1, c.settings.get('daemon-max-connections')),
    onAccepted: (peer, trusted) => c.debug(`accepted connection from pid ${peer.pid ?? '?'}, user ${peer.user}${trusted ? ' (trusted)' : ''}`),
    onRefused: (peer, reason) => c.info(`drvbox daemon: refused connection${peer ? ` from pid ${peer.pid ?? '?'}` : ''}: ${reason}`),
    onConnectionError: (e) => {
      if ((e as { code?: string }).code !== 'E_CONNECTION_CLOSED') c.info(`drvbox daemon: error processing connection: ${e.message}`);
    },
  });
  const stop = untilSignal();
  try {
    // the socket's mode: any local user may connect (access is per peer) when
    // the daemon is root; a per-user daemon serves its owner unless told
    // otherwise through allowed-users and a reachable socket
    await daemon.listen(path, { mode: process.getuid?.() === 0 ? 0o666 : 0o600 });
    c.info(`drvbox daemon: listening on '${path}'`);
    const sig = await stop.done;
    c.debug(`received ${sig}, shutting down`);
  } finally {
    stop.dispose();
    await daemon.close();
  }
  return 0;
}

async function serveStdio(c: CliContext): Promise<number> {
  const store = await openDaemonStore(c);
  const { LocalDaemon } = await import('../daemon/local-daemon.js');
  const daemon = new LocalDaemon({
    store,
    policy: policyFrom(c),
    maxConnections: 1,
    onConnectionError: (e) => {
      if ((e as { code?: string }).code !== 'E_CONNECTION_CLOSED') process.stderr.write(`drvbox daemon: error processing connection: ${e.message}\n`);
    },
  });
  const served = daemon.serveStdio(process.stdin, process.stdout);
  const stop = untilSignal(served);
  try {
    await stop.done;
  } finally {
    stop.dispose();
    await daemon.close();
  }
  return 0;
}

async function installService(c: CliContext, opts: DaemonOpts): Promise<number> {
  const { fileURLToPath } = await import('node:url');
  const { join, resolve, dirname } = await import('node:path');
  const { homedir, userInfo } = await import('node:os');
  const { serviceFile } = await import('../daemon/service-files.js');
  const { dataHome } = await import('../config/store-location.js');
  const platform = opts.platform ?? process.platform;
  if (platform !== 'darwin' && platform !== 'linux') {
    throw new UsageError(`cannot make a daemon service for '${platform}' (expected darwin or linux)`);
  }
  if (opts.install && platform !== process.platform) throw new UsageError(`'--platform ${platform}' only works with --print`);
  const scope = opts.user ? 'user' : 'system';
  const home = c.env.HOME || homedir();
  const socket = resolve(
    c.cwd,
    opts.socket ?? (scope === 'system' ? DEFAULT_DAEMON_SOCKET : join(dataHome(c.env), 'drvbox', 'daemon-socket', 'socket')),
  );
  // the service serves the store this command would use, with its settings
  const program = [process.execPath, fileURLToPath(new URL('./main.js', import.meta.url))];
  if (c.flags.store !== undefined) {
    const loc = c.location;
    if (loc.kind !== 'local') throw new UsageError(`the daemon service needs a local store, not the daemon at '${loc.socket}'`);
    program.push('--store', loc.root ?? loc.storeDir);
  }
  if (c.flags.storeDir !== undefined) program.push('--store-dir', c.flags.storeDir);
  for (const [k, v] of c.flags.options) program.push('--option', k, v);
  program.push('daemon', '--socket', socket);
  const environment: Record<string, string> = {};
  for (const k of ['DRVBOX_CONFIG', 'DRVBOX_STORE', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME']) {
    const v = c.env[k];
    if (v !== undefined && v !== '') environment[k] = v;
  }
  const file = serviceFile(platform, scope, {
    program,
    ...(Object.keys(environment).length > 0 ? { environment } : {}),
    ...(platform === 'darwin' ? { logPath: scope === 'system' ? '/var/log/drvbox-daemon.log' : join(home, 'Library', 'Logs', 'drvbox-daemon.log') } : {}),
  }, { home, uid: process.getuid?.() ?? userInfo().uid });
  if (opts.print && !opts.install) {
    process.stdout.write(file.content.endsWith('\n') ? file.content : file.content + '\n');
    c.info(`# ${file.format} ${scope} service; install it as '${file.path}'`);
    return 0;
  }
  const { mkdirSync, writeFileSync, renameSync } = await import('node:fs');
  mkdirSync(dirname(file.path), { recursive: true });
  const tmp = `${file.path}.tmp-${process.pid}`;
  writeFileSync(tmp, file.content, { mode: 0o644 });
  renameSync(tmp, file.path);
  c.out(file.path);
  if (opts.writeOnly) {
    c.info(`to start it: ${file.activate.map((a) => a.join(' ')).join(' && ')}`);
  } else {
    const { spawnSync } = await import('node:child_process');
    for (const cmd of file.activate) {
      const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', env: c.env });
      if (r.status !== 0) {
        const why = r.error ? r.error.message : (r.stderr || r.stdout).trim() || `exit status ${r.status}`;
        throw new ServiceActivationFailed(`wrote '${file.path}', but '${cmd.join(' ')}' failed: ${why}`, { path: file.path, command: cmd });
      }
    }
    c.info(`drvbox daemon service started; clients use --store unix://${socket}`);
  }
  return 0;
}
