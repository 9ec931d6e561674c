// Reference scanning: which of N candidate store-path hash parts (32 nix32
// characters) occur in a byte stream, e.g. the NAR of a build output.
//
// Nix's skip-ahead search: a window of 32 bytes can only be a hash part if
// every byte is a nix32 character, so each window is checked from its end
// and the scan jumps past the first non-nix32 byte it finds. Only whole-
// nix32 windows are looked up, in an open-addressing table keyed by a few of
// their bytes. The last 31 bytes of each chunk are kept so a hash part split
// across chunks is still found.
import { defineError } from '../errors.js';
import { NIX32_DIGIT } from './nix32.js';
import { HASH_PART_LENGTH } from './store-path.js';

export class BadHashPart extends defineError('BadHashPart', 'E_BAD_HASH_PART') {}

const W = HASH_PART_LENGTH;

/** 1 for bytes that are nix32 characters. */
export const IS_NIX32: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = NIX32_DIGIT[c] === 0xff ? 0 : 1;
  return t;
})();

export function checkHashPart(s: string, what = 'hash part'): void {
  if (s.length !== W) throw new BadHashPart(`${what} '${s}' is not ${W} characters long`, { value: s });
  for (let i = 0; i < W; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || !IS_NIX32[c]) throw new BadHashPart(`${what} '${s}' contains a non-nix32 character`, { value: s });
  }
}

/** Longest q-gram of the shift table (Wu-Manber); scanWindows reads the last 4 bytes of every window. */
const MAX_Q = 4;

/**
 * The q-gram length for `n` needles: the shortest whose table still lets
 * ~96% of random nix32 windows skip (n needles cover n * (33 - q) of the
 * 32^q q-grams): q = 2 for one needle, 3 up to 43, else 4. A build with a handful of candidates gets a 1 KiB or
 * 32 KiB table instead of filling 1 MiB per build.
 */
function gramLength(n: number): number {
  for (let q = 2; q < MAX_Q; q++) if (n * (W + 1 - q) <= 0.04 * 32 ** q) return q;
  return MAX_Q;
}

/** Bytes scanned through a table before its shift table is built (most build outputs are smaller). */
const SHIFT_AFTER = 256 * 1024;
/** The shift table of a table that has none yet: index 0 only, no shift, every window looked up. */
const NO_SHIFT = new Uint8Array(1);

/**
 * A set of 32-byte hash parts compiled for lookup of a window in a byte
 * buffer. Built once per scan (per build), shared by scanner and rewriter.
 *
 * Besides the exact-match table it holds a Wu-Manber shift table over the
 * last q characters of a window (32^q entries, q from 2 to 4 by the number
 * of needles): how far the window may move before those characters could
 * line up with a needle. That keeps long runs of nix32 text (hashes,
 * base-32 data) from costing a lookup per byte. It is built once 256 KiB
 * have been scanned: for the few bytes of a typical output, filling up to
 * 1 MiB would cost more than the scan.
 */
export class HashPartTable {
  readonly parts: readonly string[];
  /** needle k occupies bytes [32k, 32k+32). */
  readonly needles: Uint8Array;
  /** Indexed by the nix32 digits of a window's last q bytes (5 bits each, last byte lowest); NO_SHIFT until built. */
  shift: Uint8Array = NO_SHIFT;
  /** Selects the last q digits of the 4-digit gram scanWindows computes (0 until the shift table is built). */
  gramMask = 0;
  /** Bytes scanned so far, until the shift table is built. */
  scanned = 0;
  private readonly slots: Int32Array;
  private readonly mask: number;

  constructor(parts: Iterable<string>) {
    const uniq = [...new Set(parts)];
    for (const p of uniq) checkHashPart(p);
    this.parts = uniq;
    this.needles = new Uint8Array(uniq.length * W);
    let size = 64;
    while (size < uniq.length * 4) size *= 2;
    this.slots = new Int32Array(size).fill(-1);
    this.mask = size - 1;
    uniq.forEach((p, k) => {
      for (let i = 0; i < W; i++) this.needles[k * W + i] = p.charCodeAt(i);
      let s = keyOf(this.needles, k * W) & this.mask;
      while (this.slots[s] !== -1) s = (s + 1) & this.mask;
      this.slots[s] = k;
    });
  }

  /** Builds the shift table (scanWindows calls it once enough bytes went through). */
  buildShift(): void {
    const n = this.parts.length;
    const q = gramLength(n);
    // A q-gram that ends no needle's prefix: the window moves past it but for q - 1 bytes.
    const shift = new Uint8Array(1 << (5 * q)).fill(W - q + 1);
    for (let k = 0; k < n; k++) {
      for (let end = q - 1; end < W; end++) {
        let g = 0;
        for (let i = end - q + 1; i <= end; i++) g = (g << 5) | NIX32_DIGIT[this.needles[k * W + i]!]!;
        const sh = W - 1 - end;
        if (sh < shift[g]!) shift[g] = sh;
      }
    }
    this.shift = shift;
    this.gramMask = (1 << (5 * q)) - 1;
  }

