// plan(): BuildRequest + PlanHost -> DarwinSandboxSpec. Every decision of the
// macOS backend is made here, as data: which mode, which paths as literal or
// subpath, the profile text, the sandbox-exec parameters and the spawn. The
// only host facts used come through PlanHost (lstat, realpath), so this runs
// and is tested on any OS.
import { posix } from 'node:path';
import type { BuildRequest, PlanHost, SandboxSpec } from '../backend.js';
import { assertSocketPathFits } from './build-dir.js';
import {
  DarwinBadSandboxPath,
  DarwinBadSpec,
  DarwinDivertedStore,
  DarwinImpureHostDepNotAllowed,
  DarwinMappedPathMismatch,
  DarwinNoChrootNotAllowed,
  DarwinRecursiveNixSandboxed,
  DarwinRequiredPathMissing,
  DarwinSandboxProfileInvalid,
  DarwinSandboxProfileNotAllowed,
  DarwinUidRangeUnsupported,
  DarwinUnsafeDirectory,
  SbplUnsafePath,
} from './errors.js';
import { assembleProfile } from './profile.js';
import { sbplUnbalanced, type PathFilter } from './sbpl.js';
import { describeSpawn, type SpawnCredentials, type SpawnDescription } from './spawn-plan.js';

/** The request fields the darwin backend needs beyond BuildRequest. */
export interface DarwinBuildRequest extends BuildRequest {
  /** __noChroot of the derivation (relaxed mode runs it under the minimal profile). */
  noChroot?: boolean;
  /** Host temporary directory opened to the build as _GLOBAL_TMP_DIR (default /tmp, as a root daemon has). */
  globalTmpDir?: string;
}

export interface DarwinPlanOptions {
  /**
   * Planning for `explain` only: a diverted store (e.g. a chroot-style store
   * on Linux) is described instead of refused, store paths being looked up
   * under realStoreDir; mapped sandbox paths are left out and, on a host
   * other than macOS, missing required paths are shown as directories, each
   * with a note.
   */
  explainOnly?: boolean;
}

export const PROFILE_FILE_NAME = '.sandbox.sb';
export const DEFAULT_GLOBAL_TMP_DIR = '/tmp';

export interface DarwinSandboxSpec extends SandboxSpec {
  backend: 'darwin';
  request: DarwinBuildRequest;
  /** Full profile (false: the minimal allow-default profile). */
  sandboxed: boolean;
  profile: string;
  /** Where start() writes the profile: inside the build dir. */
  profilePath: string;
  /** sandbox-exec -D parameters, in argv order. */
  params: Array<[string, string]>;
  /** Build dir and global temp dir, symlinks resolved. */
  buildDir: string;
  globalTmpDir: string;
  outputs: string[];
  allowed: PathFilter[];
  ancestry: string[];
  /** Optional paths left out because they do not exist. */
  skipped: string[];
  /** Generated allow groups: operations, number of filters, bytes of filters. */
  groups: Array<{ ops: string; filters: number; filterBytes: number }>;
  spawn: SpawnDescription;
  /** Things `explain` should say (ignored attributes, explain-only liberties). */
  notes: string[];
}

export function isDarwinSpec(spec: SandboxSpec): spec is DarwinSandboxSpec {
  return spec.backend === 'darwin' && typeof (spec as Partial<DarwinSandboxSpec>).profile === 'string';
}

/** Lexical normalisation (`.`, `..`, `//`, trailing `/`), no symlinks: as Nix's canonPath without resolution. */
export function canonPath(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}

/** Every proper ancestor of an absolute path, `/` included. */
export function parentsOf(p: string): string[] {
  const out: string[] = [];
  let cur = canonPath(p);
  while (cur !== '/') {
    cur = posix.dirname(cur);
    out.push(cur);
  }
  return out;
}

function isWithin(path: string, dir: string): boolean {
  return dir === '/' ? path.startsWith('/') : path === dir || path.startsWith(dir + '/');
}

