// The file-system side of NAR: serialise a tree (dump, hash) and materialise
// one (restore). Paths are handled as bytes throughout, so names that are not
// valid UTF-8 dump and hash exactly as Nix does.
//
// Speed: metadata and small files use synchronous calls (a thread-pool round
// trip per small file costs more than the read); large files are read in
// big chunks through the thread pool, the next read running while the
// caller hashes the previous chunk (reading then hashing in turn loses ~20%
// of the hash's throughput). A second thread reading small files ahead was
// tried and lost: siblings opened from two threads contend in the kernel,
// and the worker's start-up costs more than it saves on 10,000 files. The event loop is given a turn every
// few tens of milliseconds.
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants as C,
  fchmodSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  read,
  readdirSync,
  readlinkSync,
  readSync,
  rmSync,
  symlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { defineError } from '../errors.js';
import type { Hash, HashAlgo } from '../format/hash.js';
import { badNar, BadNarEvent, padLength, type NarEvent } from '../format/nar.js';
import { NarParser } from '../format/nar-reader.js';
import { NAR_BYTES, NarWriter, writeU64 } from '../format/nar-writer.js';
import { hashNarDump, narDumpAvailable, runNarDump, type NarDumpFailure } from '../native/nar-dump.js';

export class UnsupportedFileType extends defineError('UnsupportedFileType', 'E_UNSUPPORTED_FILE_TYPE') {}
export class FileChangedWhileReading extends defineError('FileChangedWhileReading', 'E_FILE_CHANGED') {}
export class NarRestoreError extends defineError('NarRestoreError', 'E_NAR_RESTORE') {}

/** Size of the chunks dumpPath yields and large files are read in. */
export const NAR_CHUNK_SIZE = 1 << 20;
/**
 * Read size for large files when hashing (reused buffers): big enough that
 * the thread-pool round trip per read is small next to hashing the chunk.
 */
const HASH_READ_SIZE = 4 << 20;
/** Files up to this size are read synchronously into the output buffer. */
const SMALL_FILE = 256 * 1024;
const YIELD_EVERY_MS = 25;

const SLASH = Buffer.from('/');
const ZERO_PAD = new Uint8Array(8);
const O_READ = C.O_RDONLY | (C.O_NOFOLLOW ?? 0);

function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * Buffers of the reusing readers (hashing, streamNar), kept between NARs: a
 * build hashes and scans a few tiny outputs, and a fresh 1 MiB chunk buffer
 * plus 2 x 4 MiB read buffers each time cost more in allocation and garbage
 * collection than the work itself. A few per size are kept (concurrent
 * builds each hold their own while streaming).
 */
const POOL_KEEP = 2;
const pool = new Map<number, Buffer[]>();

function borrow(size: number): Buffer {
  return pool.get(size)?.pop() ?? Buffer.allocUnsafe(size);
}

function giveBack(b: Buffer | undefined): void {
  if (!b) return;
  let free = pool.get(b.length);
  if (!free) pool.set(b.length, (free = []));
  if (free.length < POOL_KEEP) free.push(b);
}

function show(p: string | Buffer): string {
  return typeof p === 'string' ? p : p.toString('utf8');
}

/**
 * Paths are strings while every name on the way is valid UTF-8 (string
 * paths cost Node ~15% less per file than Buffer paths) and Buffers below a
 * directory holding a name that is not (so its bytes survive exactly).
 */
type FsPath = string | Buffer;

/** Code units D800-FFFF: the only ones where UTF-16 order differs from UTF-8 byte order. */
const HIGH_UNITS = /[\ud800-\uffff]/;

/** By UTF-8 bytes, which is by code point. */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** The entries of a directory in NAR order (ascending bytes). */
function readNames(dir: FsPath): FsPath[] {
  if (typeof dir === 'string') {
    const names = readdirSync(dir);
    let high = false;
    let lossy = false;
    for (const n of names) {
      if (HIGH_UNITS.test(n)) {
        high = true;
        // U+FFFD may stand for bytes that are not UTF-8: take the exact bytes.
        if (n.includes('\ufffd')) lossy = true;
      }
    }
    if (!lossy) return high ? names.sort(compareCodePoints) : names.sort();
  }
  const names = readdirSync(dir, { encoding: 'buffer' });
  return names.sort(Buffer.compare);
}

function childPath(dir: FsPath, name: FsPath): FsPath {
  if (typeof dir === 'string' && typeof name === 'string') return dir + '/' + name;
  return Buffer.concat([typeof dir === 'string' ? Buffer.from(dir) : dir, SLASH, typeof name === 'string' ? Buffer.from(name) : name]);
}

interface DirFrame {
  path: FsPath;
  names: FsPath[];
  next: number;
}

