// A local store: the layout on disk, the database, this process's temp
// roots, and the queries and registrations everything else builds on.
// Adding, importing, exporting, verifying and collecting garbage live in
// their own modules (add.ts, import.ts, export.ts, verify.ts, gc.ts) and
// are reachable as methods here for convenience.
import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Settings } from '../config/settings.js';
import { parseDerivation } from '../format/aterm.js';
import { derivationNameFromPath, outputPaths, type Derivation } from '../format/derivation.js';
import { hashDerivationModulo, staticOutputHashes, type DrvHash } from '../format/hash-modulo.js';
import { BadStorePath, isDerivationPath, makeOutputPath, parseStorePath, toStorePath } from '../format/store-path.js';
import { closure, topoSort } from './closure.js';
import { StoreDb, type DrvOutputId, type Realisation, type Registration } from './db.js';
import { BadDerivationOutputs, InvalidPath } from './errors.js';
import { addIndirectRoot, addPermRoot, findAllRoots, type Roots } from './gc-roots.js';
import { ensureLayout, storeLayout, type LocalStoreLocation, type StoreLayout } from './layout.js';
import { lockPaths, type LockPathsOptions, type PathLocks } from './path-locks.js';
import type { NewPathInfo, PathInfo } from './path-info.js';
import { TempRoots } from './temp-roots.js';

/** The settings the store acts on (a subset of config/settings.ts). */
export interface StoreSettings {
  fsyncMetadata: boolean;
  autoOptimiseStore: boolean;
  /** GC: keep the derivers of live paths (Nix's keep-derivations, default true). */
  keepDerivations: boolean;
  /** GC: keep the outputs of live derivations (Nix's keep-outputs, default false). */
  keepOutputs: boolean;
}

export function storeSettingsFrom(s: Settings | null | undefined, over: Partial<StoreSettings> = {}): StoreSettings {
  return {
    fsyncMetadata: s ? s.get('fsync-metadata') : false,
    autoOptimiseStore: s ? s.get('auto-optimise-store') : false,
    keepDerivations: true,
    keepOutputs: false,
    ...over,
  };
}

export interface OpenStoreOptions {
  /** Open the database read-only and create nothing (queries only). */
  readonly?: boolean;
  settings?: Partial<StoreSettings>;
}

export interface ClosureOptions {
  /** Follow referrers instead of references. */
  flip?: boolean;
  /** Forward: add the (valid) outputs of derivations; flipped: add the derivers. */
  includeOutputs?: boolean;
  /** Forward: add the valid deriver of each path; flipped: add the outputs of derivations. */
  includeDerivers?: boolean;
}

export class LocalStore {
  readonly tempRoots: TempRoots;
  private readonly drvCache = new Map<string, Derivation>();
  private readonly hashModuloCache = new Map<string, DrvHash>();
  private closed = false;

  private constructor(
    readonly layout: StoreLayout,
    readonly db: StoreDb,
    readonly settings: StoreSettings,
  ) {
    this.tempRoots = new TempRoots(layout);
  }

  /** Opens the store at `location`, creating its layout and database on first use. */
  static async open(location: LocalStoreLocation, settings: StoreSettings, opts: OpenStoreOptions = {}): Promise<LocalStore> {
    const layout = storeLayout(location);
    if (!opts.readonly) ensureLayout(layout);
    const db = await StoreDb.open(layout, { fsync: settings.fsyncMetadata, readonly: opts.readonly ?? false });
    return new LocalStore(layout, db, settings);
  }

  get storeDir(): string {
    return this.layout.storeDir;
  }

  get realStoreDir(): string {
    return this.layout.realStoreDir;
  }

  /** Releases temp roots and closes the database. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.tempRoots.close();
    } finally {
      this.db.close();
    }
  }

  // ---- paths -------------------------------------------------------------

  /** Throws BadStorePath unless `path` is `<storeDir>/<hash>-<name>`. */
  checkStorePath(path: string): string {
    parseStorePath(this.storeDir, path);
    return path;
  }

