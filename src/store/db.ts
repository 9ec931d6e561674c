// The store database: Nix 2.8's SQLite schema through better-sqlite3, with
// the pragmas Nix sets (WAL, foreign keys, 40000-page autocheckpoint). This
// module knows SQL only; reading .drv files and the file system is the
// caller's job. Every multi-row change runs in one IMMEDIATE transaction.
import Database from 'better-sqlite3';
import { existsSync, readFileSync, renameSync, writeFileSync, openSync, closeSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { formatHash, parseHash, type Hash } from '../format/hash.js';
import { isDerivationPath, parseStorePath } from '../format/store-path.js';
import { lockWait, unlock } from './flock.js';
import { contentAddressedPath, parseContentAddress } from './content-address.js';
import {
  ContentAddressMismatch,
  InvalidPath,
  PathInUse,
  RealisationConflict,
  ReferenceNotValid,
  StoreLayoutError,
  UnsupportedSchema,
} from './errors.js';
import type { StoreLayout } from './layout.js';
import { completePathInfo, type NewPathInfo, type PathInfo } from './path-info.js';
import { CA_SCHEMA_SQL, NIX_CA_SCHEMA_VERSION, NIX_SCHEMA_VERSION, SCHEMA_SQL } from './schema.js';
import { topoSort } from './closure.js';

type Db = Database.Database;

interface PathRow {
  id: number;
  hash: string;
  registrationTime: number;
  deriver: string | null;
  narSize: number | null;
  ultimate: number | null;
  sigs: string | null;
  ca: string | null;
}

/** A CA derivation output's identity: the derivation's modulo hash and the output name. */
export interface DrvOutputId {
  drvHash: Hash;
  outputName: string;
}

export interface Realisation {
  id: DrvOutputId;
  outPath: string;
  signatures: string[];
  /** Realisations this one depends on (`<drvHash>!<output>` -> output path). */
  dependentRealisations: Map<string, string>;
}

/** `sha256:<base16>!out`, Nix's DrvOutput::to_string. */
export function drvOutputIdString(id: DrvOutputId): string {
  return `${formatHash(id.drvHash, 'base16')}!${id.outputName}`;
}

export function parseDrvOutputId(s: string): DrvOutputId {
  const bang = s.lastIndexOf('!');
  if (bang < 0) throw new RealisationConflict(`invalid derivation output id '${s}' (expected '<hash>!<output>')`, { id: s });
  return { drvHash: parseHash(s.slice(0, bang)), outputName: s.slice(bang + 1) };
}

function readSchema(path: string): number {
  if (!existsSync(path)) return 0;
  const s = readFileSync(path, 'utf8').trim();
  if (!/^\d+$/.test(s)) throw new UnsupportedSchema(`schema file '${path}' is corrupt (contents '${s}')`, { path, value: s });
  return Number(s);
}

function writeSchema(path: string, version: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, String(version));
  renameSync(tmp, path);
}

export interface OpenDbOptions {
  /** fsync-metadata: synchronous=normal instead of off. */
  fsync: boolean;
  readonly?: boolean;
}

/** Registration input: a path's info plus, for a .drv, the output paths it names. */
export interface Registration {
  info: NewPathInfo;
  /** For .drv paths: output name -> path, for outputs whose path is known. */
  derivationOutputs?: ReadonlyMap<string, string>;
}

let addonPath: string | null | undefined;

/**
 * better-sqlite3's compiled addon, handed over as `nativeBinding`: its own
 * lookup (the `bindings` package: a stack trace and a dozen candidate paths)
 * was a good part of a no-op build's start-up, and it cannot find the addon
 * from the bundled CLI at all. null: let better-sqlite3 look.
 */
function sqliteAddon(): string | null {
  if (addonPath === undefined) {
    addonPath = null;
    try {
      const pkg = createRequire(import.meta.url).resolve('better-sqlite3/package.json');
      const addon = join(dirname(pkg), 'build', 'Release', 'better_sqlite3.node');
      if (existsSync(addon)) addonPath = addon;
    } catch {
      // not resolvable from here: better-sqlite3's own lookup
    }
  }
  return addonPath;
}

export class StoreDb {
  private readonly stmts = new Map<string, Database.Statement>();
  /** References of valid paths (see referencesOf). */
  private readonly refsCache = new Map<string, readonly string[]>();