/**
 * The NAR of `root` as chunks. With `reuse`, chunks are views of a few
 * buffers that are overwritten once the consumer asks for the next chunk
 * (for hashing); otherwise every chunk is fresh memory.
 */
async function* narChunks(root: string, reuse: boolean): AsyncGenerator<Uint8Array> {
  let buf = reuse ? borrow(NAR_CHUNK_SIZE) : Buffer.allocUnsafe(NAR_CHUNK_SIZE);
  // Reused read buffers for large files, borrowed at the first one.
  const big: Buffer[] = [];
  try {
    yield* narChunksInto(root, reuse, buf, big, (b) => (buf = b));
  } finally {
    if (reuse) {
      giveBack(buf);
      giveBack(big[0]);
      giveBack(big[1]);
    }
  }
}

async function* narChunksInto(root: string, reuse: boolean, first: Buffer, big: Buffer[], setBuf: (b: Buffer) => void): AsyncGenerator<Uint8Array> {
  let buf = first;
  let len = 0;
  const readSize = reuse ? HASH_READ_SIZE : NAR_CHUNK_SIZE;
  const take = (): Uint8Array => {
    const out = buf.subarray(0, len);
    if (!reuse) setBuf((buf = Buffer.allocUnsafe(NAR_CHUNK_SIZE)));
    len = 0;
    return out;
  };
  const put = (b: Uint8Array): void => {
    buf.set(b, len);
    len += b.length;
  };
  const putString = (b: Uint8Array): void => {
    writeU64(buf, len, b.length);
    buf.set(b, len + 8);
    const pad = padLength(b.length);
    for (let i = len + 8 + b.length, e = i + pad; i < e; i++) buf[i] = 0; // < 8 bytes: cheaper than a fill() call
    len += 8 + b.length + pad;
  };
  const putName = (name: FsPath): void => {
    if (typeof name !== 'string') return putString(name);
    const n = buf.write(name, len + 8, 'utf8');
    writeU64(buf, len, n);
    const pad = padLength(n);
    for (let i = len + 8 + n, e = i + pad; i < e; i++) buf[i] = 0;
    len += 8 + n + pad;
  };
  // Room for the largest fixed item: an entry header with a 4095-byte string plus tokens.
  const ROOM = 4096 + 512;
  let lastTurn = performance.now();

  const stack: DirFrame[] = [];
  let path: FsPath = root;
  let st: Stats = lstatSync(path);
  put(NAR_BYTES.magic);
  let count = 0;
  for (;;) {
    if (len + ROOM > NAR_CHUNK_SIZE) yield take();
    if ((++count & 255) === 0 && performance.now() - lastTurn > YIELD_EVERY_MS) {
      await turn();
      lastTurn = performance.now();
    }
    let leaf = true;
    if (st.isDirectory()) {
      put(NAR_BYTES.directoryNode);
      stack.push({ path, names: readNames(path), next: 0 });
      leaf = false;
    } else if (st.isSymbolicLink()) {
      put(NAR_BYTES.symlinkNode);
      putString(readlinkSync(path, { encoding: 'buffer' }));
      put(NAR_BYTES.close);
    } else if (st.isFile()) {
      const size = st.size;
      put((st.mode & 0o100) !== 0 ? NAR_BYTES.executableNode : NAR_BYTES.regularNode);
      writeU64(buf, len, size);
      len += 8;
      const fd = openSync(path, O_READ);
      // A read still in flight when the consumer stops early: waited for
      // before the fd is closed and its buffer goes back to the pool.
      let inflight: Promise<number> | null = null;
      try {
        if (size <= SMALL_FILE) {
          if (len + size + ROOM > NAR_CHUNK_SIZE) yield take();
          let got = 0;
          while (got < size) {
            const n = readSync(fd, buf, len + got, size - got, got);
            if (n === 0) throw shrank(path, size, got);
            got += n;
          }
          len += size;
        } else {
          if (len > 0) yield take();
          let got = 0;
          let which = 0;
          if (reuse && big.length === 0) big.push(borrow(readSize), borrow(readSize));
          const next = (): { b: Buffer; p: Promise<number> } => {
            const b = reuse ? big[which++ & 1]! : Buffer.allocUnsafe(readSize);
            return { b, p: readAt(fd, b, Math.min(readSize, size - got), got) };
          };
          let pending = next();
          inflight = pending.p;
          for (;;) {
            const n = await pending.p;
            inflight = null;
            if (n === 0) throw shrank(path, size, got);
            const data = pending.b.subarray(0, n);
            got += n;
            if (got < size) inflight = (pending = next()).p;
            yield data;
            if (got >= size) break;
          }
        }
      } finally {
        if (inflight) await inflight.catch(() => 0);
        closeSync(fd);
      }
      const pad = padLength(size);
      buf.set(ZERO_PAD.subarray(0, pad), len);
      len += pad;
      put(NAR_BYTES.close);
    } else {
      throw new UnsupportedFileType(`cannot serialise '${show(path)}': unsupported file type (not a file, directory or symlink)`, {
        path: show(path),
      });
    }
    if (leaf && stack.length > 0) put(NAR_BYTES.close); // closes the entry
    // Next entry, closing finished directories on the way up.
    for (;;) {
      const top = stack[stack.length - 1];
      if (top === undefined) {
        if (len > 0) yield take();
        return;
      }
      if (top.next < top.names.length) {
        const name = top.names[top.next++]!;
        if (len + ROOM > NAR_CHUNK_SIZE) yield take();
        put(NAR_BYTES.entryStart);
        putName(name);
        put(NAR_BYTES.node);
        path = childPath(top.path, name);
        st = lstatSync(path);
        break;
      }
      stack.pop();
      put(NAR_BYTES.close); // the directory node
      if (stack.length > 0) put(NAR_BYTES.close); // the entry holding it
    }
  }
}

