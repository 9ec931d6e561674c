// Registering the outputs of a build, as Nix's registerOutputs does, with
// the output data streamed (Nix holds a whole output in memory to rewrite
// it: its own FIXME, Nix issues 5854 and 6925).
//
// 1. For each output not already valid (all of them with --check): it must
//    exist, not be group/world-writable nor owned by someone other than the
//    build user; its metadata is canonicalised. One streaming pass over its
//    NAR then finds the references (hash parts of the input closure, the
//    scratch outputs and the paths added during the build) and computes, in
//    the same pass, the NAR hash (input-addressed) or the content hash
//    modulo its own scratch hash part (content-addressed: the hash of the
//    data with every self-reference zeroed, plus the offsets of the
//    self-references, so the result does not depend on where it was built).
// 2. Outputs are ordered so that referenced outputs come first (a cycle
//    between outputs fails, with Nix's message).
// 3. In that order each output gets its final path: the derivation's for
//    input-addressed and fixed outputs, the one its content hash and
//    references give for CA floating/impure outputs. Scratch hash parts
//    (own and of outputs already done) are rewritten to final ones. When the
//    first pass saw none of them the data is used as is; otherwise a second
//    pass rewrites the NAR stream, restores it under a temp name in the store
//    and hashes it, all at once, in constant memory. The modulo hash is only
//    recomputed (rewriting on the fly) when the output refers to a sibling
//    whose hash part changes.
// 4. Normal and repair mode: move into the store (repair swaps the valid
//    path), optionally hard-link identical files (auto-optimise-store), run
//    the output checks, then register every output (and CA realisations) in
//    one transaction. A fixed output with the wrong hash is registered under
//    its actual path first, then fails (exit 102).
//    Check mode: compare NAR hashes with the valid outputs (and, unlike Nix,
//    the path a CA floating output had before, Nix issue 5336); see
//    check-compare.ts.
import { lstatSync, renameSync, chmodSync, existsSync, type Stats } from 'node:fs';
import { createHash, type Hash as NodeHash } from 'node:crypto';
import { compareUtf8, sortedUtf8, type Derivation, type DerivationOutput } from '../format/derivation.js';
import { formatHash, hashEquals, type Hash, type HashAlgo } from '../format/hash.js';
import { NAR_BYTES } from '../format/nar-writer.js';
import { HashPartTable, IS_NIX32, RefScanner, scanWindows } from '../format/refscan.js';
import { ModuloOffsets } from '../format/rewrite.js';
import {
  BadStorePath,
  makeContentAddressedPath,
  outputPathName,
  parseStorePath,
  type ContentMethod,
} from '../format/store-path.js';
import { canonicalisePathMetaData } from '../store/canonicalise.js';
import { renderContentAddress } from '../store/content-address.js';
import type { Realisation } from '../store/db.js';
import { deletePath } from '../store/fs-util.js';
import { makeTempStorePath, NarBytesSink, type TempStorePath } from '../store/ingest.js';
import type { LocalStore } from '../store/local-store.js';
import { streamNar } from '../store/nar-fs.js';
import { optimisePath } from '../store/optimise.js';
import type { NewPathInfo, PathInfo } from '../store/path-info.js';
import type { PathLocks } from '../store/path-locks.js';
import type { PlacedOutput } from './placed.js';
import { notDeterministicError, runDiffHook, type CheckDifference } from './check-compare.js';
import {
  BadDerivationAttr,
  CaOutputIllegalReferences,
  CaOutputNotRegularFile,
  FixedOutputHashMismatch,
  FixedOutputHasReferences,
  OutputBadPermissions,
  OutputMissing,
  ReferenceCycleInOutputs,
  RegisterInternalError,
} from './errors-register.js';
import { checkOutputs, type CheckedPathInfo } from './output-checks.js';
import type { BuildMode, OutputPlan, OutputPlanEntry } from './output-plan.js';
import { isJsonObject, type JsonObject } from './structured-attrs.js';

export interface RegisterSettings {
  autoOptimise: boolean;
  keepFailed: boolean;
  diffHook: string;
  runDiffHook: boolean;
}