/** Names the derivation in path-escaping failures, which the SBPL writer raises without knowing it. */
function withDrv<T>(drv: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof SbplUnsafePath) throw new SbplUnsafePath(`derivation '${drv}': ${e.message}`, { ...e.fields, drvPath: drv });
    throw e;
  }
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function realpathOr(host: PlanHost, p: string): string {
  try {
    return canonPath(host.realpath(p));
  } catch {
    return canonPath(p);
  }
}

interface HostEntry {
  path: string;
  optional: boolean;
  origin: 'sandbox-paths' | '__impureHostDeps' | 'input';
}

export function planDarwin(req: DarwinBuildRequest, host: PlanHost, opts: DarwinPlanOptions = {}): DarwinSandboxSpec {
  const drv = req.drvPath;
  const notes: string[] = [];
  const storeDir = canonPath(req.storeDir);
  const realStoreDir = canonPath(req.realStoreDir);
  if (storeDir !== realStoreDir) {
    if (!opts.explainOnly) {
      throw new DarwinDivertedStore(
        `cannot build '${drv}' on macOS with store directory '${storeDir}' kept in '${realStoreDir}': sandbox-exec cannot show a path under another name; use a store whose directory is real`,
        { drvPath: drv, storeDir, realStoreDir },
      );
    }
    notes.push(`store '${storeDir}' is kept in '${realStoreDir}' here; a macOS build refuses such a diverted store`);
  }
  const physical = (p: string) => (isWithin(p, storeDir) && storeDir !== realStoreDir ? realStoreDir + p.slice(storeDir.length) : p);

  // Which profile: the seed's rules for the three sandbox modes.
  let sandboxed: boolean;
  if (req.sandboxMode === 'true') {
    if (req.noChroot) {
      throw new DarwinNoChrootNotAllowed(`derivation '${drv}' has '__noChroot' set, but that is not allowed when 'sandbox' is 'true'`, { drvPath: drv });
    }
    if (req.additionalSandboxProfile !== '') {
      throw new DarwinSandboxProfileNotAllowed(
        `derivation '${drv}' specifies a sandbox profile (__sandboxProfile), but that is only allowed when 'sandbox' is 'relaxed'`,
        { drvPath: drv },
      );
    }
    sandboxed = true;
  } else if (req.sandboxMode === 'false') {
    sandboxed = false;
  } else {
    sandboxed = !req.fixedOutput && !req.noChroot;
  }

  const features = new Set(req.requiredSystemFeatures);
  if (features.has('uid-range') || (req.buildUser && req.buildUser.uidCount > 1)) {
    throw new DarwinUidRangeUnsupported(`derivation '${drv}' requires the 'uid-range' feature, which macOS does not support`, { drvPath: drv });
  }
  if (features.has('recursive-nix') && sandboxed) {
    throw new DarwinRecursiveNixSandboxed(
      `derivation '${drv}' requires 'recursive-nix', which macOS only supports without the sandbox: a running sandbox-exec profile cannot gain the paths built inside it (use sandbox = false, or relaxed with __noChroot)`,
      { drvPath: drv },
    );
  }
  if (req.daemonSocketHost !== null) assertSocketPathFits(req.daemonSocketHost, drv);

  const buildDir = realpathOr(host, req.buildDirHost);
  if (canonPath(req.buildDirSandbox) !== canonPath(req.buildDirHost)) {
    throw new DarwinMappedPathMismatch(
      `derivation '${drv}': build directory '${req.buildDirHost}' cannot appear as '${req.buildDirSandbox}' on macOS; the builder sees host paths`,
      { drvPath: drv, target: req.buildDirSandbox, source: req.buildDirHost },
    );
  }
  const globalTmpDir = realpathOr(host, req.globalTmpDir ?? DEFAULT_GLOBAL_TMP_DIR);
  for (const [what, dir] of [
    ['build directory', buildDir],
    ['temporary directory', globalTmpDir],
  ] as const) {
    // Both are opened read-write as subpaths: a shallow one or one holding
    // the store would open far more than intended.
    const shallow = dir.split('/').length < 3 && dir !== '/tmp';
    const overlapsStore = [storeDir, realStoreDir].some((st) => isWithin(st, dir) || isWithin(dir, st));
    if (!dir.startsWith('/') || shallow || overlapsStore) {
      throw new DarwinUnsafeDirectory(
        `derivation '${drv}': ${what} '${dir}' would give the build the whole of '${dir}'; it must be /tmp or an absolute path at least two levels deep, neither inside nor around the store`,
        { drvPath: drv, what, dir },
      );
    }
  }

  for (const p of [...req.inputPaths, ...Object.values(req.scratchOutputs)]) {
    if (!isWithin(canonPath(p), storeDir) || canonPath(p) === storeDir) {
      throw new DarwinBadSpec(`derivation '${drv}': '${p}' is listed as an input or output but is not in the store '${storeDir}'`, { drvPath: drv, path: p });
    }
  }

  const profilePath = posix.join(buildDir, PROFILE_FILE_NAME);
  const credentials: SpawnCredentials | null = req.buildUser
    ? { uid: req.buildUser.uid, gid: req.buildUser.gid, groups: [...new Set([req.buildUser.gid, ...req.buildUser.supplementaryGids])] }
    : null;

  if (!sandboxed) {
    if (req.additionalSandboxProfile !== '') notes.push('__sandboxProfile is ignored: this build runs without the sandbox');
    if (req.allowLocalNetworking) notes.push('__darwinAllowLocalNetworking has no effect: this build runs without the sandbox');
    const assembled = assembleProfile({ sandboxed: false, logViolations: false, network: false, outputs: [], allowed: [], ancestry: [], extra: '' });
    return {
      backend: 'darwin',
      request: req,
      sandboxed,
      profile: assembled.text,
      profilePath,
      params: [],
      buildDir,
      globalTmpDir,
      outputs: [],
      allowed: [],
      ancestry: [],
      skipped: [],
      groups: [],
      spawn: describeSpawn({ drvPath: drv, system: req.system, builder: req.builder, args: req.args, env: req.env, cwd: buildDir, profilePath, params: [], credentials }),
      notes,
    };
  }

  // Host paths the build may use, keyed by path. Later origins win, like
  // Nix's dirsInChroot: an input path also named in sandbox-paths is required.
  const entries = new Map<string, HostEntry>();
  for (const m of req.sandboxPaths) {
    if (!m.target.startsWith('/') || !m.source.startsWith('/')) {
      throw new DarwinBadSandboxPath(`derivation '${drv}': sandbox path '${m.target}=${m.source}' is not absolute`, { drvPath: drv, target: m.target, source: m.source });
    }
    if (canonPath(m.target) !== canonPath(m.source)) {
      if (opts.explainOnly) {
        notes.push(`sandbox path '${m.target}=${m.source}' left out: a macOS build refuses paths mapped to another name`);
        continue;
      }
      throw new DarwinMappedPathMismatch(
        `derivation '${drv}': cannot map '${m.target}' to '${m.source}': macOS has no way to show a path under another name; use '${m.source}' alone`,
        { drvPath: drv, target: m.target, source: m.source },
      );
    }
    const p = canonPath(m.source);
    entries.set(p, { path: p, optional: m.optional, origin: 'sandbox-paths' });
  }
  const allowedPrefixes = req.allowedImpureHostDeps.filter((a) => a.startsWith('/')).map(canonPath);
  for (const dep of req.impureHostDeps) {
    if (!dep.startsWith('/')) {
      throw new DarwinBadSandboxPath(`derivation '${drv}' requested impure path '${dep}', which is not absolute`, { drvPath: drv, path: dep });
    }
    const p = canonPath(dep);
    // Symlinks are not followed here: resolving them would tell the
    // derivation about host files it may not see.
    if (!allowedPrefixes.some((a) => isWithin(p, a))) {
      throw new DarwinImpureHostDepNotAllowed(
        `derivation '${drv}' requested impure path '${dep}', but it is not in allowed-impure-host-deps (${allowedPrefixes.length ? allowedPrefixes.join(', ') : 'empty'})`,
        { drvPath: drv, path: dep, allowed: allowedPrefixes },
      );
    }
    // Missing impure deps are fine: macOS 11+ has no /usr/lib/libSystem*.dylib on disk.
    entries.set(p, { path: p, optional: true, origin: '__impureHostDeps' });
  }
  for (const ip of req.inputPaths) {
    const p = canonPath(ip);
    entries.set(p, { path: p, optional: false, origin: 'input' });
  }

  const allowed: PathFilter[] = [];
  const skipped: string[] = [];
  const ancestry = new Set<string>();
  for (const e of [...entries.values()].sort((a, b) => byteOrder(a.path, b.path))) {
    const kind = host.lstat(physical(e.path));
    if (kind === 'missing') {
      if (e.optional) {
        skipped.push(e.path);
        continue;
      }
      if (opts.explainOnly && host.platform !== 'darwin') {
        // Explaining elsewhere: macOS paths are not here to lstat.
        notes.push(`'${e.path}' does not exist on this ${host.platform} host; shown as a directory`);
        allowed.push({ kind: 'subpath', path: e.path });
        if (e.origin !== 'input') for (const a of parentsOf(e.path)) ancestry.add(a);
        continue;
      }
      throw new DarwinRequiredPathMissing(`derivation '${drv}': ${e.origin === 'input' ? 'input path' : 'sandbox path'} '${e.path}' does not exist`, {
        drvPath: drv,
        path: e.path,
        origin: e.origin,
      });
    }
    allowed.push({ kind: kind === 'directory' ? 'subpath' : 'literal', path: e.path });
    // Inputs share the store's parents, added below once.
    if (e.origin !== 'input') for (const a of parentsOf(e.path)) ancestry.add(a);
  }
  for (const a of [storeDir, ...parentsOf(storeDir), ...parentsOf(buildDir), ...parentsOf(globalTmpDir)]) ancestry.add(a);

  let extra = '';
  if (req.additionalSandboxProfile !== '') {
    const why = sbplUnbalanced(req.additionalSandboxProfile);
    if (why) {
      throw new DarwinSandboxProfileInvalid(`derivation '${drv}': __sandboxProfile is not a sequence of complete SBPL forms (${why})`, { drvPath: drv, reason: why });
    }
    extra = req.additionalSandboxProfile;
  }

  const outputs = [...new Set(Object.values(req.scratchOutputs).map(canonPath))].sort(byteOrder);
  const ancestryList = [...ancestry].sort(byteOrder);
  const assembled = withDrv(drv, () => assembleProfile({
    sandboxed: true,
    logViolations: req.settings.darwinLogSandboxViolations,
    network: req.fixedOutput,
    outputs,
    allowed,
    ancestry: ancestryList,
    extra,
  }));
  const params: Array<[string, string]> = [
    ['_GLOBAL_TMP_DIR', globalTmpDir],
    ['_NIX_BUILD_TOP', buildDir],
  ];
  if (req.allowLocalNetworking) params.push(['_ALLOW_LOCAL_NETWORKING', '1']);
  if (req.buildUser) params.push(['_ALLOW_SYSV_IPC', '1']);

  return {
    backend: 'darwin',
    request: req,
    sandboxed,
    profile: assembled.text,
    profilePath,
    params,
    buildDir,
    globalTmpDir,
    outputs,
    allowed,
    ancestry: ancestryList,
    skipped,
    groups: assembled.groups.map((g) => ({ ops: g.ops, filters: g.filters.length, filterBytes: g.filterBytes })),
    spawn: describeSpawn({ drvPath: drv, system: req.system, builder: req.builder, args: req.args, env: req.env, cwd: buildDir, profilePath, params, credentials }),
    notes,
  };
}