function shrank(path: FsPath, size: number, got: number): FileChangedWhileReading {
  return new FileChangedWhileReading(`file '${show(path)}' changed while being read: expected ${size} bytes, got ${got}`, {
    path: show(path),
    expected: size,
    got,
  });
}

/**
 * Trees with at least this many entries are hashed natively. Measured
 * (hashPath in process, 2-core VM): 200 files JS 3.3 ms / native 3.9 ms,
 * 400 files 5.7 / 5.3, 10,000 files ~95 / ~50.
 */
const NATIVE_MIN_ENTRIES = 300;

/**
 * Whether the directory `path` holds at least `n` entries, all levels
 * counted. Reads directories breadth-first and stops at `n`, so it costs a
 * few readdir calls (~1% of hashing the tree) whichever way it answers.
 */
function hasEntries(path: string, n: number): boolean {
  try {
    if (!lstatSync(path).isDirectory()) return false;
    const queue: Buffer[] = [Buffer.from(path)];
    let seen = 0;
    for (let i = 0; i < queue.length; i++) {
      const dir = queue[i]!;
      for (const e of readdirSync(dir, { withFileTypes: true, encoding: 'buffer' })) {
        if (++seen >= n) return true;
        if (e.isDirectory()) queue.push(Buffer.concat([dir, SLASH, e.name]));
      }
    }
    return false;
  } catch {
    return false; // the JS serialiser reports it
  }
}

/** The native serialiser's failure as the typed error the JS one throws. */
function fromNative(f: NarDumpFailure): UnsupportedFileType | FileChangedWhileReading {
  if (f.code === 'E_UNSUPPORTED_FILE_TYPE') return new UnsupportedFileType(f.message, { path: f.path });
  return new FileChangedWhileReading(f.message, { path: f.path, expected: f.expected, got: f.got });
}

/** The NAR serialisation of `path` (not following a top-level symlink), streamed in fresh chunks. */
export function dumpPath(path: string): AsyncGenerator<Uint8Array> {
  return narChunks(path, false);
}

/** Hash of the NAR of `path` (= `nix-hash --type <algo> <path>`) and its size; the NAR is never held in memory. */
export async function hashPath(path: string, algo: HashAlgo = 'sha256'): Promise<{ hash: Hash; narSize: number }> {
  // Big trees go to the native serialiser when it is built (twice as fast on
  // many small files); starting it costs ~2 ms, so small ones stay here.
  if (narDumpAvailable() && hasEntries(path, NATIVE_MIN_ENTRIES)) {
    // Hashed there with the system's libcrypto; where it has none, streamed here.
    const hashed = await hashNarDump(path, algo);
    if (hashed.ok) return { hash: { algo, digest: hashed.digest }, narSize: hashed.narSize };
    if ('failure' in hashed) throw fromNative(hashed.failure);
    const h = createHash(algo);
    const r = await runNarDump(path, (c) => h.update(c));
    if (r.ok) return { hash: { algo, digest: h.digest() }, narSize: r.narSize };
    if ('failure' in r) throw fromNative(r.failure);
    // Not startable, or a system error: the JS serialiser reports it as it always did.
  }
  const h = createHash(algo);
  let narSize = 0;
  for await (const c of narChunks(path, true)) {
    h.update(c);
    narSize += c.length;
  }
  return { hash: { algo, digest: h.digest() }, narSize };
}

/** Feeds the NAR of `path` to `sink` chunk by chunk; chunks are reused after `sink` returns. Returns the NAR size. */
export async function streamNar(path: string, sink: (chunk: Uint8Array) => void): Promise<number> {
  let narSize = 0;
  for await (const c of narChunks(path, true)) {
    sink(c);
    narSize += c.length;
  }
  return narSize;
}

