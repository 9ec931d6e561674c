// Hashes as Nix prints and parses them.
//
//   <algo>:<digest>     digest in base16, nix32 or base64 (told apart by length)
//   <algo>-<base64>     SRI
//   <digest>            bare, when the algorithm is known from context
//
// Digests are computed with node:crypto; this module does no I/O.
import { createHash } from 'node:crypto';
import { defineError } from '../errors.js';
import { nix32Decode, nix32Encode, nix32EncodedLength } from './nix32.js';

export type HashAlgo = 'md5' | 'sha1' | 'sha256' | 'sha512';
export type HashEncoding = 'base16' | 'nix32' | 'base64' | 'sri';

export const HASH_ALGOS: readonly HashAlgo[] = ['md5', 'sha1', 'sha256', 'sha512'];
export const HASH_SIZE: Readonly<Record<HashAlgo, number>> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };

export class BadHash extends defineError('BadHash', 'E_BAD_HASH') {}

export interface Hash {
  readonly algo: HashAlgo;
  readonly digest: Uint8Array;
}

export function isHashAlgo(s: string): s is HashAlgo {
  return (HASH_ALGOS as readonly string[]).includes(s);
}

export function parseHashAlgo(s: string): HashAlgo {
  if (!isHashAlgo(s)) throw new BadHash(`unknown hash algorithm '${s}' (expected md5, sha1, sha256 or sha512)`, { value: s });
  return s;
}

export function hashBytes(algo: HashAlgo, data: Uint8Array | string): Hash {
  return { algo, digest: createHash(algo).update(data).digest() };
}

export function base16Encode(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function base64Encode(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function encodeDigest(h: Hash, encoding: Exclude<HashEncoding, 'sri'>): string {
  switch (encoding) {
    case 'base16':
      return base16Encode(h.digest);
    case 'nix32':
      return nix32Encode(h.digest);
    case 'base64':
      return base64Encode(h.digest);
  }
}

/** `sha256:<digest>`, or SRI `sha256-<base64>`. */
export function formatHash(h: Hash, encoding: HashEncoding = 'nix32', withAlgo = true): string {
  if (encoding === 'sri') return `${h.algo}-${base64Encode(h.digest)}`;
  const d = encodeDigest(h, encoding);
  return withAlgo ? `${h.algo}:${d}` : d;
}

function decodeDigest(algo: HashAlgo, d: string, whole: string): Uint8Array {
  const size = HASH_SIZE[algo];
  if (d.length === size * 2) {
    if (!/^[0-9a-fA-F]*$/.test(d)) throw new BadHash(`invalid base-16 hash '${whole}'`, { value: whole });
    return Buffer.from(d, 'hex');
  }
  if (d.length === nix32EncodedLength(size)) {
    const bytes = nix32Decode(d, size);
    if (!bytes) throw new BadHash(`invalid base-32 hash '${whole}'`, { value: whole });
    return bytes;
  }
  if (d.length === Math.ceil(size / 3) * 4) return decodeBase64Strict(d, size, whole);
  throw new BadHash(`hash '${whole}' has wrong length for hash type '${algo}'`, { value: whole, algo });
}

function decodeBase64Strict(d: string, size: number, whole: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(d)) throw new BadHash(`invalid base-64 hash '${whole}'`, { value: whole });
  const bytes = Buffer.from(d, 'base64');
  if (bytes.length !== size || bytes.toString('base64') !== d) {
    throw new BadHash(`invalid base-64 hash '${whole}'`, { value: whole });
  }
  return bytes;
}

/**
 * Parses `algo:digest`, SRI `algo-base64`, or a bare digest when `algo` is
 * given. When both the string and `algo` name an algorithm they must agree.
 */
export function parseHash(s: string, algo?: HashAlgo): Hash {
  const colon = s.indexOf(':');
  if (colon >= 0) {
    const a = parseHashAlgo(s.slice(0, colon));
    if (algo && a !== algo) throw new BadHash(`hash '${s}' should have type '${algo}'`, { value: s, algo });
    return { algo: a, digest: decodeDigest(a, s.slice(colon + 1), s) };
  }
  const dash = s.indexOf('-');
  if (dash >= 0 && isHashAlgo(s.slice(0, dash))) {
    const a = s.slice(0, dash) as HashAlgo;
    if (algo && a !== algo) throw new BadHash(`hash '${s}' should have type '${algo}'`, { value: s, algo });
    return { algo: a, digest: decodeBase64Strict(s.slice(dash + 1), HASH_SIZE[a], s) };
  }
  if (!algo) throw new BadHash(`hash '${s}' does not include a type`, { value: s });
  return { algo, digest: decodeDigest(algo, s, s) };
}

/** XOR-folds a digest into `size` bytes, as Nix does for store path hashes. */
export function compressHash(digest: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < digest.length; i++) out[i % size]! ^= digest[i]!;
  return out;
}

export function hashEquals(a: Hash, b: Hash): boolean {
  return a.algo === b.algo && Buffer.compare(a.digest, b.digest) === 0;
}