export interface RegisterInput {
  store: LocalStore;
  drvPath: string;
  drv: Derivation;
  plan: OutputPlan;
  mode: BuildMode;
  /** backend.realPathOfScratchOutput: where a scratch output is on the host. */
  realPathOf(scratchLogicalPath: string): string;
  /** Reference-scan candidates: the input closure (the scratch outputs are added here). */
  inputClosure: ReadonlySet<string>;
  /** Paths added or built during the build (recursive builds). */
  addedPaths: ReadonlySet<string>;
  /** Build user uid: outputs must be owned by it (ownership check, canonicalise). */
  fromUid?: number;
  structuredAttrs: Record<string, unknown> | null;
  settings: RegisterSettings;
  /** Output name -> the derivation's output hash, for CA realisations (drvHash!out). */
  drvHashes?: ReadonlyMap<string, Hash>;
  /** Goes to the build log and -v output. */
  log(line: string): void;
  /** The build dir, the diff hook's fourth argument (default: empty). */
  buildDir?: string;
  /** The diff hook runs as this user (the build user), as in Nix. */
  buildUser?: { uid: number; gid: number };
  /**
   * Normal mode: told once the outputs built are in their final place and
   * pass the output checks, just before the transaction that registers them
   * (see placed.ts). What it throws is ignored.
   */
  onPlaced?(outputs: readonly PlacedOutput[]): void;
}

export interface RegisteredOutput {
  name: string;
  path: string;
  info: PathInfo;
  /** false for an output that was valid already and left alone (a sibling of rebuilt outputs; every output in check mode). */
  built: boolean;
}

const S_IXUSR = 0o100;
/** Bytes before the contents in the NAR of a regular non-executable file. */
const FLAT_CONTENTS_OFFSET = NAR_BYTES.magic.length + NAR_BYTES.regularNode.length + 8;

// ---- streaming passes --------------------------------------------------------------
//
// The passes read the NAR in the reused chunks of streamNar and rewrite hash
// parts inside those chunks (the chunk is ours until the callback returns),
// so a pass allocates nothing per chunk: memory stays flat whatever the size
// of the output (HashRewriter copies each chunk it changes).

const HASH_LEN = 32;

/**
 * Replaces 32-byte hash parts in the caller's chunks, in place: leftmost,
 * non-overlapping matches, as HashRewriter (and Nix). Up to 31 trailing
 * bytes that could start a match are held back until the next chunk.
 */
export class InPlaceRewriter {
  private readonly table: HashPartTable;
  private readonly reps: Uint8Array;
  private readonly tail = new Uint8Array(HASH_LEN - 1);
  private tailLen = 0;
  /** tail + the first 31 bytes of the next chunk. */
  private readonly joint = new Uint8Array(2 * (HASH_LEN - 1));
  /** Bytes emitted so far. */
  offset = 0;
  matches = 0;

  constructor(
    rewrites: ReadonlyMap<string, string>,
    private readonly onMatch?: (offset: number) => void,
  ) {
    const m = new Map([...rewrites].filter(([a, b]) => a !== b));
    this.table = new HashPartTable(m.keys());
    this.reps = new Uint8Array(this.table.size * HASH_LEN);
    this.table.parts.forEach((from, k) => this.reps.set(Buffer.from(m.get(from)!, 'latin1'), k * HASH_LEN));
  }

  get active(): boolean {
    return this.table.size > 0;
  }

  private replace(buf: Uint8Array, i: number, k: number, streamOffset: number): number {
    buf.set(this.reps.subarray(k * HASH_LEN, (k + 1) * HASH_LEN), i);
    this.matches++;
    this.onMatch?.(streamOffset);
    return i + HASH_LEN;
  }

  /** Rewrites `chunk` in place and passes the finished bytes to `emit` (views; use them before returning). */
  update(chunk: Uint8Array, emit: (bytes: Uint8Array) => void): void {
    if (this.table.size === 0) {
      this.offset += chunk.length;
      if (chunk.length > 0) emit(chunk);
      return;
    }
    let c = chunk;
    if (this.tailLen > 0 && c.length < HASH_LEN) {
      // A short chunk: join it to the tail (a few bytes) and go on as if it were one chunk.
      const merged = new Uint8Array(this.tailLen + c.length);
      merged.set(this.tail.subarray(0, this.tailLen));
      merged.set(c, this.tailLen);
      this.tailLen = 0;
      c = merged;
    }
    const n = c.length;
    const t = this.tailLen;
    let skip = 0;
    if (t > 0) {
      // Windows that start in the tail and end in this chunk (n >= 32 here).
      const j = this.joint;
      j.set(this.tail.subarray(0, t));
      j.set(c.subarray(0, HASH_LEN - 1), t);
      let lastEnd = 0;
      scanWindows(j, 0, t + HASH_LEN - 1, this.table, (i, k) => (lastEnd = this.replace(j, i, k, this.offset + i)));
      if (lastEnd > 0) {
        this.tail.set(j.subarray(0, t));
        c.set(j.subarray(t, lastEnd), 0);
        skip = lastEnd - t;
      }
      emit(this.tail.subarray(0, t));
      this.offset += t;
      this.tailLen = 0;
    }
    let lastEnd = skip;
    const base = this.offset;
    scanWindows(c, skip, n, this.table, (i, k) => (lastEnd = this.replace(c, i, k, base + i)));
    // Hold back the nix32 suffix (at most 31 bytes, none of a replacement).
    let keepFrom = n;
    const stop = Math.max(n - (HASH_LEN - 1), lastEnd);
    while (keepFrom > stop && IS_NIX32[c[keepFrom - 1]!] === 1) keepFrom--;
    if (keepFrom > 0) emit(c.subarray(0, keepFrom));
    this.offset += keepFrom;
    this.tail.set(c.subarray(keepFrom, n));
    this.tailLen = n - keepFrom;
  }

