// Adding paths to the store (see ingest.ts for the atomic install):
//
//   addPathToStore    a file or tree from the file system, hashed as
//                     recursive (NAR, `nix-store --add`), flat (one file,
//                     `nix-store --add-fixed`) or text (builtins.toFile)
//   addTextToStore    text with references (builtins.toFile, .drv files)
//   addNarToStore     a NAR stream whose path and hash are known (substitution,
//                     the daemon's addToStore, copying between stores)
//   addDumpToStore    a NAR (recursive) or raw contents (flat, text) stream
//                     whose path follows from its hash (the daemon's
//                     addToStoreFromDump)
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, lstatSync, openSync, readSync, statSync, writeSync, constants } from 'node:fs';
import { basename } from 'node:path';
import { hashBytes, hashEquals, formatHash, type Hash, type HashAlgo } from '../format/hash.js';
import { HashModuloSink } from '../format/rewrite.js';
import { checkStorePathName, makeFixedOutputPath, makeTextPath } from '../format/store-path.js';
import { parseContentAddress, renderContentAddress, type ContentAddress } from './content-address.js';
import { BadAddSource, ContentAddressMismatch, NarHashMismatch, NarSizeMismatch } from './errors.js';
import { installStaged, makeTempStorePath, NarBytesSink, NarEventSink, type TempStorePath } from './ingest.js';
import type { LocalStore } from './local-store.js';
import { hashFile, hashPath, readFileChunks, streamNar } from './nar-fs.js';
import type { NewPathInfo } from './path-info.js';

export type AddMethod = 'recursive' | 'flat' | 'text';

export interface AddPathOptions {
  /** Store path name; default: the source's base name. */
  name?: string;
  method?: AddMethod;
  /** Hash algorithm of the content address (recursive, flat); text is always sha256. */
  hashAlgo?: HashAlgo;
  /** References of the new path (recursive sha256 and text only). */
  references?: Iterable<string>;
  repair?: boolean;
}

const CHUNK = 1 << 20;

async function withTemp<T>(store: LocalStore, fn: (t: TempStorePath) => Promise<T>): Promise<T> {
  const temp = await makeTempStorePath(store);
  try {
    return await fn(temp);
  } catch (e) {
    try {
      temp.remove();
    } catch {
      /* the original error matters more */
    }
    throw e;
  }
}

function checkRefs(store: LocalStore, refs: Iterable<string>): string[] {
  const out = [...new Set(refs)].sort();
  for (const r of out) store.checkStorePath(r);
  return out;
}

function sourceStat(src: string, follow: boolean) {
  try {
    return follow ? statSync(src) : lstatSync(src);
  } catch (e) {
    throw new BadAddSource(`cannot add '${src}' to the store: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (e as Error).message}`, {
      path: src,
    });
  }
}

