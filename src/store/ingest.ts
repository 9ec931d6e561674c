// The common path of everything that puts new contents into the store:
//
//   1. write them under a temp name in the store directory (a random
//      `<hash>-<label>` name protected by a temp root, so no collector,
//      ours or Nix's, deletes it while we work), hashing while writing;
//   2. canonicalise the metadata;
//   3. lock the final paths, and under the lock: skip those another process
//      made valid meanwhile (concurrent adders converge), remove invalid
//      leftovers, rename the temps into place, register everything in one
//      transaction;
//   4. on any failure: remove the temps and whatever was renamed but not
//      registered, so the store is as it was.
import { createHash, randomBytes, type Hash as CryptoHash } from 'node:crypto';
import { existsSync, lstatSync, renameSync } from 'node:fs';
import type { HashAlgo, Hash } from '../format/hash.js';
import { badNar, type NarEvent } from '../format/nar.js';
import { NarParser } from '../format/nar-reader.js';
import { NarWriter } from '../format/nar-writer.js';
import { nix32Encode } from '../format/nix32.js';
import { canonicalisePathMetaData } from './canonicalise.js';
import { deletePath, fsyncDir, fsyncTree } from './fs-util.js';
import type { LocalStore } from './local-store.js';
import { NarRestorer } from './nar-fs.js';
import { optimisePath } from './optimise.js';
import type { NewPathInfo } from './path-info.js';

/** A temp location in the store directory, protected by a temp root. */
export interface TempStorePath {
  logical: string;
  real: string;
  /** Deletes whatever is at the temp name (idempotent). */
  remove(): void;
}

export async function makeTempStorePath(store: LocalStore, label = 'drvbox-tmp'): Promise<TempStorePath> {
  const base = `${nix32Encode(randomBytes(20))}-${label}`;
  const logical = `${store.storeDir}/${base}`;
  await store.addTempRoot(logical);
  const real = store.toRealPath(logical);
  return {
    logical,
    real,
    remove() {
      deletePath(real);
    },
  };
}

function hashers(algos: Iterable<HashAlgo>): Map<HashAlgo, CryptoHash> {
  const m = new Map<HashAlgo, CryptoHash>();
  for (const a of algos) if (!m.has(a)) m.set(a, createHash(a));
  return m;
}

function digests(m: Map<HashAlgo, CryptoHash>): Map<HashAlgo, Hash> {
  const out = new Map<HashAlgo, Hash>();
  for (const [algo, h] of m) out.set(algo, { algo, digest: h.digest() });
  return out;
}

export interface NarResult {
  /** NAR hashes, one per requested algorithm (sha256 always present). */
  hashes: Map<HashAlgo, Hash>;
  narSize: number;
}

/**
 * NAR bytes in, a restored tree at `target` out, hashing the bytes as they
 * pass. The input must be exactly one NAR.
 */
export class NarBytesSink {
  private readonly restorer: NarRestorer;
  private readonly parser: NarParser;
  private readonly hs: Map<HashAlgo, CryptoHash>;
  private size = 0;

  constructor(readonly target: string, algos: Iterable<HashAlgo> = []) {
    this.restorer = new NarRestorer(target);
    this.parser = new NarParser({ onEvent: (e) => this.restorer.handle(e) });
    this.hs = hashers(['sha256', ...algos]);
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.parser.done) throw badNar(this.size, 'trailing-data', `${chunk.length} bytes after the end of the NAR`);
    this.parser.push(chunk);
    let used = chunk;
    if (this.parser.done) {
      const rest = this.parser.takeRemainder();
      if (rest.length > 0) throw badNar(this.size + chunk.length - rest.length, 'trailing-data', `${rest.length} bytes after the end of the NAR`);
      used = chunk.subarray(0, chunk.length - rest.length);
    }
    for (const h of this.hs.values()) h.update(used);
    this.size += used.length;
  }

  finish(): NarResult {
    this.parser.finish();
    this.restorer.finish();
    return { hashes: digests(this.hs), narSize: this.size };
  }

  abort(): void {
    this.restorer.abort();
  }
}