  /** Emits the held-back bytes; call once at the end. */
  flush(emit: (bytes: Uint8Array) => void): void {
    if (this.tailLen > 0) emit(this.tail.subarray(0, this.tailLen));
    this.offset += this.tailLen;
    this.tailLen = 0;
  }
}

/**
 * The content hash of a CA output modulo its own hash part, as Nix's
 * HashModuloSink (every occurrence hashed as 32 NUL bytes, then `|<offset>`
 * per occurrence), zeroing in place. Offsets are kept delta-encoded.
 */
export class InPlaceModuloHasher {
  private readonly hash: NodeHash;
  private readonly rw: InPlaceRewriter;
  private readonly offsets = new ModuloOffsets();
  private readonly sink = (b: Uint8Array) => this.hash.update(b);

  constructor(
    readonly algo: HashAlgo,
    modulus: string,
  ) {
    this.hash = createHash(algo);
    this.rw = new InPlaceRewriter(new Map([[modulus, '\0'.repeat(HASH_LEN)]]), (off) => this.offsets.record(off));
  }

  update(chunk: Uint8Array): void {
    this.rw.update(chunk, this.sink);
  }

  finish(): { hash: Hash; selfReferences: number } {
    this.rw.flush(this.sink);
    this.offsets.hashSuffix(this.hash);
    return { hash: { algo: this.algo, digest: this.hash.digest() }, selfReferences: this.offsets.count };
  }
}

interface ScanOptions {
  table: HashPartTable | null;
  rawHash: boolean;
  modulo: { algo: HashAlgo; modulus: string; flatSize: number | null } | null;
  /** Applied to the NAR before everything else (recomputing a modulo hash after sibling rewrites). */
  rewrites: ReadonlyMap<string, string> | null;
}

interface ScanResult {
  found: Set<string>;
  narSize: number;
  rawHash: Hash | null;
  modulo: { hash: Hash; selfReferences: number } | null;
}

/** One pass over the NAR of `real`: references, NAR hash and/or modulo hash. */
async function scanPass(real: string, o: ScanOptions): Promise<ScanResult> {
  const scanner = o.table ? new RefScanner(o.table) : null;
  const raw: NodeHash | null = o.rawHash ? createHash('sha256') : null;
  const mod = o.modulo ? new InPlaceModuloHasher(o.modulo.algo, o.modulo.modulus) : null;
  const flat = o.modulo?.flatSize ?? null;
  const rw = o.rewrites ? new InPlaceRewriter(o.rewrites) : null;
  let pos = 0;
  // The scanner and the NAR hash see each chunk before the modulo hasher zeroes its self-references.
  const feed = (c: Uint8Array): void => {
    scanner?.update(c);
    raw?.update(c);
    if (mod) {
      if (flat === null) mod.update(c);
      else {
        // A flat output is hashed as its contents: the NAR bytes between the header and the trailer.
        const a = Math.max(pos, FLAT_CONTENTS_OFFSET);
        const b = Math.min(pos + c.length, FLAT_CONTENTS_OFFSET + flat);
        if (a < b) mod.update(c.subarray(a - pos, b - pos));
      }
    }
    pos += c.length;
  };
  const narSize = await streamNar(real, (c) => (rw ? rw.update(c, feed) : feed(c)));
  rw?.flush(feed);
  const m = mod?.finish() ?? null;
  return {
    found: scanner?.found() ?? new Set(),
    narSize,
    rawHash: raw ? { algo: 'sha256', digest: raw.digest() } : null,
    modulo: m,
  };
}

/** Streams the NAR of `src` through the rewrites into a new tree at `dest`, hashing the result, in one pass. */
async function rewritePass(src: string, dest: string, rewrites: ReadonlyMap<string, string>): Promise<{ narHash: Hash; narSize: number }> {
  const rw = new InPlaceRewriter(rewrites);
  const sink = new NarBytesSink(dest);
  const push = (b: Uint8Array) => sink.push(b);
  try {
    await streamNar(src, (c) => rw.update(c, push));
    rw.flush(push);
    const r = sink.finish();
    return { narHash: r.hashes.get('sha256')!, narSize: r.narSize };
  } catch (e) {
    sink.abort();
    deletePath(dest);
    throw e;
  }
}

