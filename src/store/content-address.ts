// Content addresses as the `ca` column and `nix path-info` show them:
//
//   text:sha256:<nix32>          builtins.toFile, .drv files
//   fixed:r:<algo>:<nix32>       NAR (recursive) hashing
//   fixed:<algo>:<nix32>         flat file hashing
//
// Parsing accepts any digest encoding (as Nix does); rendering is canonical.
import { formatHash, parseHash, parseHashAlgo, type Hash } from '../format/hash.js';
import { makeFixedOutputPath, makeTextPath, parseStorePath } from '../format/store-path.js';
import { BadContentAddress } from './errors.js';

export type IngestionMethod = 'flat' | 'recursive';

export type ContentAddress = { method: 'text'; hash: Hash } | { method: IngestionMethod; hash: Hash };

export function renderContentAddress(ca: ContentAddress): string {
  switch (ca.method) {
    case 'text':
      return `text:${formatHash(ca.hash, 'nix32')}`;
    case 'recursive':
      return `fixed:r:${formatHash(ca.hash, 'nix32')}`;
    case 'flat':
      return `fixed:${formatHash(ca.hash, 'nix32')}`;
  }
}

export function parseContentAddress(s: string): ContentAddress {
  const bad = (why: string) => new BadContentAddress(`invalid content address '${s}': ${why}`, { value: s });
  const colon = s.indexOf(':');
  if (colon < 0) throw bad("expected '<prefix>:<rest>'");
  const prefix = s.slice(0, colon);
  let rest = s.slice(colon + 1);
  const hashOf = (algoAndDigest: string): Hash => {
    const c = algoAndDigest.indexOf(':');
    if (c < 0) throw bad("expected '<algo>:<hash>'");
    try {
      const algo = parseHashAlgo(algoAndDigest.slice(0, c));
      return parseHash(algoAndDigest.slice(c + 1), algo);
    } catch (e) {
      throw bad((e as Error).message);
    }
  };
  if (prefix === 'text') {
    const hash = hashOf(rest);
    if (hash.algo !== 'sha256') throw bad('text hashing only supports sha256');
    return { method: 'text', hash };
  }
  if (prefix === 'fixed') {
    let method: IngestionMethod = 'flat';
    if (rest.startsWith('r:')) {
      method = 'recursive';
      rest = rest.slice(2);
    }
    return { method, hash: hashOf(rest) };
  }
  throw bad(`unknown prefix '${prefix}' (expected 'text' or 'fixed')`);
}

/** The store path `ca` (with `references`, possibly including `path` itself) implies for `name`. */
export function contentAddressedPath(
  storeDir: string,
  ca: ContentAddress,
  name: string,
  references: Iterable<string>,
  self: string | null,
): string {
  const refs = new Set(references);
  let hasSelf = false;
  if (self !== null && refs.has(self)) {
    hasSelf = true;
    refs.delete(self);
  }
  if (ca.method === 'text') {
    if (hasSelf) throw new BadContentAddress(`text path '${self}' cannot refer to itself`, { path: self });
    return makeTextPath(storeDir, ca.hash, name, refs);
  }
  return makeFixedOutputPath(storeDir, ca.method, ca.hash, name, refs, hasSelf);
}

/** True when `path`'s name follows from its content address and references (Nix's isContentAddressed). */
export function pathMatchesContentAddress(storeDir: string, path: string, ca: ContentAddress, references: Iterable<string>): boolean {
  const { name } = parseStorePath(storeDir, path);
  try {
    return contentAddressedPath(storeDir, ca, name, references, path) === path;
  } catch {
    return false;
  }
}
