// The store a recursive build's daemon serves: a view of the real store that
// shows only the build's input closure plus what the build added or built
// through it, so an inner `nix-build` cannot depend on anything it did not
// declare or produce (the seed's RestrictedStore).
//
// Policy:
//   - queries of other paths answer "not valid"; path info is censored (no
//     deriver, registration time 0, not ultimate, no signatures); referrers
//     are never revealed
//   - output-map queries, NarFromPath, EnsurePath (substitution) and builds of
//     paths outside the view fail with the seed's messages
//   - adding paths is allowed and each added path joins the view (and is made
//     visible in the sandbox through `addDependency`)
//   - builds: only the normal mode; fixed-output derivations are refused
//     unless allowed (they could reach the network from inside the sandbox);
//     the closure of every built output joins the view
//   - GC operations do nothing; realisations cannot be registered
import { defineError } from '../errors.js';
import { BuildMode, buildSucceeded } from './protocol.js';
import type {
  AddNarOptions,
  AddToStoreRequest,
  BuildResult,
  DaemonStore,
  DerivedPath,
  GcRequest,
  GcResult,
  GcRoot,
  MissingInfo,
  OpContext,
  PathInfo,
  Realisation,
} from './store-api.js';
import { formatDerivedPath } from './wire.js';

export class RecursiveOutputMapDenied extends defineError('RecursiveOutputMapDenied', 'E_RECURSIVE_OUTPUT_MAP_DENIED') {}
export class RecursiveDumpDenied extends defineError('RecursiveDumpDenied', 'E_RECURSIVE_DUMP_DENIED') {}
export class RecursiveSubstituteDenied extends defineError('RecursiveSubstituteDenied', 'E_RECURSIVE_SUBSTITUTE_DENIED') {}
export class RecursiveBuildDenied extends defineError('RecursiveBuildDenied', 'E_RECURSIVE_BUILD_DENIED') {}
export class RecursiveFixedOutputDenied extends defineError('RecursiveFixedOutputDenied', 'E_RECURSIVE_FIXED_OUTPUT_DENIED') {}
export class RecursiveBuildModeDenied extends defineError('RecursiveBuildModeDenied', 'E_RECURSIVE_BUILD_MODE_DENIED') {}
export class RecursiveRealisationDenied extends defineError('RecursiveRealisationDenied', 'E_RECURSIVE_REALISATION_DENIED') {}
export class RecursiveHashPartDenied extends defineError('RecursiveHashPartDenied', 'E_RECURSIVE_HASH_PART_DENIED') {}

/** The setting that lets inner builds of fixed-output derivations through. */
export const ALLOW_FIXED_OUTPUT_SETTING = 'recursive-nix-allow-fixed-output';

export interface RestrictedStoreOptions {
  next: DaemonStore;
  /** The build's input closure. */
  inputPaths: Iterable<string>;
  /**
   * Called once for every path that joins the view (added or built), after it
   * is valid and before the client hears about it: make it visible inside the
   * running sandbox. Must be a no-op for a path already visible.
   */
  addDependency(path: string): Promise<void>;
  /** Whether `drvPath` is a fixed-output derivation (reads the .drv). */
  isFixedOutput?(drvPath: string): Promise<boolean>;
  /**
   * The first derivation with network access (fixed-output, impure) that
   * building `drvPath` would run: the target or one of its inputs whose
   * outputs are missing; null when none. Preferred over isFixedOutput.
   */
  fixedOutputToBuild?(drvPath: string): Promise<string | null>;
  /** Let inner builds of fixed-output derivations run (default false). */
  allowFixedOutputBuilds?: boolean;
}

function censor(info: PathInfo): PathInfo {
  return { ...info, deriver: null, registrationTime: 0, ultimate: false, sigs: [] };
}

export class RestrictedStore implements DaemonStore {
  readonly storeDir: string;
  private readonly next: DaemonStore;
  private readonly inputs: Set<string>;
  /** Paths added or built through this store, in order. */
  readonly addedPaths = new Set<string>();
  readonly addedDrvOutputs = new Set<string>();

  constructor(private readonly opts: RestrictedStoreOptions) {
    this.next = opts.next;
    this.storeDir = opts.next.storeDir;
    this.inputs = new Set(opts.inputPaths);
  }

  isAllowed(path: string): boolean {
    return this.inputs.has(path) || this.addedPaths.has(path);
  }

  private isAllowedTarget(t: DerivedPath): boolean {
    return this.isAllowed(t.kind === 'opaque' ? t.path : t.drvPath);
  }

  private async addDependency(path: string): Promise<void> {
    if (this.isAllowed(path)) return;
    await this.opts.addDependency(path);
    this.addedPaths.add(path);
  }

  async isValidPath(path: string, ctx: OpContext): Promise<boolean> {
    return this.isAllowed(path) && this.next.isValidPath(path, ctx);
  }

  async queryValidPaths(paths: string[], _substitute: boolean, ctx: OpContext): Promise<string[]> {
    // never substitute from inside a build
    return this.next.queryValidPaths(paths.filter((p) => this.isAllowed(p)), false, ctx);
  }

  async queryPathInfo(path: string, ctx: OpContext): Promise<PathInfo | null> {
    if (!this.isAllowed(path)) return null;
    const info = await this.next.queryPathInfo(path, ctx);
    return info ? censor(info) : null;
  }

  async queryReferrers(_path: string, _ctx: OpContext): Promise<string[]> {
    return [];
  }

  async queryDerivationOutputMap(drvPath: string, ctx: OpContext): Promise<Map<string, string | null>> {
    if (!this.isAllowed(drvPath)) {
      throw new RecursiveOutputMapDenied(`cannot query output map for unknown path '${drvPath}' in recursive Nix`, { path: drvPath });
    }
    return this.next.queryDerivationOutputMap(drvPath, ctx);
  }