/**
 * NAR events in (from an export stream, or made up for a flat file), a
 * restored tree out; the NAR bytes are re-encoded to hash them (the reader
 * accepts only the canonical form, so they are the bytes that were read).
 */
export class NarEventSink {
  private readonly restorer: NarRestorer;
  private readonly writer = new NarWriter();
  private readonly hs: Map<HashAlgo, CryptoHash>;
  private size = 0;

  constructor(readonly target: string, algos: Iterable<HashAlgo> = []) {
    this.restorer = new NarRestorer(target);
    this.hs = hashers(['sha256', ...algos]);
  }

  handle(e: NarEvent): void {
    const bytes = this.writer.write(e);
    for (const h of this.hs.values()) h.update(bytes);
    this.size += bytes.length;
    this.restorer.handle(e);
  }

  finish(): NarResult {
    this.writer.end();
    this.restorer.finish();
    return { hashes: digests(this.hs), narSize: this.size };
  }

  abort(): void {
    this.restorer.abort();
  }
}

export interface Staged {
  temp: TempStorePath;
  info: NewPathInfo;
}

export interface InstallOptions {
  /** Replace the contents of paths that are already valid. */
  repair?: boolean;
}

/**
 * Moves staged temps to their final names and registers them, all in one
 * transaction (step 3 above). Returns the paths that were newly installed.
 * The temps are gone afterwards, whatever happened.
 */
export async function installStaged(store: LocalStore, staged: readonly Staged[], opts: InstallOptions = {}): Promise<string[]> {
  const byPath = new Map<string, Staged>();
  for (const s of staged) if (!byPath.has(s.info.path)) byPath.set(s.info.path, s);
  const removeTemps = () => {
    for (const s of staged) {
      try {
        s.temp.remove();
      } catch {
        /* best effort */
      }
    }
  };
  try {
    for (const p of byPath.keys()) await store.addTempRoot(p);
    const wanted = [...byPath.values()].filter((s) => opts.repair || !store.isValidPath(s.info.path));
    if (wanted.length === 0) return [];
    for (const s of wanted) canonicalisePathMetaData(s.temp.real);
    const locks = await store.lockPaths(wanted.map((s) => s.info.path));
    if (!locks) return [];
    const moved: Array<{ real: string; old: string | null }> = [];
    try {
      // Someone else may have finished the same paths while we waited.
      const todo = wanted.filter((s) => opts.repair || !store.isValidPath(s.info.path));
      for (const s of todo) {
        const real = store.toRealPath(s.info.path);
        let old: string | null = null;
        if (existsOrLink(real)) {
          if (store.isValidPath(s.info.path)) {
            // Repair: keep the old copy aside until the new one is registered.
            old = `${s.temp.real}.old`;
            renameSync(real, old);
          } else {
            deletePath(real); // an invalid leftover (crash, interrupted add)
          }
        }
        if (store.settings.fsyncMetadata) fsyncTree(s.temp.real);
        renameSync(s.temp.real, real);
        moved.push({ real, old });
      }
      if (store.settings.fsyncMetadata) fsyncDir(store.realStoreDir);
      if (store.settings.autoOptimiseStore) for (const m of moved) await optimisePath(store, m.real);
      store.registerValidPaths(todo.map((s) => s.info));
      for (const m of moved) if (m.old) deletePath(m.old);
      locks.setDeletion(true);
      return todo.map((s) => s.info.path);
    } catch (e) {
      for (const m of moved) {
        try {
          deletePath(m.real);
          if (m.old) renameSync(m.old, m.real);
        } catch {
          /* best effort: an invalid leftover is removed by the next add or GC */
        }
      }
      throw e;
    } finally {
      locks.release();
    }
  } finally {
    removeTemps();
  }
}

function existsOrLink(p: string): boolean {
  if (existsSync(p)) return true;
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