function isRoot(): boolean {
  return process.geteuid?.() === 0;
}

/** rename(2), making a read-only directory writable for the move when not root (its `..` changes); copies across file systems. */
async function movePath(src: string, dest: string): Promise<void> {
  const st = lstatSync(src);
  const changePerm = !isRoot() && st.isDirectory() && (st.mode & 0o200) === 0;
  if (changePerm) chmodSync(src, (st.mode & 0o7777) | 0o200);
  try {
    renameSync(src, dest);
  } catch (e) {
    if (changePerm) chmodSync(src, st.mode & 0o7777);
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    await rewritePass(src, dest, new Map());
    canonicalisePathMetaData(dest);
    deletePath(src);
    return;
  }
  if (changePerm) chmodSync(dest, st.mode & 0o7777);
}

// ---- the procedure -------------------------------------------------------------------

type OutputState =
  | { kind: 'already'; entry: OutputPlanEntry; finalPath: string }
  | {
      kind: 'built';
      entry: OutputPlanEntry;
      out: DerivationOutput;
      actual: string;
      st: Stats;
      discard: boolean;
      scan: ScanResult;
    };

interface Processed {
  name: string;
  entry: OutputPlanEntry;
  out: DerivationOutput;
  finalPath: string;
  /** Where the final contents are now (the scratch output itself or a rewritten temp). */
  content: string;
  temp: TempStorePath | null;
  info: NewPathInfo;
  /** A fixed output whose hash is not the stated one. */
  hashMismatch: boolean;
  /** The content hash (modulo self-references) of a CA output. */
  got: Hash | null;
}

function caMethodOf(out: DerivationOutput): { method: ContentMethod; algo: HashAlgo } | null {
  switch (out.kind) {
    case 'caFixed':
      return { method: out.method, algo: out.hash.algo };
    case 'caFloating':
    case 'impure':
      return { method: out.method, algo: out.hashAlgo };
    default:
      return null;
  }
}

function discardReferences(attrs: JsonObject | null, outputName: string, drvBase: string): boolean {
  if (!attrs) return false;
  const udr = attrs['unsafeDiscardReferences'];
  if (!isJsonObject(udr) || !(outputName in udr)) return false;
  const v = udr[outputName];
  if (typeof v !== 'boolean') {
    throw new BadDerivationAttr(`attribute 'unsafeDiscardReferences."${outputName}"' of derivation '${drvBase}' must be a Boolean`, {
      derivation: drvBase,
      output: outputName,
    });
  }
  return v;
}

/** Nix's topoSort over output names, references first; a cycle throws with Nix's message. */
export function sortOutputs(names: readonly string[], children: (name: string) => Iterable<string>, drvPath: string): string[] {
  const items = new Set(names);
  const sorted: string[] = [];
  const visited = new Set<string>();
  const parents = new Set<string>();
  const visit = (name: string, parent: string | null): void => {
    if (parents.has(name)) {
      throw new ReferenceCycleInOutputs(
        `cycle detected in build of '${drvPath}' in the references of output '${name}' from output '${parent}'`,
        { derivation: drvPath, output: name, from: parent },
      );
    }
    if (visited.has(name)) return;
    visited.add(name);
    parents.add(name);
    for (const c of sortedUtf8(new Set(children(name)))) if (c !== name && items.has(c)) visit(c, name);
    sorted.push(name);
    parents.delete(name);
  };
  for (const n of sortedUtf8(items)) visit(n, null);
  return sorted;
}