  async queryMissing(targets: DerivedPath[], ctx: OpContext): Promise<MissingInfo> {
    const allowed = targets.filter((t) => this.isAllowedTarget(t));
    const denied = targets.filter((t) => !this.isAllowedTarget(t)).map((t) => (t.kind === 'opaque' ? t.path : t.drvPath));
    const m = allowed.length > 0 ? await this.next.queryMissing(allowed, ctx) : { willBuild: [], willSubstitute: [], unknown: [], downloadSize: 0, narSize: 0 };
    return { ...m, unknown: [...new Set([...m.unknown, ...denied])].sort() };
  }

  async queryAllValidPaths(_ctx: OpContext): Promise<string[]> {
    return [...new Set([...this.inputs, ...this.addedPaths])].sort();
  }

  async queryPathFromHashPart(hashPart: string, _ctx: OpContext): Promise<string | null> {
    throw new RecursiveHashPartDenied(`looking up a store path by its hash part ('${hashPart}') is not allowed in recursive Nix`, { hashPart });
  }

  async addToStore(req: AddToStoreRequest, contents: AsyncIterable<Uint8Array>, ctx: OpContext): Promise<PathInfo> {
    const info = await this.next.addToStore(req, contents, ctx);
    await this.addDependency(info.path);
    return censor(info);
  }

  async addNarToStore(info: PathInfo, nar: AsyncIterable<Uint8Array>, opts: AddNarOptions, ctx: OpContext): Promise<void> {
    await this.next.addNarToStore(info, nar, opts, ctx);
    await this.addDependency(info.path);
  }

  async narFromPath(path: string, ctx: OpContext): Promise<AsyncIterable<Uint8Array>> {
    if (!this.isAllowed(path)) throw new RecursiveDumpDenied(`cannot dump unknown path '${path}' in recursive Nix`, { path });
    return this.next.narFromPath(path, ctx);
  }

  async ensurePath(path: string, _ctx: OpContext): Promise<void> {
    if (!this.isAllowed(path)) throw new RecursiveSubstituteDenied(`cannot substitute unknown path '${path}' in recursive Nix`, { path });
    // nothing to do: every path in the view is valid, and substituting is not allowed
  }

  async buildPaths(targets: DerivedPath[], mode: number, ctx: OpContext): Promise<BuildResult[]> {
    if (mode !== BuildMode.Normal) {
      throw new RecursiveBuildModeDenied(`build mode ${mode === BuildMode.Repair ? 'repair' : 'check'} is not supported in recursive Nix`, { mode });
    }
    for (const t of targets) {
      if (!this.isAllowedTarget(t)) {
        throw new RecursiveBuildDenied(`cannot build '${formatDerivedPath(t)}' in recursive Nix because path is unknown`, { target: formatDerivedPath(t) });
      }
    }
    if (!this.opts.allowFixedOutputBuilds) {
      for (const t of targets) {
        if (t.kind !== 'built') continue;
        const fod = this.opts.fixedOutputToBuild
          ? await this.opts.fixedOutputToBuild(t.drvPath)
          : (await this.opts.isFixedOutput?.(t.drvPath))
            ? t.drvPath
            : null;
        if (fod === null) continue;
        const neededBy = fod === t.drvPath ? '' : ` (needed by '${t.drvPath}')`;
        throw new RecursiveFixedOutputDenied(
          `cannot build fixed-output derivation '${fod}'${neededBy} in recursive Nix: it could reach the network from inside the sandbox (set '${ALLOW_FIXED_OUTPUT_SETTING} = true' to allow it)`,
          { drvPath: fod, target: t.drvPath },
        );
      }
    }
    const results = await this.next.buildPaths(targets, mode, ctx);
    const outputs = new Set<string>();
    for (const r of results) {
      if (!buildSucceeded(r.status)) continue;
      for (const o of r.builtOutputs) {
        outputs.add(o.outPath);
        this.addedDrvOutputs.add(o.id);
      }
      if (r.builtOutputs.length === 0 && r.path.kind === 'built') {
        const want = r.path.outputs;
        for (const [name, p] of await this.next.queryDerivationOutputMap(r.path.drvPath, ctx)) {
          if (p && (want.length === 0 || want.includes(name))) outputs.add(p);
        }
      }
    }
    for (const p of await this.closure([...outputs], ctx)) await this.addDependency(p);
    return results;
  }

  private async closure(start: string[], ctx: OpContext): Promise<string[]> {
    const seen = new Set<string>();
    const todo = [...start];
    while (todo.length > 0) {
      const p = todo.pop()!;
      if (seen.has(p)) continue;
      seen.add(p);
      const info = await this.next.queryPathInfo(p, ctx);
      for (const r of info?.references ?? []) if (!seen.has(r)) todo.push(r);
    }
    return [...seen].sort();
  }

  async addTempRoot(_path: string, _ctx: OpContext): Promise<void> {}

  async addIndirectRoot(_path: string, _ctx: OpContext): Promise<void> {}

  async findRoots(_censor: boolean, _ctx: OpContext): Promise<GcRoot[]> {
    return [];
  }

  async collectGarbage(_req: GcRequest, _ctx: OpContext): Promise<GcResult> {
    return { paths: [], bytesFreed: 0n };
  }

  async queryRealisation(id: string, ctx: OpContext): Promise<Realisation | null> {
    if (!this.addedDrvOutputs.has(id) || !this.next.queryRealisation) return null;
    return this.next.queryRealisation(id, ctx);
  }

  async registerDrvOutput(r: Realisation, _ctx: OpContext): Promise<void> {
    throw new RecursiveRealisationDenied(`registering realisation '${r.id}' is not allowed in recursive Nix`, { id: r.id });
  }
}