  get size(): number {
    return this.parts.length;
  }

  /** Index of the part equal to buf[i, i+32), or -1. */
  find(buf: Uint8Array, i: number): number {
    const needles = this.needles;
    const slots = this.slots;
    let s = keyOf(buf, i) & this.mask;
    for (;;) {
      const k = slots[s]!;
      if (k < 0) return -1;
      const base = k * W;
      let j = 0;
      while (j < W && buf[i + j] === needles[base + j]) j++;
      if (j === W) return k;
      s = (s + 1) & this.mask;
    }
  }
}

function keyOf(b: Uint8Array, i: number): number {
  const x = b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
  const y = b[i + 28]! | (b[i + 29]! << 8) | (b[i + 30]! << 16) | (b[i + 31]! << 24);
  return Math.imul(x ^ Math.imul(y, 0x9e3779b1), 0x85ebca77) >>> 15;
}

/**
 * Calls `hit(i, k)` for each window buf[i, i+32) with i in [start, end - 32]
 * that equals part k; `hit` returns where to continue (i + 1 to find
 * overlapping windows, i + 32 to skip the match).
 */
export function scanWindows(
  buf: Uint8Array,
  start: number,
  end: number,
  table: HashPartTable,
  hit: (i: number, k: number) => number,
): void {
  const digit = NIX32_DIGIT;
  if (table.shift === NO_SHIFT && (table.scanned += end - start) > SHIFT_AFTER) table.buildShift();
  const shift = table.shift;
  const gramMask = table.gramMask;
  const last = end - W;
  let i = start;
  while (i <= last) {
    const e = i + W - 1;
    // Nix's skip-ahead: a non-nix32 byte at the end moves the window past it.
    const d3 = digit[buf[e]!]!;
    if (d3 === 0xff) {
      i = e + 1;
      continue;
    }
    const d2 = digit[buf[e - 1]!]!;
    const d1 = digit[buf[e - 2]!]!;
    const d0 = digit[buf[e - 3]!]!;
    if ((d0 | d1 | d2) > 31) {
      i = (d2 === 0xff ? e - 1 : d1 === 0xff ? e - 2 : e - 3) + 1;
      continue;
    }
    const sh = shift[((d0 << 15) | (d1 << 10) | (d2 << 5) | d3) & gramMask]!;
    if (sh !== 0) {
      i += sh;
      continue;
    }
    // The last q bytes end a needle's q-gram (and the last 4 are nix32): check the rest from the end.
    let j = e - MAX_Q;
    while (j >= i && digit[buf[j]!] !== 0xff) j--;
    if (j >= i) {
      i = j + 1;
      continue;
    }
    const k = table.find(buf, i);
    i = k >= 0 ? hit(i, k) : i + 1;
  }
}

/** Which candidate hash parts occur in the bytes given to update(); chunking never changes the result. */
export class RefScanner {
  private readonly table: HashPartTable;
  private readonly seen: Uint8Array;
  private readonly foundSet = new Set<string>();
  /** Up to 31 trailing bytes of the input so far, then room for 31 of the next chunk. */
  private readonly carry = new Uint8Array(2 * (W - 1));
  private carryLen = 0;
  private readonly onHit: (i: number, k: number) => number;

  constructor(hashParts: Iterable<string> | HashPartTable) {
    this.table = hashParts instanceof HashPartTable ? hashParts : new HashPartTable(hashParts);
    this.seen = new Uint8Array(this.table.size);
    this.onHit = (i, k) => {
      if (!this.seen[k]) {
        this.seen[k] = 1;
        this.foundSet.add(this.table.parts[k]!);
      }
      return i + 1;
    };
  }

  update(chunk: Uint8Array): void {
    const n = chunk.length;
    if (n === 0 || this.foundSet.size === this.table.size) return;
    const c = this.carry;
    const t = this.carryLen;
    if (t > 0) {
      // Windows that start in the carried tail and end in this chunk.
      const head = Math.min(n, W - 1);
      c.set(chunk.subarray(0, head), t);
      scanWindows(c, 0, Math.min(t + head, t - 1 + W), this.table, this.onHit);
    }
    scanWindows(chunk, 0, n, this.table, this.onHit);
    if (n >= W - 1) {
      c.set(chunk.subarray(n - (W - 1)));
      this.carryLen = W - 1;
    } else {
      // c already holds tail + chunk when t > 0; keep its last 31 bytes.
      if (t === 0) c.set(chunk);
      const total = t + n;
      const keep = Math.min(total, W - 1);
      c.copyWithin(0, total - keep, total);
      this.carryLen = keep;
    }
  }

  /** The hash parts seen so far. */
  found(): Set<string> {
    return new Set(this.foundSet);
  }
}

/** One-shot scan of a buffer (tests, small inputs). */
export function scanForHashParts(data: Uint8Array, hashParts: Iterable<string>): Set<string> {
  const s = new RefScanner(hashParts);
  s.update(data);
  return s.found();
}