export async function registerOutputs(input: RegisterInput): Promise<Map<string, RegisteredOutput>> {
  const { store, drv, plan, mode, drvPath } = input;
  const storeDir = store.storeDir;
  const { hashPart: drvHashPart, name: drvFileName } = parseStorePath(storeDir, drvPath);
  const drvBase = `${drvHashPart}-${drvFileName}`;
  const attrs = input.structuredAttrs as JsonObject | null;
  const hashOf = (p: string) => parseStorePath(storeDir, p).hashPart;
  const nameOf = (p: string) => parseStorePath(storeDir, p).name;

  // Never delete the physical location of a valid path.
  const validReal = (real: string): boolean => {
    const sp = store.storePathOf(real);
    return sp !== null && store.toRealPath(sp) === real && store.isValidPath(sp);
  };
  const safeDelete = (real: string): void => {
    if (!validReal(real)) deletePath(real);
  };

  const candidates = new Map<string, string>();
  for (const p of input.inputClosure) candidates.set(hashOf(p), p);
  for (const p of input.addedPaths) candidates.set(hashOf(p), p);
  const scratchByHash = new Map<string, string>();
  for (const e of plan.outputs.values()) {
    candidates.set(hashOf(e.scratchPath), e.scratchPath);
    scratchByHash.set(hashOf(e.scratchPath), e.name);
  }
  const table = new HashPartTable(candidates.keys());
  const inodesSeen = new Set<string>();
  const temps: TempStorePath[] = [];

  try {
    // ---- 1. check, canonicalise, scan -----------------------------------------------
    const names = sortedUtf8(drv.outputs.keys());
    const states = new Map<string, OutputState>();
    for (const name of names) {
      const entry = plan.outputs.get(name);
      if (!entry) {
        throw new RegisterInternalError(`builder for '${drvPath}' has no scratch output for '${name}'`, { derivation: drvPath, output: name });
      }
      const out = drv.outputs.get(name)!;
      if (out.kind === 'deferred') {
        throw new RegisterInternalError(`output '${name}' of '${drvPath}' is deferred: the derivation must be resolved before it is built`, {
          derivation: drvPath,
          output: name,
        });
      }
      if (mode === 'normal' && entry.finalPath !== null && store.isValidPath(entry.finalPath)) {
        states.set(name, { kind: 'already', entry, finalPath: entry.finalPath });
        continue;
      }
      const actual = input.realPathOf(entry.scratchPath);
      let st: Stats;
      try {
        st = lstatSync(actual);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new OutputMissing(`builder for '${drvPath}' failed to produce output path for output '${name}' at '${actual}'`, {
            derivation: drvPath,
            output: name,
            path: actual,
          });
        }
        throw e;
      }
      if ((!st.isSymbolicLink() && (st.mode & 0o022) !== 0) || (input.fromUid !== undefined && st.uid !== input.fromUid)) {
        throw new OutputBadPermissions(`suspicious ownership or permission on '${actual}' for output '${name}'; rejecting this build output`, {
          derivation: drvPath,
          output: name,
          path: actual,
          mode: st.mode & 0o7777,
          uid: st.uid,
        });
      }
      canonicalisePathMetaData(actual, { ...(input.fromUid !== undefined ? { fromUid: input.fromUid } : {}), inodesSeen });
      const discard = discardReferences(attrs, name, drvBase);
      const ca = caMethodOf(out);
      const flat = ca !== null && ca.method !== 'recursive';
      if (flat && (!st.isFile() || (st.mode & S_IXUSR) !== 0)) {
        throw new CaOutputNotRegularFile(
          `output path '${actual}' should be a non-executable regular file since recursive hashing is not enabled (outputHashMode=${ca.method})`,
          { derivation: drvPath, output: name, path: actual },
        );
      }
      const scan = await scanPass(actual, {
        table,
        // A recursive sha256 modulo hash without self-references is the NAR hash itself.
        rawHash: !(ca && ca.method === 'recursive' && ca.algo === 'sha256'),
        modulo: ca ? { algo: ca.algo, modulus: hashOf(entry.scratchPath), flatSize: flat ? st.size : null } : null,
        rewrites: null,
      });
      states.set(name, { kind: 'built', entry, out, actual, st, discard, scan });
    }

    // ---- 2. order --------------------------------------------------------------------
    const order = sortOutputs(names, (n) => {
      const s = states.get(n)!;
      if (s.kind === 'already') return [];
      const res: string[] = [];
      for (const h of s.scan.found) {
        const o = scratchByHash.get(h);
        if (o !== undefined) res.push(o);
      }
      return res;
    }, drvPath);

    // ---- 3. final paths, rewriting, hashing -----------------------------------------------
    const outputRewrites = new Map<string, string>();
    const finals = new Map<string, string>();
    const processed: Processed[] = [];
    const finish = (entry: OutputPlanEntry, finalPath: string) => {
      finals.set(entry.name, finalPath);
      if (finalPath !== entry.scratchPath) outputRewrites.set(hashOf(entry.scratchPath), hashOf(finalPath));
    };
    const rewrites = (m: ReadonlyMap<string, string>, found: ReadonlySet<string>) => [...found].some((h) => m.has(h) && m.get(h) !== h);
    const mapRefs = (found: ReadonlySet<string>, scratch: string): { self: boolean; others: string[] } => {
      let self = false;
      const others: string[] = [];
      for (const h of found) {
        const p = candidates.get(h)!;
        if (p === scratch) self = true;
        else if (outputRewrites.has(h)) others.push(`${storeDir}/${outputRewrites.get(h)!}-${nameOf(p)}`);
        else others.push(p);
      }
      return { self, others: others.sort(compareUtf8) };
    };
    const rewriteToTemp = async (src: string, m: ReadonlyMap<string, string>) => {
      const temp = await makeTempStorePath(store, 'drvbox-rewrite');
      temps.push(temp);
      const r = await rewritePass(src, temp.real, m);
      canonicalisePathMetaData(temp.real, { inodesSeen });
      safeDelete(src); // the scratch output is superseded by its rewritten copy
      return { temp, ...r };
    };

    for (const name of order) {
      const s = states.get(name)!;
      if (s.kind === 'already') {
        finish(s.entry, s.finalPath);
        continue;
      }
      const { entry, out, actual, scan, discard } = s;
      const scratchHash = hashOf(entry.scratchPath);
      const ca = caMethodOf(out);
      const base: Omit<Processed, 'finalPath' | 'content' | 'temp' | 'info'> = { name, entry, out, hashMismatch: false, got: null };
      if (!ca) {
        const finalPath = entry.finalPath!;
        if (finalPath !== entry.scratchPath) outputRewrites.set(scratchHash, hashOf(finalPath));
        let content = actual;
        let temp: TempStorePath | null = null;
        let narHash = scan.rawHash!;
        let narSize = scan.narSize;
        if (rewrites(outputRewrites, scan.found)) {
          const r = await rewriteToTemp(actual, outputRewrites);
          ({ temp, narHash, narSize } = r);
          content = temp.real;
        }
        const refs = discard ? { self: false, others: [] } : mapRefs(scan.found, entry.scratchPath);
        const references = refs.self ? [...refs.others, finalPath] : refs.others;
        processed.push({
          ...base,
          finalPath,
          content,
          temp,
          info: { path: finalPath, narHash, narSize, references, deriver: drvPath, ultimate: true },
        });
        finish(entry, finalPath);
        continue;
      }

      // Content-addressed (fixed, floating, impure).
      const siblingRewrite = [...scan.found].some((h) => h !== scratchHash && outputRewrites.has(h) && outputRewrites.get(h) !== h);
      let modulo = scan.modulo!;
      if (siblingRewrite) {
        const again = await scanPass(actual, {
          table: null,
          rawHash: false,
          modulo: { algo: ca.algo, modulus: scratchHash, flatSize: ca.method === 'recursive' ? null : s.st.size },
          rewrites: outputRewrites,
        });
        modulo = again.modulo!;
      }
      const got = modulo.hash;
      const refs = discard ? { self: false, others: [] } : mapRefs(scan.found, entry.scratchPath);
      if (out.kind === 'caFixed' && (refs.self || refs.others.length > 0)) {
        throw new FixedOutputHasReferences(`illegal path references in fixed-output derivation '${drvPath}'`, {
          derivation: drvPath,
          output: name,
          references: refs.self ? [...refs.others, '(self)'] : refs.others,
        });
      }
      const pathName = outputPathName(drv.name, name);
      let finalPath: string;
      try {
        finalPath = makeContentAddressedPath(storeDir, ca.method, got, pathName, refs.others, refs.self);
      } catch (e) {
        if (!(e instanceof BadStorePath)) throw e;
        throw new CaOutputIllegalReferences(
          `output path '${actual}' has illegal content address, probably a spurious self-reference with text hashing`,
          { derivation: drvPath, output: name, method: ca.method, references: refs.others, self: refs.self },
        );
      }
      const hashMismatch = out.kind === 'caFixed' && !hashEquals(got, out.hash);
      const m = new Map(outputRewrites);
      if (finalPath !== entry.scratchPath) m.set(scratchHash, hashOf(finalPath));
      let content = actual;
      let temp: TempStorePath | null = null;
      let narHash: Hash;
      let narSize = scan.narSize;
      if (rewrites(m, scan.found)) {
        const r = await rewriteToTemp(actual, m);
        ({ temp, narHash, narSize } = r);
        content = temp.real;
      } else if (scan.rawHash) {
        narHash = scan.rawHash;
      } else if (modulo.selfReferences === 0 && !siblingRewrite) {
        narHash = modulo.hash;
      } else {
        narHash = (await scanPass(actual, { table: null, rawHash: true, modulo: null, rewrites: null })).rawHash!;
      }
      processed.push({
        ...base,
        hashMismatch,
        got,
        finalPath,
        content,
        temp,
        info: {
          path: finalPath,
          narHash,
          narSize,
          references: refs.self ? [...refs.others, finalPath] : refs.others,
          deriver: drvPath,
          ultimate: true,
          ca: renderContentAddress({ method: ca.method, hash: got }),
        },
      });
      finish(entry, finalPath);
    }

    const mismatch = processed.find((p) => p.hashMismatch);
    const mismatchError = mismatch
      ? (() => {
          const wanted = (mismatch.out as Extract<DerivationOutput, { kind: 'caFixed' }>).hash;
          const got = mismatch.got!;
          return new FixedOutputHashMismatch(
            `hash mismatch in fixed-output derivation '${drvPath}':\n  specified: ${formatHash(wanted, 'sri')}\n     got:    ${formatHash(got, 'sri')}`,
            { derivation: drvPath, output: mismatch.name, specified: formatHash(wanted, 'sri'), got: formatHash(got, 'sri'), path: mismatch.finalPath },
          );
        })()
      : null;

    if (mode === 'check') return await finishCheck(input, states, processed, mismatchError, safeDelete);
    return await finishRegister(input, states, processed, finals, mismatchError, safeDelete);
  } finally {
    for (const t of temps) {
      try {
        t.remove();
      } catch {
        // a leftover temp is removed by GC
      }
    }
  }
}

