// Streaming hash rewriting with constant memory: equal-length replacement of
// 32-character hash parts (scratch output paths -> final paths, or a CA
// output's own hash part -> zeros while hashing it "modulo itself").
//
// Matching is leftmost and non-overlapping in one pass; replaced bytes are
// never examined again. For hash parts (which never produce one another)
// this is what Nix's string replacement does. Up to 31 bytes that could
// start a match are held back between chunks; flush() releases them.
import { createHash, type Hash as NodeHash } from 'node:crypto';
import { defineError } from '../errors.js';
import type { Hash, HashAlgo } from './hash.js';
import { HashPartTable, IS_NIX32, scanWindows } from './refscan.js';
import { HASH_PART_LENGTH } from './store-path.js';

export class BadRewrite extends defineError('BadRewrite', 'E_BAD_REWRITE') {}

const W = HASH_PART_LENGTH;

export interface HashRewriterOptions {
  /** Called for every match with its offset in the stream (before and after rewriting: lengths are equal). */
  onMatch?: (offset: number, from: string) => void;
}

export class HashRewriter {
  private readonly table: HashPartTable;
  /** replacement k occupies bytes [32k, 32k+32), parallel to table.needles. */
  private readonly replacements: Uint8Array;
  private readonly onMatch: ((offset: number, from: string) => void) | undefined;
  private readonly tail = new Uint8Array(W - 1);
  private tailLen = 0;
  /** Stream offset of the first byte not yet returned. */
  private pos = 0;
  private matchCount = 0;

  constructor(rewrites: Map<string, string>, opts: HashRewriterOptions = {}) {
    this.table = new HashPartTable(rewrites.keys());
    this.replacements = new Uint8Array(this.table.size * W);
    this.table.parts.forEach((from, k) => {
      const to = rewrites.get(from)!;
      if (to.length !== W) {
        throw new BadRewrite(`replacement '${to}' for hash part '${from}' is not ${W} characters long`, { from, to });
      }
      for (let i = 0; i < W; i++) {
        const c = to.charCodeAt(i);
        if (c > 0xff) throw new BadRewrite(`replacement for hash part '${from}' is not a byte string`, { from, to });
        this.replacements[k * W + i] = c;
      }
    });
    this.onMatch = opts.onMatch;
  }

  /** Number of replacements made so far. */
  get matches(): number {
    return this.matchCount;
  }

  /** Total bytes returned so far by update() and flush(). */
  get offset(): number {
    return this.pos;
  }

  /**
   * Rewrites a chunk. The result covers the input so far minus a held-back
   * tail; it may be a view of `chunk` itself when nothing changed, so use
   * it before reusing the chunk's memory.
   */
  update(chunk: Uint8Array): Uint8Array {
    const t = this.tailLen;
    if (this.table.size === 0) {
      this.pos += chunk.length;
      return chunk;
    }
    let buf: Uint8Array;
    let copied: boolean;
    if (t === 0) {
      buf = chunk;
      copied = false;
    } else {
      buf = new Uint8Array(t + chunk.length);
      buf.set(this.tail.subarray(0, t));
      buf.set(chunk, t);
      copied = true;
    }
    let lastEnd = 0;
    let hits: number[] | null = null;
    scanWindows(buf, 0, buf.length, this.table, (i, k) => {
      (hits ??= []).push(i, k);
      lastEnd = i + W;
      return i + W;
    });
    if (hits !== null) {
      const h: number[] = hits;
      if (!copied) buf = new Uint8Array(buf); // a copy (Buffer#slice would be a view)
      for (let m = 0; m < h.length; m += 2) {
        const i = h[m]!;
        const k = h[m + 1]!;
        buf.set(this.replacements.subarray(k * W, k * W + W), i);
        this.matchCount++;
        this.onMatch?.(this.pos + i, this.table.parts[k]!);
      }
    }
    // Hold back the nix32 suffix (at most 31 bytes, none inside a replacement):
    // only those bytes can start a match that the next chunk completes.
    const n = buf.length;
    let keepFrom = n;
    const stop = Math.max(n - (W - 1), lastEnd);
    while (keepFrom > stop && IS_NIX32[buf[keepFrom - 1]!] === 1) keepFrom--;
    this.tail.set(buf.subarray(keepFrom, n));
    this.tailLen = n - keepFrom;
    this.pos += keepFrom;
    return buf.subarray(0, keepFrom);
  }