/** Adds a file or tree from the file system; returns its store path. */
export async function addPathToStore(store: LocalStore, src: string, opts: AddPathOptions = {}): Promise<string> {
  const method = opts.method ?? 'recursive';
  const name = checkStorePathName(opts.name ?? basename(src));
  const refs = checkRefs(store, opts.references ?? []);
  if (method === 'text') {
    const st = sourceStat(src, true);
    if (!st.isFile()) throw new BadAddSource(`cannot add '${src}' as text: it is not a regular file`, { path: src });
    const fd = openSync(src, constants.O_RDONLY);
    try {
      const buf = Buffer.alloc(fstatSync(fd).size);
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, got);
        if (n === 0) break;
        got += n;
      }
      return await addTextToStore(store, name, buf.subarray(0, got), refs, { repair: opts.repair ?? false });
    } finally {
      closeSync(fd);
    }
  }
  const algo = opts.hashAlgo ?? 'sha256';
  if (method === 'flat') {
    const st = sourceStat(src, true);
    if (!st.isFile()) throw new BadAddSource(`cannot add '${src}' with --mode flat: it is not a regular file`, { path: src });
    return withTemp(store, async (temp) => {
      const sink = new NarEventSink(temp.real);
      const flat = createHash(algo);
      try {
        sink.handle({ type: 'regular', executable: false, size: st.size });
        let got = 0;
        for await (const chunk of readFileChunks(src, true)) {
          got += chunk.length;
          if (got > st.size) break;
          flat.update(chunk);
          sink.handle({ type: 'contents', data: chunk });
        }
        if (got !== st.size) {
          throw new BadAddSource(`file '${src}' changed while being added (expected ${st.size} bytes, read ${got})`, { path: src });
        }
        sink.handle({ type: 'regularEnd' });
      } catch (e) {
        sink.abort();
        throw e;
      }
      const nar = sink.finish();
      const hash: Hash = { algo, digest: flat.digest() };
      const path = makeFixedOutputPath(store.storeDir, 'flat', hash, name, refs);
      const info: NewPathInfo = {
        path,
        narHash: nar.hashes.get('sha256')!,
        narSize: nar.narSize,
        references: refs,
        ca: renderContentAddress({ method: 'flat', hash }),
      };
      await installStaged(store, [{ temp, info }], { repair: opts.repair ?? false });
      return path;
    });
  }
  sourceStat(src, false);
  return withTemp(store, async (temp) => {
    const sink = new NarBytesSink(temp.real, [algo]);
    try {
      // Reused chunks, consumed synchronously: the peak RSS stays flat.
      await streamNar(src, (chunk) => sink.push(chunk));
    } catch (e) {
      sink.abort();
      throw e;
    }
    const nar = sink.finish();
    const hash = nar.hashes.get(algo)!;
    const path = makeFixedOutputPath(store.storeDir, 'recursive', hash, name, refs);
    const info: NewPathInfo = {
      path,
      narHash: nar.hashes.get('sha256')!,
      narSize: nar.narSize,
      references: refs,
      ca: renderContentAddress({ method: 'recursive', hash }),
    };
    await installStaged(store, [{ temp, info }], { repair: opts.repair ?? false });
    return path;
  });
}

/** Adds `text` as a text path (builtins.toFile semantics); returns its store path. */
export async function addTextToStore(
  store: LocalStore,
  name: string,
  text: string | Uint8Array,
  references: Iterable<string> = [],
  opts: { repair?: boolean } = {},
): Promise<string> {
  checkStorePathName(name);
  const refs = checkRefs(store, references);
  const data = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const hash = hashBytes('sha256', data);
  const path = makeTextPath(store.storeDir, hash, name, refs);
  await store.addTempRoot(path);
  if (!opts.repair && store.isValidPath(path)) return path;
  return withTemp(store, async (temp) => {
    const sink = new NarEventSink(temp.real);
    try {
      sink.handle({ type: 'regular', executable: false, size: data.length });
      for (let i = 0; i < data.length; i += CHUNK) sink.handle({ type: 'contents', data: data.subarray(i, i + CHUNK) });
      sink.handle({ type: 'regularEnd' });
    } catch (e) {
      sink.abort();
      throw e;
    }
    const nar = sink.finish();
    const info: NewPathInfo = {
      path,
      narHash: nar.hashes.get('sha256')!,
      narSize: nar.narSize,
      references: refs,
      ca: renderContentAddress({ method: 'text', hash }),
    };
    await installStaged(store, [{ temp, info }], { repair: opts.repair ?? false });
    return path;
  });
}

/**
 * Checks that the restored contents at `real` have the content address `ca`.
 * A self-referential path is hashed modulo its own hash part, as Nix does
 * (hashCAPath).
 */
export async function checkContentHash(
  storePath: string,
  real: string,
  ca: ContentAddress,
  narHashes: Map<HashAlgo, Hash>,
  selfReference = false,
): Promise<void> {
  let got: Hash;
  if (ca.method === 'recursive' && selfReference) {
    const sink = new HashModuloSink(ca.hash.algo, storePath.slice(storePath.lastIndexOf('/') + 1, storePath.lastIndexOf('/') + 33));
    await streamNar(real, (c) => sink.update(c));
    got = sink.finish().hash;
  } else if (ca.method === 'recursive') {
    got = narHashes.get(ca.hash.algo) ?? (await hashPath(real, ca.hash.algo)).hash;
  } else {
    if (!lstatSync(real).isFile()) {
      throw new ContentAddressMismatch(`path '${storePath}' claims a ${ca.method} content address but is not a regular file`, {
        path: storePath,
      });
    }
    got = await hashFile(real, ca.hash.algo);
  }
  if (!hashEquals(got, ca.hash)) {
    throw new ContentAddressMismatch(
      `content hash mismatch importing path '${storePath}': specified ${formatHash(ca.hash)}, got ${formatHash(got)}`,
      { path: storePath, expected: formatHash(ca.hash), got: formatHash(got) },
    );
  }
}