/** The chunks of a plain file (following symlinks); views of reused buffers when `reuse`. */
export async function* readFileChunks(path: string, reuse = false): AsyncGenerator<Uint8Array> {
  const fd = openSync(path, C.O_RDONLY);
  try {
    const readSize = reuse ? HASH_READ_SIZE : NAR_CHUNK_SIZE;
    const bufs = reuse ? [borrow(readSize), borrow(readSize)] : [];
    let which = 0;
    let at = 0;
    const next = (): { b: Buffer; p: Promise<number> } => {
      const b = reuse ? bufs[which++ & 1]! : Buffer.allocUnsafe(readSize);
      return { b, p: readAt(fd, b, readSize, at) };
    };
    let pending = next();
    let inflight: Promise<number> | null = pending.p;
    try {
      for (;;) {
        const n = await pending.p;
        inflight = null;
        if (n === 0) return;
        at += n;
        const data = pending.b.subarray(0, n);
        inflight = (pending = next()).p;
        yield data;
      }
    } finally {
      // as in narChunks: no read may still write into a pooled buffer
      if (inflight) await inflight.catch(() => 0);
      giveBack(bufs[0]);
      giveBack(bufs[1]);
    }
  } finally {
    closeSync(fd);
  }
}

/** Flat hash of a file's contents (= `nix-hash --flat --type <algo>`). */
export async function hashFile(path: string, algo: HashAlgo = 'sha256'): Promise<Hash> {
  const h = createHash(algo);
  for await (const c of readFileChunks(path, true)) h.update(c);
  return { algo, digest: h.digest() };
}

/**
 * Materialises NAR events under `target`, which must not exist. Validates
 * the event sequence (names, order, sizes) as NarWriter does, never follows
 * or replaces an existing file, and sets executable bits as Nix does.
 * Synchronous: call finish() after the last event, abort() on failure.
 */
export class NarRestorer {
  private readonly check = new NarWriter();
  private readonly dirs: Buffer[] = [];
  private current: Buffer;
  private fd = -1;
  private executable = false;
  /** True once `target` itself has been created (so a failed restore may remove it). */
  created = false;
  readonly target: string;

  constructor(target: string) {
    this.target = target;
    this.current = Buffer.from(target);
  }

  handle(e: NarEvent): void {
    this.check.write(e);
    try {
      switch (e.type) {
        case 'directory':
          mkdirSync(this.current, 0o777);
          this.created = true;
          this.dirs.push(this.current);
          break;
        case 'entry':
          this.current = Buffer.concat([this.dirs[this.dirs.length - 1]!, SLASH, e.nameBytes ?? Buffer.from(e.name)]);
          break;
        case 'entryEnd':
          break;
        case 'directoryEnd':
          this.dirs.pop();
          break;
        case 'regular':
          this.fd = openSync(
            this.current,
            C.O_WRONLY | C.O_CREAT | C.O_EXCL | (C.O_NOFOLLOW ?? 0),
            e.executable ? 0o777 : 0o666,
          );
          this.created = true;
          this.executable = e.executable;
          break;
        case 'contents': {
          const d = e.data;
          let off = 0;
          while (off < d.length) off += writeSync(this.fd, d, off, d.length - off);
          break;
        }
        case 'regularEnd': {
          const fd = this.fd;
          this.fd = -1;
          try {
            if (this.executable) fchmodSync(fd, fstatSync(fd).mode | 0o111);
          } finally {
            closeSync(fd);
          }
          break;
        }
        case 'symlink':
          symlinkSync(e.targetBytes ? Buffer.from(e.targetBytes) : e.target, this.current);
          this.created = true;
          break;
      }
    } catch (err) {
      if (err instanceof BadNarEvent) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new NarRestoreError(`cannot restore '${show(this.current)}': ${(err as Error).message}`, {
        path: show(this.current),
        errno: code,
      });
    }
  }

  /** Throws unless a whole NAR was restored. */
  finish(): void {
    this.check.end();
  }

  /** Closes what is open; leaves the files for the caller to remove. */
  abort(): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = -1;
    }
  }
}

/**
 * Restores a NAR stream into `target` (which must not exist). Bytes after
 * the end of the NAR are an error. On failure nothing is left at `target`.
 */
export async function restoreNar(target: string, nar: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
  const r = new NarRestorer(target);
  const p = new NarParser({ onEvent: (e) => r.handle(e) });
  try {
    for await (const chunk of nar) {
      p.push(chunk);
      if (p.done) {
        const rest = p.takeRemainder();
        if (rest.length > 0) {
          throw badNar(p.offset, 'trailing-data', `data after the end of the NAR (${rest.length} bytes at least)`);
        }
      }
    }
    p.finish();
    r.finish();
  } catch (e) {
    r.abort();
    if (r.created) {
      try {
        rmSync(target, { recursive: true, force: true });
      } catch {
        // best effort: the original error matters more
      }
    }
    throw e;
  }
}