  /** Returns the held-back bytes; call once at the end of the stream. */
  flush(): Uint8Array {
    const out = this.tail.slice(0, this.tailLen);
    this.pos += this.tailLen;
    this.tailLen = 0;
    return out;
  }
}

/** One-shot rewrite of a buffer (tests, small inputs such as env strings). */
export function rewriteBytes(data: Uint8Array, rewrites: Map<string, string>): Uint8Array {
  const r = new HashRewriter(rewrites);
  const a = r.update(data);
  const b = r.flush();
  if (b.length === 0) return a === data ? new Uint8Array(data) : a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * The offsets of the self-references a modulo hash saw, kept delta-encoded
 * as LEB128 varints (matches are >= 32 bytes apart, so a few bytes each
 * however large the output), and the `|<offset>` suffix Nix hashes after
 * the data.
 */
export class ModuloOffsets {
  private bytes = new Uint8Array(256);
  private len = 0;
  private last = 0;
  count = 0;

  record(offset: number): void {
    if (this.len + 10 > this.bytes.length) {
      const grown = new Uint8Array(this.bytes.length * 2);
      grown.set(this.bytes);
      this.bytes = grown;
    }
    let d = offset - this.last;
    this.last = offset;
    while (d >= 0x80) {
      this.bytes[this.len++] = (d % 0x80) | 0x80;
      d = Math.floor(d / 0x80);
    }
    this.bytes[this.len++] = d;
    this.count++;
  }

  /** Feeds `|<offset>` for every recorded offset, in order, to `hash`. */
  hashSuffix(hash: NodeHash): void {
    let text = '';
    let at = 0;
    let offset = 0;
    for (let m = 0; m < this.count; m++) {
      let d = 0;
      let mul = 1;
      for (;;) {
        const b = this.bytes[at++]!;
        d += (b & 0x7f) * mul;
        if (b < 0x80) break;
        mul *= 0x80;
      }
      offset += d;
      text += '|' + offset;
      if (text.length >= 65536) {
        hash.update(text, 'latin1');
        text = '';
      }
    }
    if (text.length > 0) hash.update(text, 'latin1');
  }
}

/**
 * The hash of a content-addressed output "modulo" its own hash part, as Nix
 * computes it for CA floating outputs (HashModuloSink): every occurrence of
 * `modulus` is replaced by 32 NUL bytes, and after the data the decimal
 * offset of each occurrence is hashed as `|<offset>`. So outputs that differ
 * only in their own path hash alike, without being held in memory.
 */
export class HashModuloSink {
  private readonly hash: NodeHash;
  private readonly rewriter: HashRewriter;
  private readonly offsets = new ModuloOffsets();
  readonly algo: HashAlgo;

  constructor(algo: HashAlgo, modulus: string) {
    this.algo = algo;
    this.hash = createHash(algo);
    this.rewriter = new HashRewriter(new Map([[modulus, '\0'.repeat(W)]]), {
      onMatch: (offset) => this.offsets.record(offset),
    });
  }

  update(chunk: Uint8Array): void {
    const out = this.rewriter.update(chunk);
    if (out.length > 0) this.hash.update(out);
  }

  /** The hash, the number of bytes hashed (before the offsets) and how many self-references were seen. */
  finish(): { hash: Hash; size: number; selfReferences: number } {
    const rest = this.rewriter.flush();
    if (rest.length > 0) this.hash.update(rest);
    const size = this.rewriter.offset;
    this.offsets.hashSuffix(this.hash);
    return { hash: { algo: this.algo, digest: this.hash.digest() }, size, selfReferences: this.offsets.count };
  }
}