export interface AddNarOptions {
  repair?: boolean;
  /** Verify the contents against `info.ca` (default true). */
  checkContentAddress?: boolean;
}

/**
 * Adds a path whose metadata is known from its NAR stream: the NAR hash and
 * size must match `info`. A path already valid is a no-op (the stream is
 * still consumed). Returns true when the path was installed.
 */
export async function addNarToStore(
  store: LocalStore,
  info: NewPathInfo,
  nar: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: AddNarOptions = {},
): Promise<boolean> {
  store.checkStorePath(info.path);
  await store.addTempRoot(info.path);
  if (!opts.repair && store.isValidPath(info.path)) {
    for await (const _ of nar) void _; // the caller's protocol expects the stream consumed
    return false;
  }
  const ca = info.ca ? parseContentAddress(info.ca) : null;
  return withTemp(store, async (temp) => {
    const sink = new NarBytesSink(temp.real, ca && ca.method === 'recursive' ? [ca.hash.algo] : []);
    try {
      for await (const chunk of nar) sink.push(chunk);
    } catch (e) {
      sink.abort();
      throw e;
    }
    const res = sink.finish();
    const narHash = res.hashes.get('sha256')!;
    if (!hashEquals(narHash, info.narHash)) {
      throw new NarHashMismatch(
        `hash mismatch importing path '${info.path}': specified ${formatHash(info.narHash)}, got ${formatHash(narHash)}`,
        { path: info.path, expected: formatHash(info.narHash), got: formatHash(narHash) },
      );
    }
    if (info.narSize !== 0 && res.narSize !== info.narSize) {
      throw new NarSizeMismatch(`size mismatch importing path '${info.path}': specified ${info.narSize}, got ${res.narSize}`, {
        path: info.path,
        expected: info.narSize,
        got: res.narSize,
      });
    }
    if (ca && opts.checkContentAddress !== false) {
      await checkContentHash(info.path, temp.real, ca, res.hashes, info.references.includes(info.path));
    }
    const done = await installStaged(store, [{ temp, info: { ...info, narSize: res.narSize } }], { repair: opts.repair ?? false });
    return done.length > 0;
  });
}

export interface AddDumpOptions {
  name: string;
  method: AddMethod;
  hashAlgo?: HashAlgo;
  references?: Iterable<string>;
  repair?: boolean;
}

/**
 * Adds a stream whose store path follows from its hash: a NAR for
 * `recursive`, the raw file contents for `flat` and `text`.
 */
export async function addDumpToStore(store: LocalStore, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: AddDumpOptions): Promise<string> {
  const name = checkStorePathName(opts.name);
  const refs = checkRefs(store, opts.references ?? []);
  const algo: HashAlgo = opts.method === 'text' ? 'sha256' : (opts.hashAlgo ?? 'sha256');
  return withTemp(store, async (temp) => {
    let caHash: Hash;
    let narHash: Hash;
    let narSize: number;
    if (opts.method === 'recursive') {
      const sink = new NarBytesSink(temp.real, [algo]);
      try {
        for await (const chunk of source) sink.push(chunk);
      } catch (e) {
        sink.abort();
        throw e;
      }
      const res = sink.finish();
      caHash = res.hashes.get(algo)!;
      narHash = res.hashes.get('sha256')!;
      narSize = res.narSize;
    } else {
      // Size unknown up front: write the file, then hash its NAR.
      const h = createHash(algo);
      const fd = openSync(temp.real, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o444);
      try {
        for await (const chunk of source) {
          h.update(chunk);
          let off = 0;
          while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off);
        }
      } finally {
        closeSync(fd);
      }
      caHash = { algo, digest: h.digest() };
      const r = await hashPath(temp.real);
      narHash = r.hash;
      narSize = r.narSize;
    }
    const path =
      opts.method === 'text'
        ? makeTextPath(store.storeDir, caHash, name, refs)
        : makeFixedOutputPath(store.storeDir, opts.method, caHash, name, refs);
    const info: NewPathInfo = {
      path,
      narHash,
      narSize,
      references: refs,
      ca: renderContentAddress({ method: opts.method, hash: caHash } as ContentAddress),
    };
    await installStaged(store, [{ temp, info }], { repair: opts.repair ?? false });
    return path;
  });
}