  /** The physical location of a logical path in (or equal to) a store path. */
  toRealPath(path: string): string {
    if (path !== this.storeDir && !path.startsWith(this.storeDir + '/')) {
      throw new BadStorePath(`path '${path}' is not in the store '${this.storeDir}'`, { path, storeDir: this.storeDir });
    }
    return this.realStoreDir + path.slice(this.storeDir.length);
  }

  /** The logical store path for a physical or logical path inside the store, or null. */
  storePathOf(path: string): string | null {
    for (const dir of [this.storeDir, this.realStoreDir]) {
      if (path.startsWith(dir + '/')) {
        try {
          return toStorePath(this.storeDir, this.storeDir + path.slice(dir.length));
        } catch {
          return null;
        }
      }
    }
    return null;
  }

  /**
   * A command-line argument to the store path it names: a store path, a path
   * inside one (logical or physical), or a symlink chain (an out-link)
   * leading into the store. Links are followed one component at a time, so
   * a chroot store's logical paths need not exist on the host.
   */
  followLinksToStorePath(arg: string, cwd: string = process.cwd()): string {
    let path = isAbsolute(arg) ? resolve(arg) : resolve(cwd, arg);
    for (let hops = 0; hops < 64; hops++) {
      const sp = this.storePathOf(path);
      if (sp) return sp;
      // Find the first component that is a symlink and substitute it.
      const parts = path.split('/').filter(Boolean);
      let cur = '';
      let replaced = false;
      for (let i = 0; i < parts.length; i++) {
        cur += '/' + parts[i];
        const sp2 = this.storePathOf(cur);
        if (sp2) return sp2;
        let st;
        try {
          st = lstatSync(cur);
        } catch {
          break;
        }
        if (st.isSymbolicLink()) {
          const target = readlinkSync(cur);
          const rest = parts.slice(i + 1).join('/');
          const base = resolve(dirname(cur), target);
          path = rest ? `${base}/${rest}` : base;
          replaced = true;
          break;
        }
      }
      if (!replaced) break;
    }
    throw new BadStorePath(`path '${arg}' is not in the store '${this.storeDir}' (nor a link to it)`, { path: arg });
  }

  // ---- queries -----------------------------------------------------------

  isValidPath(path: string): boolean {
    return this.db.isValidPath(path);
  }

  queryPathInfo(path: string): PathInfo | null {
    return this.db.queryPathInfo(path);
  }

  /** queryPathInfo that throws InvalidPath for an unknown path. */
  requirePathInfo(path: string): PathInfo {
    const info = this.db.queryPathInfo(path);
    if (!info) throw new InvalidPath(`path '${path}' is not valid`, { path });
    return info;
  }

  queryAllValidPaths(): string[] {
    return this.db.queryAllValidPaths();
  }

  queryReferences(path: string): string[] {
    return this.db.queryReferences(path);
  }

  queryReferrers(path: string): string[] {
    return this.db.queryReferrers(path);
  }

  queryDeriver(path: string): string | null {
    return this.requirePathInfo(path).deriver;
  }

  queryValidDerivers(path: string): string[] {
    return this.db.queryValidDerivers(path);
  }

  queryPathFromHashPart(hashPart: string): string | null {
    return this.db.queryPathFromHashPart(hashPart);
  }

  /** The DerivationOutputs table of a valid .drv (output name -> path). */
  queryDerivationOutputs(drvPath: string): Map<string, string> {
    return this.db.queryDerivationOutputs(drvPath);
  }

