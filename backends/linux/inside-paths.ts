// Store paths made visible in, or hidden from, a sandbox that is running
// (recursive builds) or held (startHeld): one launcher request for several
// paths, run by a child of the launcher server (~1 ms) or, with
// DRVBOX_LAUNCHER_ONESHOT=1, by a launcher spawned for it (~17 ms).
import { AddPathFailed, RemovePathFailed, SandboxNulByte, SandboxStorePathInvalid } from './errors.js';
import { requireLauncher } from './launcher-path.js';
import type { LinuxSandboxSpec } from './plan.js';
import { physicalPath } from './plan.js';
import { encodeRequest, Mode, type LauncherRequest, type StatusLine } from './protocol.js';
import { runningLauncherServer } from './server.js';
import { spawnLauncher } from './spawn.js';

interface Outcome {
  /** Exit status of the child (null: the server died first). */
  status: number | null;
  lines: StatusLine[];
}

async function runRequest(request: Buffer): Promise<Outcome> {
  const server = process.env.DRVBOX_LAUNCHER_ONESHOT === '1' ? null : runningLauncherServer();
  if (server) return server.job(request);
  const p = spawnLauncher(requireLauncher(), request, false);
  const [lines, exit] = await Promise.all([p.status, p.exited]);
  return { status: exit.code ?? (exit.signal ? 128 : null), lines };
}

/** The base name of `storePath`, a path directly in the build's store dir; throws otherwise. */
function nameIn(spec: LinuxSandboxSpec, storePath: string, ctx: string): string {
  const storeDir = spec.request.storeDir.replace(/\/+$/, '');
  if (storePath.includes('\0')) {
    throw new SandboxNulByte(`${ctx}: store path ${JSON.stringify(storePath.replaceAll('\0', '\\0'))} contains a NUL byte`, {
      field: 'store path',
      value: storePath,
    });
  }
  const name = storePath.slice(storeDir.length + 1);
  if (!storePath.startsWith(storeDir + '/') || name === '' || name.includes('/') || name === '.' || name === '..') {
    throw new SandboxStorePathInvalid(`${ctx}: '${storePath}' is not a store path in '${storeDir}'`, { path: storePath, storeDir });
  }
  return name;
}

/** What a failed request says: the path it was working on and why. */
function failure(paths: readonly string[], r: Outcome): { path: string; detail: string } | null {
  const err = r.lines.find((l) => l.kind === 'error');
  if (!err && r.status === 0) return null;
  let current = 0;
  for (const l of r.lines) if (l.kind === 'path-current') current = l.index;
  const path = paths[current] ?? paths[0]!;
  if (err && err.kind === 'error') return { path, detail: `: ${err.message}` };
  return { path, detail: r.status === null ? ': the launcher server died' : ` (helper exit ${r.status})` };
}

function done(paths: readonly string[], r: Outcome): string[] {
  return r.lines.flatMap((l) => (l.kind === 'path-done' && paths[l.index] !== undefined ? [paths[l.index]!] : []));
}

/**
 * Makes `storePaths` visible inside the sandbox whose monitor is `monitorPid`
 * (bound read-only, symlinks copied), skipping those in `visible`, which is
 * updated with what was added, even when a later path fails. Messages as
 * ever: "could not add path '<path>' to the sandbox: <why>".
 */
export async function addPathsInside(spec: LinuxSandboxSpec, monitorPid: number, storePaths: readonly string[], visible: Set<string>): Promise<void> {
  const ctx = `derivation '${spec.request.drvPath}'`;
  const named = new Map(storePaths.map((p) => [p, nameIn(spec, p, ctx)]));
  const paths = [...named.keys()].filter((p) => !visible.has(p));
  if (paths.length === 0) return;
  if (!spec.keepMountNamespace) {
    throw new AddPathFailed(
      `${ctx}: cannot add '${paths[0]}' to the sandbox: the build was not started with recursive-nix (no mount namespace kept)`,
      { path: paths[0]! },
    );
  }
  const names = paths.map((p) => named.get(p)!);
  const req: LauncherRequest = {
    mode: Mode.ADD_PATH,
    parentPid: process.pid,
    cloneFlags: spec.cloneFlags,
    targetPid: monitorPid,
    sources: paths.map((p) => physicalPath(spec.request, p)),
    names,
    target: spec.chrootStoreDir,
    storeDir: spec.mountedStoreDir,
  };
  const r = await runRequest(encodeRequest(req, ctx));
  for (const p of done(paths, r)) visible.add(p);
  const f = failure(paths, r);
  if (f) throw new AddPathFailed(`${ctx}: could not add path '${f.path}' to the sandbox${f.detail}`, { path: f.path });
}

/**
 * Hides `storePaths` (those in `visible`; others are not there) from a held
 * sandbox: nothing of them is left inside, not even the mount point.
 */
export async function removePathsInside(spec: LinuxSandboxSpec, storePaths: readonly string[], visible: Set<string>): Promise<void> {
  const ctx = `derivation '${spec.request.drvPath}'`;
  const named = new Map(storePaths.map((p) => [p, nameIn(spec, p, ctx)]));
  const paths = [...named.keys()].filter((p) => visible.has(p));
  if (paths.length === 0) return;
  const names = paths.map((p) => named.get(p)!);
  const req: LauncherRequest = { mode: Mode.REMOVE_PATH, parentPid: process.pid, names, target: spec.chrootStoreDir };
  const r = await runRequest(encodeRequest(req, ctx));
  for (const p of done(paths, r)) visible.delete(p);
  const f = failure(paths, r);
  if (f) throw new RemovePathFailed(`${ctx}: could not remove path '${f.path}' from the sandbox${f.detail}`, { path: f.path });
}