type SafeDelete = (real: string) => void;

function outputResult(store: LocalStore, name: string, path: string, built: boolean): RegisteredOutput {
  return { name, path, info: store.requirePathInfo(path), built };
}

async function finishRegister(
  input: RegisterInput,
  states: Map<string, OutputState>,
  processed: Processed[],
  finals: Map<string, string>,
  mismatchError: FixedOutputHashMismatch | null,
  safeDelete: SafeDelete,
): Promise<Map<string, RegisteredOutput>> {
  const { store, drvPath, mode } = input;
  // Final paths the goal did not lock (it locks the known ones): CA outputs.
  const dynamic = processed.filter((p) => p.finalPath !== p.entry.finalPath).map((p) => p.finalPath);
  let locks: PathLocks | null = null;
  const moved: string[] = [];
  const replaced: Array<{ dest: string; old: string }> = [];
  let registered = false;
  try {
    if (dynamic.length > 0) {
      for (const p of dynamic) await store.addTempRoot(p);
      locks = await store.lockPaths(dynamic);
    }
    for (const p of processed) {
      const dest = store.toRealPath(p.finalPath);
      if (dest === p.content) continue;
      if (mode === 'repair') {
        // Keep the old copy aside until the new one is registered.
        if (existsOrLink(dest)) {
          const old = `${dest}.drvbox-old-${process.pid}`;
          deletePath(old);
          renameSync(dest, old);
          replaced.push({ dest, old });
        } else {
          moved.push(dest);
        }
        await movePath(p.content, dest);
      } else if (store.isValidPath(p.finalPath)) {
        // The same CA path was produced by someone else already.
        safeDelete(p.content);
      } else {
        deletePath(dest);
        await movePath(p.content, dest);
        moved.push(dest);
      }
      p.content = dest;
    }
    if (input.settings.autoOptimise) for (const p of processed) await optimisePath(store, store.toRealPath(p.finalPath));

    const built = new Map<string, CheckedPathInfo>(processed.map((p) => [p.name, { path: p.info.path, narSize: p.info.narSize, references: p.info.references }]));
    checkOutputs({
      storeDir: store.storeDir,
      drvPath,
      env: input.drv.env,
      structuredAttrs: input.structuredAttrs as JsonObject | null,
      built,
      outputPaths: finals,
      queryPathInfo: (path) => store.queryPathInfo(path),
    });
    if (mode === 'normal' && !mismatchError && input.onPlaced) {
      try {
        input.onPlaced(processed.map((p) => ({ name: p.name, path: p.finalPath, references: p.info.references })));
      } catch {
        // an early hint only: dependents get the paths once they are valid anyway
      }
    }

    const realisations: Realisation[] = [];
    if (!mismatchError) {
      for (const p of processed) {
        const h = input.drvHashes?.get(p.name);
        if (h && p.out.kind !== 'impure') {
          realisations.push({ id: { drvHash: h, outputName: p.name }, outPath: p.finalPath, signatures: [], dependentRealisations: new Map() });
        }
      }
    }
    store.db.transaction(() => {
      store.registerValidPaths(
        processed.map((p) => p.info),
        { checkOutputs: false },
      );
      for (const r of realisations) store.registerRealisation(r);
    });
    registered = true;
    locks?.setDeletion(true);
  } catch (e) {
    if (!registered) {
      for (const m of moved) {
        if (input.settings.keepFailed) continue;
        try {
          deletePath(m);
        } catch {
          // an invalid leftover is removed by the next build or GC
        }
      }
      for (const r of replaced.reverse()) {
        try {
          deletePath(r.dest);
          renameSync(r.old, r.dest);
        } catch {
          // the valid path's data is at r.old; repair again
        }
      }
    }
    throw e;
  } finally {
    locks?.release();
  }
  for (const r of replaced) {
    try {
      deletePath(r.old);
    } catch {
      // a leftover is removed by GC
    }
  }
  // Scratch copies of outputs that were valid already (hash rewriting redirected them).
  for (const s of states.values()) {
    if (s.kind === 'already' && s.entry.scratchPath !== s.finalPath) {
      try {
        safeDelete(input.realPathOf(s.entry.scratchPath));
      } catch {
        // best effort
      }
    }
  }
  if (mismatchError) throw mismatchError;
  const res = new Map<string, RegisteredOutput>();
  for (const name of sortedUtf8(states.keys())) {
    const s = states.get(name)!;
    const path = s.kind === 'already' ? s.finalPath : finals.get(name)!;
    res.set(name, outputResult(store, name, path, s.kind !== 'already'));
  }
  return res;
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

/** The path a CA floating output had when it was built before: its realisation, else the derivation's output map. */
function previousCaPath(input: RegisterInput, name: string): string | null {
  const h = input.drvHashes?.get(name);
  if (h) {
    const r = input.store.queryRealisation({ drvHash: h, outputName: name });
    if (r) return r.outPath;
  }
  try {
    return input.store.queryPartialDerivationOutputMap(input.drvPath).get(name) ?? null;
  } catch {
    return null;
  }
}

async function finishCheck(
  input: RegisterInput,
  states: Map<string, OutputState>,
  processed: Processed[],
  mismatchError: FixedOutputHashMismatch | null,
  safeDelete: SafeDelete,
): Promise<Map<string, RegisteredOutput>> {
  const { store, drvPath, settings } = input;
  const diffs: CheckDifference[] = [];
  const res = new Map<string, RegisteredOutput>();
  for (const p of processed) {
    let oldPath: string | null;
    if (p.out.kind === 'impure') oldPath = null; // impure outputs differ by design
    else if (p.out.kind === 'caFloating') oldPath = previousCaPath(input, p.name) ?? p.finalPath;
    else oldPath = p.hashMismatch ? null : p.entry.finalPath;
    const oldInfo = oldPath ? store.queryPathInfo(oldPath) : null;
    if (!oldPath || !oldInfo) {
      if (p.out.kind !== 'impure' && !p.hashMismatch) input.log(`note: output '${p.name}' of '${drvPath}' was not valid before; nothing to compare it with`);
      safeDelete(p.content);
      continue;
    }
    const differs = oldPath !== p.finalPath || !hashEquals(oldInfo.narHash, p.info.narHash);
    if (!differs) {
      if (!oldInfo.ultimate) store.db.updatePathInfo({ ...oldInfo, ultimate: true });
      safeDelete(p.content);
      res.set(p.name, outputResult(store, p.name, oldPath, false));
      continue;
    }
    const oldReal = store.toRealPath(oldPath);
    let kept: string | null = null;
    if (settings.keepFailed || settings.runDiffHook) {
      kept = oldReal + '.check';
      deletePath(kept);
      if (oldPath !== p.finalPath) {
        // A CA output landed on another path: keep it under the old path's
        // hash part so that a diff shows only the real differences.
        await rewritePass(p.content, kept, new Map([[hashPart(store, p.finalPath), hashPart(store, oldPath)]]));
        canonicalisePathMetaData(kept);
        safeDelete(p.content);
      } else {
        await movePath(p.content, kept);
      }
      if (settings.runDiffHook && settings.diffHook !== '') {
        await runDiffHook({
          diffHook: settings.diffHook,
          tryA: oldReal,
          tryB: kept,
          drvPath,
          buildDir: input.buildDir ?? '',
          ...(input.buildUser ? { uid: input.buildUser.uid, gid: input.buildUser.gid } : {}),
          log: input.log,
        });
      }
    } else {
      safeDelete(p.content);
    }
    diffs.push({ output: p.name, path: oldReal, kept });
  }
  if (diffs.length > 0) throw notDeterministicError(drvPath, diffs);
  if (mismatchError) throw mismatchError;
  for (const name of sortedUtf8(states.keys())) {
    if (res.has(name)) continue;
    const s = states.get(name)!;
    const path = s.kind === 'already' ? s.finalPath : s.entry.finalPath;
    if (path && store.isValidPath(path)) res.set(name, outputResult(store, name, path, false));
  }
  return res;
}

function hashPart(store: LocalStore, p: string): string {
  return parseStorePath(store.storeDir, p).hashPart;
}