  /**
   * Every output of a .drv with its path where known, as Nix's
   * queryPartialDerivationOutputMap: the DerivationOutputs table, completed
   * from the derivation itself and, for CA outputs, from realisations.
   */
  queryPartialDerivationOutputMap(drvPath: string): Map<string, string | null> {
    const res = new Map<string, string | null>();
    let drv: Derivation | null = null;
    try {
      drv = this.readDerivation(drvPath);
    } catch {
      drv = null;
    }
    if (drv) {
      // Input-addressed and fixed outputs: the paths are in the derivation,
      // and its DerivationOutputs rows can only repeat them (no queries: a
      // build asks this of every input derivation, ~3% of its main thread).
      const known = outputPaths(this.storeDir, drv);
      if ([...known.values()].every((p) => p !== null)) return known;
    }
    const table = this.db.isValidPath(drvPath) ? this.db.queryDerivationOutputs(drvPath) : new Map<string, string>();
    if (drv) {
      for (const [name, p] of outputPaths(this.storeDir, drv)) res.set(name, table.get(name) ?? p);
      if ([...res.values()].some((p) => p === null)) {
        try {
          const hashes = staticOutputHashes(drv, {
            storeDir: this.storeDir,
            resolve: (p) => this.readDerivation(p),
            cache: this.hashModuloCache,
          });
          for (const [name, h] of hashes) {
            if (res.get(name) !== null) continue;
            const r = this.db.queryRealisation({ drvHash: h, outputName: name });
            if (r) res.set(name, r.outPath);
          }
        } catch {
          /* inputs missing: realisations cannot be looked up */
        }
      }
    }
    for (const [name, p] of table) res.set(name, p);
    return res;
  }

  /** Parses the .drv at a (logical) store path, memoised. */
  readDerivation(drvPath: string): Derivation {
    let d = this.drvCache.get(drvPath);
    if (!d) {
      const name = derivationNameFromPath(this.storeDir, drvPath);
      d = parseDerivation(readFileSync(this.toRealPath(drvPath)), name, { storeDir: this.storeDir });
      this.drvCache.set(drvPath, d);
    }
    return d;
  }

  // ---- registration ------------------------------------------------------

  /**
   * Registers paths already in place (canonicalised, final names) in one
   * transaction. For each .drv, its known output paths go into the
   * DerivationOutputs table and, with `checkOutputs` (default), are checked
   * against the derivation as Nix does.
   */
  registerValidPaths(infos: readonly NewPathInfo[], opts: { checkOutputs?: boolean } = {}): void {
    const regs: Registration[] = infos.map((info) => {
      if (!isDerivationPath(info.path)) return { info };
      const drv = this.readDerivation(info.path);
      const outs = new Map<string, string>();
      for (const [name, p] of outputPaths(this.storeDir, drv)) if (p) outs.set(name, p);
      return { info, derivationOutputs: outs };
    });
    if (opts.checkOutputs !== false) {
      for (const r of regs) if (r.derivationOutputs) this.checkDerivationOutputs(r.info.path, this.readDerivation(r.info.path));
    }
    this.db.registerValidPaths(regs);
  }

  /** Throws unless the output paths (and their env vars) of `drv` follow from it. */
  checkDerivationOutputs(drvPath: string, drv: Derivation): void {
    const drvName = derivationNameFromPath(this.storeDir, drvPath);
    let modulo: DrvHash | null = null;
    const envIs = (outName: string, expected: string) => {
      const v = drv.env.get(outName);
      if (v !== expected) {
        throw new BadDerivationOutputs(
          `derivation '${drvPath}' has incorrect environment variable '${outName}', should be '${expected}'`,
          { derivation: drvPath, output: outName, expected, got: v ?? null },
        );
      }
    };
    for (const [outName, out] of drv.outputs) {
      if (out.kind === 'inputAddressed') {
        modulo ??= hashDerivationModulo(drv, true, {
          storeDir: this.storeDir,
          resolve: (p) => this.readDerivation(p),
          cache: this.hashModuloCache,
        });
        const h = modulo.hashes.get(outName);
        const expected = h ? makeOutputPath(this.storeDir, outName, h, drvName) : null;
        if (expected !== out.path) {
          throw new BadDerivationOutputs(
            `derivation '${drvPath}' has incorrect output '${out.path}', should be '${expected}'`,
            { derivation: drvPath, output: outName, expected, got: out.path },
          );
        }
        envIs(outName, out.path);
      } else if (out.kind === 'caFixed') {
        const p = outputPaths(this.storeDir, drv).get(outName);
        if (p) envIs(outName, p);
      }
    }
  }

