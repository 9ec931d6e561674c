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

// ---- `drvbox build` through a daemon ---------------------------------------------

/** The flags of `drvbox build` that mean something to a daemon. */
export interface DaemonBuildFlags {
  maxJobs?: string | number;
  cores?: string | number;
  sandbox?: string | boolean;
  check?: boolean;
  repair?: boolean;
  keepFailed?: boolean;
  keepGoing?: boolean;
  timeout?: string | number;
  maxSilentTime?: string | number;
  outLink?: string | boolean;
  json?: boolean;
}

/** What the build needs of the command's context (CliContext fits; tests pass a recorder). */
export interface DaemonBuildIo {
  readonly location: import('../config/store-location.js').StoreLocation;
  readonly flags: { storeDir?: string | undefined; verbose: boolean; quiet: boolean };
  readonly cwd: string;
  onClose(fn: () => void | Promise<void>): void;
  out(line: string): void;
  /** A message on stderr (suppressed by --quiet). */
  info(msg: string): void;
}

function nonNegative(flag: string, v: string | number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(String(v))) throw new UsageError(`invalid --${flag} '${v}' (expected a non-negative integer)`);
  return Number(v);
}

/**
 * `drvbox --store unix://PATH build TARGET...`: the targets (store .drv paths,
 * or .drv/.json files added first) are built by the daemon; prints what a
 * local build prints, with nix-build's exit status.
 */
export async function buildViaDaemon(io: DaemonBuildIo, args: string[], flags: DaemonBuildFlags): Promise<number> {
  if (args.length === 0) throw new UsageError("'build' needs at least one target (a .drv store path, a .drv file or a .json file)");
  if (flags.check && flags.repair) throw new UsageError("'--check' and '--repair' cannot be used together");
  if (flags.outLink === true) throw new UsageError("'--out-link' needs a path");
  const maxJobs = flags.maxJobs === 'auto' ? undefined : nonNegative('max-jobs', flags.maxJobs);
  const cores = nonNegative('cores', flags.cores);
  const maxSilentTime = nonNegative('max-silent-time', flags.maxSilentTime);
  const timeout = nonNegative('timeout', flags.timeout);
  const { ActivityType, BuildMode, BuildStatus, ResultType, Verbosity, buildSucceeded } = await import('../daemon/protocol.js');
  const { openRemoteStore } = await import('../daemon/remote-store.js');
  const quiet = io.flags.quiet || Boolean(flags.json);
  const names = new Map<bigint, string>();
  const remote = await openRemoteStore(io, (ev) => {
    if (ev.type === 'next') {
      if (!quiet) io.info(ev.text.replace(/\n$/, ''));
    } else if (ev.type === 'startActivity' && ev.activityType === ActivityType.Build) {
      const drv = typeof ev.fields[0] === 'string' ? ev.fields[0] : '';
      names.set(ev.id, drv.replace(/^.*\/[0-9a-z]{32}-/, '').replace(/\.drv$/, ''));
      if (!quiet && ev.text !== '') io.info(`${ev.text}...`);
    } else if (ev.type === 'result' && ev.resultType === ResultType.BuildLogLine && io.flags.verbose && !quiet) {
      io.info(`${names.get(ev.id) ?? 'build'}> ${String(ev.fields[0] ?? '')}`);
    }
  });
  const overrides: Record<string, string> = {};
  if (timeout !== undefined) overrides.timeout = String(timeout);
  if (flags.sandbox !== undefined) overrides.sandbox = String(flags.sandbox);
  await remote.client.setOptions({
    keepFailed: Boolean(flags.keepFailed),
    keepGoing: Boolean(flags.keepGoing),
    verbosity: Verbosity.Info,
    ...(maxJobs !== undefined ? { maxBuildJobs: maxJobs } : {}),
    ...(maxSilentTime !== undefined ? { maxSilentTime } : {}),
    ...(cores !== undefined ? { buildCores: cores } : {}),
    overrides,
  });
  const targets = await remote.resolveBuildTargets(args, io.cwd);
  const mode = flags.check ? BuildMode.Check : flags.repair ? BuildMode.Repair : BuildMode.Normal;

  // Ctrl-C: hang up, so the daemon kills the builds
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    io.info('error: interrupted by the user; the daemon stops the builds');
    remote.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let results;
  try {
    results = await remote.buildPaths(targets.map((t) => ({ kind: 'built' as const, drvPath: t.drvPath, outputs: t.outputs ?? [] })), mode);
  } catch (e) {
    if (interrupted) return 1;
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  const order = (names: Iterable<string>) => [...names].sort((a, b) => (a === 'out' ? -1 : b === 'out' ? 1 : a < b ? -1 : a > b ? 1 : 0));
  const outputs = await Promise.all(targets.map((t, i) => (buildSucceeded(results[i]!.status) ? remote.wantedOutputs(t) : new Map<string, string>())));
  let mask = 0;
  let plainFailure = false;
  results.forEach((r, i) => {
    if (buildSucceeded(r.status)) return;
    // failures are shown even with --quiet, as a local build shows them
    process.stderr.write(`error: ${r.errorMsg.split('\n').join('\n       ') || `build of '${targets[i]!.drvPath}' failed`}\n`);
    if (r.status === BuildStatus.TimedOut) mask |= 0x05;
    else if (r.status === BuildStatus.NotDeterministic) mask |= 0x08;
    else if (r.status === BuildStatus.PermanentFailure || r.status === BuildStatus.InputRejected || r.status === BuildStatus.OutputRejected) mask |= 0x04;
    else if (r.status !== BuildStatus.DependencyFailed) plainFailure = true;
  });

  if (typeof flags.outLink === 'string') {
    const { outLinkName } = await import('./build.js');
    const { lstatSync, symlinkSync, renameSync } = await import('node:fs');
    const { resolve } = await import('node:path');
    for (const i of targets.keys()) {
      const outs = outputs[i]!;
      for (const name of order(outs.keys())) {
        const link = resolve(io.cwd, outLinkName(flags.outLink, i, name));
        let existing = null;
        try {
          existing = lstatSync(link);
        } catch {
          // free
        }
        if (existing && !existing.isSymbolicLink()) throw new UsageError(`cannot create out-link '${link}': it exists and is not a symlink`);
        const tmp = `${link}.tmp-${process.pid}`;
        symlinkSync(outs.get(name)!, tmp);
        renameSync(tmp, link);
        await remote.client.addIndirectRoot(link);
      }
    }
  }
  if (flags.json) {
    io.out(
      JSON.stringify(
        targets.map((t, i) => {
          const r = results[i]!;
          const ok = buildSucceeded(r.status);
          const o: Record<string, unknown> = {
            drvPath: t.drvPath,
            outputs: Object.fromEntries(order(outputs[i]!.keys()).map((n) => [n, outputs[i]!.get(n)])),
            status: ok ? (r.status === BuildStatus.Built ? 'built' : 'valid') : 'failed',
          };
          if (r.startTime) o.startTime = r.startTime;
          if (r.stopTime) o.stopTime = r.stopTime;
          if (!ok) o.error = r.errorMsg;
          return o;
        }),
      ),
    );
  } else {
    for (const [i, outs] of outputs.entries()) {
      if (!buildSucceeded(results[i]!.status)) continue;
      for (const name of order(outs.keys())) io.out(outs.get(name)!);
    }
  }
  if (mask) return 0x60 | mask;
  return plainFailure || results.some((r) => !buildSucceeded(r.status)) ? 1 : 0;
}