  private constructor(
    readonly db: Db,
    readonly storeDir: string,
    readonly path: string,
  ) {}

  /** Opens (creating it and its schema files on first use) the database of `layout`. */
  static async open(layout: StoreLayout, opts: OpenDbOptions): Promise<StoreDb> {
    let schema = readSchema(layout.schemaPath);
    if (schema > NIX_SCHEMA_VERSION) {
      throw new UnsupportedSchema(
        `store database '${layout.dbPath}' has schema version ${schema}, drvbox supports ${NIX_SCHEMA_VERSION}`,
        { path: layout.dbPath, version: schema },
      );
    }
    if (schema !== 0 && schema < NIX_SCHEMA_VERSION) {
      throw new UnsupportedSchema(
        `store database '${layout.dbPath}' has the old schema version ${schema}; open it once with Nix 2.8 to upgrade it`,
        { path: layout.dbPath, version: schema },
      );
    }
    if (schema === 0 && !opts.readonly) {
      // A new store: create it under Nix's big lock so concurrent first opens
      // (two drvbox processes, or drvbox and Nix) do not race on the schema.
      const fd = openSync(layout.bigLockPath, constants.O_RDWR | constants.O_CREAT, 0o600);
      try {
        await lockWait(fd, 'exclusive', layout.bigLockPath);
        schema = readSchema(layout.schemaPath);
        if (schema === 0) {
          const db = StoreDb.connect(layout, opts, true);
          try {
            db.exec(SCHEMA_SQL);
          } finally {
            db.close();
          }
          writeSchema(layout.schemaPath, NIX_SCHEMA_VERSION);
        }
        unlock(fd, layout.bigLockPath);
      } finally {
        closeSync(fd);
      }
    }
    const db = StoreDb.connect(layout, opts, false);
    const store = new StoreDb(db, layout.storeDir, layout.dbPath);
    if (!opts.readonly) store.ensureCaSchema(layout.caSchemaPath);
    return store;
  }

  private static connect(layout: StoreLayout, opts: OpenDbOptions, create: boolean): Db {
    let db: Db | null = null;
    try {
      const addon = sqliteAddon();
      db = new Database(layout.dbPath, {
        ...(addon ? { nativeBinding: addon } : {}),
        fileMustExist: !create,
        readonly: opts.readonly ?? false,
        // Nix waits up to an hour for a busy database; so do we.
        timeout: 60 * 60 * 1000,
      });
      db.pragma('foreign_keys = 1');
      if (!opts.readonly) {
        db.pragma(`synchronous = ${opts.fsync ? 'normal' : 'off'}`);
        const mode = db.pragma('main.journal_mode', { simple: true }) as string;
        if (mode !== 'wal') db.pragma('main.journal_mode = wal');
        db.pragma('wal_autocheckpoint = 40000');
      }
      return db;
    } catch (e) {
      db?.close();
      throw new StoreLayoutError(`cannot open the store database '${layout.dbPath}': ${(e as Error).message}`, { path: layout.dbPath }, { cause: e });
    }
  }

  private ensureCaSchema(path: string): void {
    const v = readSchema(path);
    if (v === NIX_CA_SCHEMA_VERSION) return;
    if (v > NIX_CA_SCHEMA_VERSION || v !== 0) {
      throw new UnsupportedSchema(
        `store CA schema '${path}' has version ${v}, drvbox supports ${NIX_CA_SCHEMA_VERSION} (open it with Nix 2.8 with ca-derivations enabled)`,
        { path, version: v },
      );
    }
    // `create ... if not exists` in one transaction: idempotent and race-free.
    this.db.transaction(() => this.db.exec(CA_SCHEMA_SQL)).immediate();
    writeSchema(path, NIX_CA_SCHEMA_VERSION);
  }

  close(): void {
    this.stmts.clear();
    if (this.db.open) this.db.close();
  }