  registerDerivationOutputs(drvPath: string, outputs: ReadonlyMap<string, string>): void {
    this.db.registerDerivationOutputs(drvPath, outputs);
  }

  queryRealisation(id: DrvOutputId): Realisation | null {
    return this.db.queryRealisation(id);
  }

  registerRealisation(r: Realisation): void {
    this.db.registerRealisation(r);
  }

  invalidatePathChecked(path: string): void {
    this.db.invalidatePathChecked(path);
  }

  addSignatures(path: string, sigs: Iterable<string>): void {
    this.db.addSignatures(path, sigs);
  }

  // ---- closures ----------------------------------------------------------

  /** Nix's computeFSClosure: every path reachable from `paths` (which must be valid). */
  computeClosure(paths: Iterable<string>, opts: ClosureOptions = {}): Set<string> {
    const start = [...paths];
    for (const p of start) this.db.referencesOf(p); // valid, or InvalidPath
    const edges = (p: string): string[] => {
      const res: string[] = [];
      if (opts.flip) {
        for (const r of this.db.queryReferrers(p)) if (r !== p) res.push(r);
        if (opts.includeOutputs) res.push(...this.db.queryValidDerivers(p));
        if (opts.includeDerivers && isDerivationPath(p)) {
          for (const o of this.queryPartialDerivationOutputMap(p).values()) if (o && this.db.isValidPath(o)) res.push(o);
        }
      } else {
        for (const r of this.db.referencesOf(p)) if (r !== p) res.push(r);
        if (opts.includeOutputs && isDerivationPath(p)) {
          for (const o of this.queryPartialDerivationOutputMap(p).values()) if (o && this.db.isValidPath(o)) res.push(o);
        }
        if (opts.includeDerivers) {
          const deriver = this.requirePathInfo(p).deriver;
          if (deriver && this.db.isValidPath(deriver)) res.push(deriver);
        }
      }
      return res;
    };
    return closure(start, edges);
  }

  /** Referrers first (Nix's topoSortPaths); reverse it for references first. */
  topoSortPaths(paths: Iterable<string>): string[] {
    return topoSort(paths, (p) => this.db.referencesOf(p));
  }

  /** Sum of the NAR sizes of the closure of `path` (path-info --closure-size). */
  closureSize(path: string): number {
    let total = 0;
    for (const p of this.computeClosure([path])) total += this.requirePathInfo(p).narSize;
    return total;
  }

  // ---- roots and locks ---------------------------------------------------

  /** Keeps `path` from being garbage-collected while this process lives. */
  addTempRoot(path: string): Promise<void> {
    return this.tempRoots.add(path);
  }

  /** addTempRoot for several paths at once (one lock, one write). */
  addTempRoots(paths: readonly string[]): Promise<void> {
    return this.tempRoots.addMany(paths);
  }

  /** Registers an existing link (e.g. an out-link) as an indirect GC root. */
  addIndirectRoot(linkPath: string): string {
    return addIndirectRoot(this.layout, linkPath);
  }

  /** Creates `gcRoot` -> `storePath` and registers it as an indirect root (--out-link). */
  addPermRoot(storePath: string, gcRoot: string): string {
    this.checkStorePath(storePath);
    return addPermRoot(this.layout, storePath, gcRoot);
  }

  /** All GC roots (store path -> where from), as `nix-store --gc --print-roots`. */
  findRoots(opts: { runtime?: boolean } = {}): Roots {
    return findAllRoots(this.layout, (p) => this.db.isValidPath(p), opts);
  }

  /** Locks logical store paths against other writers (drvbox or Nix). */
  lockPaths(paths: Iterable<string>, opts?: LockPathsOptions): Promise<PathLocks | null> {
    return lockPaths([...paths].map((p) => this.toRealPath(p)), opts);
  }
}
