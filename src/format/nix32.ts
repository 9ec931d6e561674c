// Nix's base-32: its own alphabet (no e, o, u, t) and its own bit order. The
// last character encodes the lowest bits of the first byte, so the encoding of
// a digest reads "backwards" compared with RFC 4648.
//
//   length(n bytes) = ceil(n * 8 / 5)
//   char k (from the end) holds bits [5k, 5k+5) of the digest, little-endian.

export const NIX32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';

/** byte -> digit, or 0xff when the byte is not a nix32 character. */
export const NIX32_DIGIT: Uint8Array = (() => {
  const t = new Uint8Array(256).fill(0xff);
  for (let i = 0; i < NIX32_ALPHABET.length; i++) t[NIX32_ALPHABET.charCodeAt(i)] = i;
  return t;
})();

export function nix32EncodedLength(bytes: number): number {
  return Math.ceil((bytes * 8) / 5);
}

export function nix32Encode(bytes: Uint8Array): string {
  const len = nix32EncodedLength(bytes.length);
  let out = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const lo = bytes[i]! >> j;
    const hi = i + 1 < bytes.length ? bytes[i + 1]! << (8 - j) : 0;
    out += NIX32_ALPHABET[(lo | hi) & 0x1f];
  }
  return out;
}

/**
 * Decodes a nix32 string into `size` bytes (default: the size the length
 * implies). Returns null for a bad character or non-zero padding bits, so the
 * caller can say what the value was for.
 */
export function nix32Decode(s: string, size = Math.floor((s.length * 5) / 8)): Uint8Array | null {
  if (s.length !== nix32EncodedLength(size)) return null;
  const out = new Uint8Array(size);
  for (let n = 0; n < s.length; n++) {
    const digit = NIX32_DIGIT[s.charCodeAt(s.length - n - 1) & 0xff]!;
    if (digit === 0xff || s.charCodeAt(s.length - n - 1) > 0xff) return null;
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i]! |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < size) out[i + 1]! |= carry;
    else if (carry) return null;
  }
  return out;
}

export function isNix32(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || NIX32_DIGIT[c] === 0xff) return false;
  }
  return true;
}