  private stmt(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction (rolled back when it throws);
   * inside another transaction, in a savepoint. Prepared BEGIN/COMMIT:
   * better-sqlite3's db.transaction(fn) builds a wrapper per call, ~2.5% of
   * the CPU of a build of many small derivations.
   */
  transaction<T>(fn: () => T): T {
    const nested = this.db.inTransaction;
    this.stmt(nested ? 'savepoint drvbox_nested' : 'begin immediate').run();
    try {
      const r = fn();
      this.stmt(nested ? 'release drvbox_nested' : 'commit').run();
      return r;
    } catch (e) {
      if (this.db.inTransaction) {
        if (nested) {
          this.stmt('rollback to drvbox_nested').run();
          this.stmt('release drvbox_nested').run();
        } else this.stmt('rollback').run();
      }
      throw e;
    }
  }

  // ---- queries ----------------------------------------------------------

  private row(path: string): PathRow | undefined {
    return this.stmt(
      'select id, hash, registrationTime, deriver, narSize, ultimate, sigs, ca from ValidPaths where path = ?',
    ).get(path) as PathRow | undefined;
  }

  pathId(path: string): number | null {
    const r = this.stmt('select id from ValidPaths where path = ?').get(path) as { id: number } | undefined;
    return r ? r.id : null;
  }

  isValidPath(path: string): boolean {
    return this.pathId(path) !== null;
  }

  private requireId(path: string): number {
    const id = this.pathId(path);
    if (id === null) throw new InvalidPath(`path '${path}' is not valid`, { path });
    return id;
  }

  queryPathInfo(path: string): PathInfo | null {
    const r = this.row(path);
    if (!r) return null;
    let narHash: Hash;
    try {
      narHash = parseHash(r.hash);
    } catch (e) {
      throw new InvalidPath(`invalid-path entry for '${path}': ${(e as Error).message}`, { path, hash: r.hash });
    }
    return {
      path,
      narHash,
      narSize: r.narSize ?? 0,
      references: this.referencesById(r.id),
      deriver: r.deriver || null,
      registrationTime: r.registrationTime,
      ultimate: r.ultimate === 1,
      sigs: r.sigs ? r.sigs.split(' ').filter(Boolean).sort() : [],
      ca: r.ca || null,
    };
  }

  private referencesById(id: number): string[] {
    const rows = this.stmt('select path from Refs join ValidPaths on reference = id where referrer = ?').all(id) as Array<{
      path: string;
    }>;
    return rows.map((r) => r.path).sort();
  }

  queryReferences(path: string): string[] {
    return this.referencesById(this.requireId(path));
  }

  /**
   * queryReferences, remembered: the references of a path do not change while
   * it stays valid (registering or invalidating here forgets them), and every
   * build walks its whole input closure. Throws InvalidPath for an unknown path.
   */
  referencesOf(path: string): readonly string[] {
    let refs = this.refsCache.get(path);
    if (!refs) {
      refs = this.queryReferences(path);
      this.refsCache.set(path, refs);
    }
    return refs;
  }

  queryReferrers(path: string): string[] {
    const rows = this.stmt(
      'select path from Refs join ValidPaths on referrer = id where reference = (select id from ValidPaths where path = ?)',
    ).all(path) as Array<{ path: string }>;
    return rows.map((r) => r.path).sort();
  }

  queryAllValidPaths(): string[] {
    return (this.stmt('select path from ValidPaths').all() as Array<{ path: string }>).map((r) => r.path).sort();
  }

  /** Valid derivations that name `path` as an output (DerivationOutputs). */
  queryValidDerivers(path: string): string[] {
    const rows = this.stmt(
      'select v.id, v.path from DerivationOutputs d join ValidPaths v on d.drv = v.id where d.path = ?',
    ).all(path) as Array<{ path: string }>;
    return [...new Set(rows.map((r) => r.path))].sort();
  }

  /** The DerivationOutputs rows of a valid .drv: output name -> path. */
  queryDerivationOutputs(drvPath: string): Map<string, string> {
    const id = this.requireId(drvPath);
    const rows = this.stmt('select id, path from DerivationOutputs where drv = ?').all(id) as Array<{ id: string; path: string }>;
    return new Map(rows.map((r) => [r.id, r.path]));
  }

  /** The valid path whose hash part is `hashPart`, or null. */
  queryPathFromHashPart(hashPart: string): string | null {
    const prefix = `${this.storeDir}/${hashPart}`;
    const r = this.stmt('select path from ValidPaths where path >= ? limit 1').get(prefix) as { path: string } | undefined;
    return r && r.path.startsWith(prefix + '-') ? r.path : null;
  }

  // ---- changes ----------------------------------------------------------

  private insertPath(info: PathInfo): number {
    const res = this.stmt(
      'insert into ValidPaths (path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca) values (?, ?, ?, ?, ?, ?, ?, ?)',
    ).run(
      info.path,
      formatHash(info.narHash, 'base16'),
      info.registrationTime || Math.floor(Date.now() / 1000),
      info.deriver,
      info.narSize !== 0 ? info.narSize : null,
      info.ultimate ? 1 : null,
      info.sigs.length > 0 ? info.sigs.join(' ') : null,
      info.ca,
    );
    return Number(res.lastInsertRowid);
  }

  private updatePath(info: PathInfo): void {
    this.stmt('update ValidPaths set narSize = ?, hash = ?, ultimate = ?, sigs = ?, ca = ? where path = ?').run(
      info.narSize !== 0 ? info.narSize : null,
      formatHash(info.narHash, 'base16'),
      info.ultimate ? 1 : null,
      info.sigs.length > 0 ? info.sigs.join(' ') : null,
      info.ca,
      info.path,
    );
  }

  /** Updates the metadata of a valid path (narSize, narHash, ultimate, sigs, ca), as Nix's updatePathInfo. */
  updatePathInfo(info: PathInfo): void {
    this.requireId(info.path);
    this.updatePath(info);
  }

  private checkContentAddress(info: PathInfo): void {
    if (!info.ca) return;
    const ca = parseContentAddress(info.ca);
    const { name } = parseStorePath(this.storeDir, info.path);
    let expected: string | null = null;
    try {
      expected = contentAddressedPath(this.storeDir, ca, name, info.references, info.path);
    } catch {
      expected = null;
    }
    if (expected !== info.path) {
      throw new ContentAddressMismatch(
        `cannot add path '${info.path}' to the store because it claims to be content-addressed ('${info.ca}') but isn't` +
          (expected ? ` (that content address gives '${expected}')` : ''),
        { path: info.path, ca: info.ca, expected },
      );
    }
  }

  /**
   * Registers (or updates) paths in one transaction. References must be valid
   * already or be registered in the same batch; a reference cycle between
   * the new paths (other than self-references) rolls everything back.
   */
  registerValidPaths(regs: readonly Registration[]): void {
    const infos = regs.map((r) => completePathInfo(r.info));
    this.transaction(() => {
      const batch = new Map<string, PathInfo>();
      infos.forEach((info, i) => {
        parseStorePath(this.storeDir, info.path);
        this.refsCache.delete(info.path);
        for (const ref of info.references) parseStorePath(this.storeDir, ref);
        if (info.deriver) parseStorePath(this.storeDir, info.deriver);
        this.checkContentAddress(info);
        const existing = this.pathId(info.path);
        if (existing !== null) {
          this.updatePath(info);
        } else {
          const id = this.insertPath(info);
          const outs = regs[i]!.derivationOutputs;
          if (outs && isDerivationPath(info.path)) this.addDerivationOutputsById(id, outs);
        }
        batch.set(info.path, info);
      });
      for (const info of infos) {
        const referrer = this.requireId(info.path);
        for (const ref of info.references) {
          const refId = this.pathId(ref);
          if (refId === null) {
            throw new ReferenceNotValid(`cannot register '${info.path}': its reference '${ref}' is not valid`, {
              path: info.path,
              reference: ref,
            });
          }
          this.stmt('insert or replace into Refs (referrer, reference) values (?, ?)').run(referrer, refId);
        }
      }
      topoSort(batch.keys(), (p) => batch.get(p)?.references ?? []);
    });
  }

  private addDerivationOutputsById(drvId: number, outputs: ReadonlyMap<string, string>): void {
    const s = this.stmt('insert or replace into DerivationOutputs (drv, id, path) values (?, ?, ?)');
    for (const [name, path] of outputs) s.run(drvId, name, path);
  }

  /** Records output paths of a valid derivation (e.g. CA outputs once built). */
  registerDerivationOutputs(drvPath: string, outputs: ReadonlyMap<string, string>): void {
    this.transaction(() => this.addDerivationOutputsById(this.requireId(drvPath), outputs));
  }

  /** Deletes a path's registration; fails when valid paths other than itself refer to it. */
  invalidatePathChecked(path: string): void {
    this.transaction(() => {
      if (!this.isValidPath(path)) return;
      const referrers = this.queryReferrers(path).filter((p) => p !== path);
      if (referrers.length > 0) {
        throw new PathInUse(`cannot delete path '${path}' because it is in use by ${referrers.map((r) => `'${r}'`).join(', ')}`, {
          path,
          referrers,
        });
      }
      this.invalidatePath(path);
    });
  }

  /** Deletes a path's registration without checks (the caller handles referrers). */
  invalidatePath(path: string): void {
    this.refsCache.clear();
    this.stmt('delete from ValidPaths where path = ?').run(path);
  }

  /** Adds signatures to a valid path. */
  addSignatures(path: string, sigs: Iterable<string>): void {
    this.transaction(() => {
      const info = this.queryPathInfo(path);
      if (!info) throw new InvalidPath(`path '${path}' is not valid`, { path });
      info.sigs = [...new Set([...info.sigs, ...sigs])].sort();
      this.updatePath(info);
    });
  }

  // ---- realisations (CA derivations) -------------------------------------

  private realisationCore(id: DrvOutputId): { rowId: number; outPath: string; signatures: string[] } | null {
    const r = this.stmt(
      `select Realisations.id as rowId, Output.path as outPath, Realisations.signatures as signatures from Realisations
         inner join ValidPaths as Output on Output.id = Realisations.outputPath
         where drvPath = ? and outputName = ?`,
    ).get(formatHash(id.drvHash, 'base16'), id.outputName) as
      | { rowId: number; outPath: string; signatures: string | null }
      | undefined;
    if (!r) return null;
    return { rowId: r.rowId, outPath: r.outPath, signatures: (r.signatures ?? '').split(' ').filter(Boolean).sort() };
  }

  queryRealisation(id: DrvOutputId): Realisation | null {
    const core = this.realisationCore(id);
    if (!core) return null;
    const deps = new Map<string, string>();
    const rows = this.stmt(
      `select drvPath, outputName from Realisations
         join RealisationsRefs on realisationReference = Realisations.id
         where referrer = ?`,
    ).all(core.rowId) as Array<{ drvPath: string; outputName: string }>;
    for (const r of rows) {
      const depId = { drvHash: parseHash(r.drvPath), outputName: r.outputName };
      const dep = this.realisationCore(depId);
      if (dep) deps.set(drvOutputIdString(depId), dep.outPath);
    }
    return { id, outPath: core.outPath, signatures: core.signatures, dependentRealisations: deps };
  }

  /** Registers a CA derivation output's realisation (merging signatures of an identical one). */
  registerRealisation(r: Realisation): void {
    this.transaction(() => {
      const old = this.realisationCore(r.id);
      const drvHash = formatHash(r.id.drvHash, 'base16');
      if (old) {
        if (old.outPath !== r.outPath) {
          throw new RealisationConflict(
            `cannot register realisation '${drvOutputIdString(r.id)}' -> '${r.outPath}': the store already has '${old.outPath}'`,
            { id: drvOutputIdString(r.id), local: old.outPath, remote: r.outPath },
          );
        }
        const sigs = [...new Set([...old.signatures, ...r.signatures])].sort();
        this.stmt('update Realisations set signatures = ? where drvPath = ? and outputName = ?').run(
          sigs.join(' '),
          drvHash,
          r.id.outputName,
        );
      } else {
        const outId = this.requireId(r.outPath);
        this.stmt('insert into Realisations (drvPath, outputName, outputPath, signatures) values (?, ?, ?, ?)').run(
          drvHash,
          r.id.outputName,
          outId,
          r.signatures.join(' '),
        );
      }
      for (const [depIdStr, depPath] of r.dependentRealisations) {
        const depId = parseDrvOutputId(depIdStr);
        const dep = this.realisationCore(depId);
        if (!dep) {
          throw new RealisationConflict(
            `cannot register realisation '${drvOutputIdString(r.id)}': it depends on the unknown realisation '${depIdStr}'`,
            { id: drvOutputIdString(r.id), dependency: depIdStr },
          );
        }
        if (dep.outPath !== depPath) {
          throw new RealisationConflict(
            `cannot register realisation '${drvOutputIdString(r.id)}': its dependency '${depIdStr}' is '${depPath}' here but '${dep.outPath}' locally`,
            { id: drvOutputIdString(r.id), dependency: depIdStr },
          );
        }
        this.stmt(
          `insert or replace into RealisationsRefs (referrer, realisationReference) values (
             (select id from Realisations where drvPath = ? and outputName = ?),
             (select id from Realisations where drvPath = ? and outputName = ?))`,
        ).run(drvHash, r.id.outputName, formatHash(depId.drvHash, 'base16'), depId.outputName);
      }
    });
  }
}
