// Store paths: `<storeDir>/<hash>-<name>`, where <hash> is 32 nix32 characters
// (160 bits) and <name> is 1-211 characters of [A-Za-z0-9+-._?=], not starting
// with a dot.
//
// Every store path is derived from a fingerprint string:
//   <type>:sha256:<base16 inner hash>:<storeDir>:<name>
// hashed with sha256, XOR-folded to 20 bytes, printed in nix32. The <type>
// names how the path was made:
//   source[:<ref>...][:self]     NAR-hashed content (sha256, recursive)
//   text[:<ref>...]              text files (builtins.toFile, .drv files)
//   output:<id>                  derivation outputs, and other fixed outputs
// A fixed output that is not (sha256, recursive) is an "output:out" path of
// the inner hash  sha256("fixed:out:" + ("r:" if recursive) + "<algo>:<base16>" + ":").
import { defineError } from '../errors.js';
import { base16Encode, compressHash, formatHash, hashBytes, type Hash } from './hash.js';
import { isNix32, nix32Encode } from './nix32.js';

export const HASH_PART_LENGTH = 32;
export const MAX_NAME_LENGTH = 211;
export const DEFAULT_STORE_DIR = '/nix/store';
export const DRV_EXTENSION = '.drv';

export class BadStorePath extends defineError('BadStorePath', 'E_BAD_STORE_PATH') {}
export class BadStorePathName extends defineError('BadStorePathName', 'E_BAD_STORE_PATH_NAME') {}

export type ContentMethod = 'flat' | 'recursive' | 'text';

export interface StorePathParts {
  hashPart: string;
  name: string;
}

const NAME_CHAR = /^[A-Za-z0-9+\-._?=]*$/;

/** Returns why `name` is not a valid store path name, or null. */
export function storePathNameProblem(name: string): string | null {
  if (name.length === 0) return 'name is empty';
  if (name.length > MAX_NAME_LENGTH) return `name is longer than ${MAX_NAME_LENGTH} characters`;
  if (name.startsWith('.')) return 'name must not start with a period';
  if (!NAME_CHAR.test(name)) {
    const bad = [...name].find((c) => !NAME_CHAR.test(c));
    return `name contains illegal character '${bad}'`;
  }
  return null;
}

export function checkStorePathName(name: string): string {
  const problem = storePathNameProblem(name);
  if (problem) throw new BadStorePathName(`invalid store path name '${name}': ${problem}`, { name });
  return name;
}

/** Splits a store path base name `<hash>-<name>`. */
export function parseStorePathBaseName(base: string): StorePathParts {
  if (base.length < HASH_PART_LENGTH + 2 || base[HASH_PART_LENGTH] !== '-') {
    throw new BadStorePath(`'${base}' is not a valid store path base name`, { path: base });
  }
  const hashPart = base.slice(0, HASH_PART_LENGTH);
  if (!isNix32(hashPart)) throw new BadStorePath(`store path '${base}' has an invalid hash part`, { path: base });
  const name = base.slice(HASH_PART_LENGTH + 1);
  const problem = storePathNameProblem(name);
  if (problem) throw new BadStorePath(`store path '${base}' has an invalid name: ${problem}`, { path: base });
  return { hashPart, name };
}

/** Parses `<storeDir>/<hash>-<name>` (nothing after the name). */
export function parseStorePath(storeDir: string, path: string): StorePathParts {
  const prefix = storeDir + '/';
  if (!path.startsWith(prefix)) {
    throw new BadStorePath(`path '${path}' is not in the Nix store '${storeDir}'`, { path, storeDir });
  }
  const base = path.slice(prefix.length);
  if (base.includes('/')) throw new BadStorePath(`path '${path}' is not a store path (it is inside one)`, { path });
  return parseStorePathBaseName(base);
}

export function isStorePath(storeDir: string, path: string): boolean {
  try {
    parseStorePath(storeDir, path);
    return true;
  } catch {
    return false;
  }
}

/** For a path inside the store, the store path that holds it. */
export function toStorePath(storeDir: string, path: string): string {
  const prefix = storeDir + '/';
  if (!path.startsWith(prefix)) throw new BadStorePath(`path '${path}' is not in the Nix store`, { path, storeDir });
  const slash = path.indexOf('/', prefix.length);
  const sp = slash < 0 ? path : path.slice(0, slash);
  parseStorePath(storeDir, sp);
  return sp;
}

export function storePathHashPart(storeDir: string, path: string): string {
  return parseStorePath(storeDir, path).hashPart;
}

export function storePathName(storeDir: string, path: string): string {
  return parseStorePath(storeDir, path).name;
}

export function isDerivationPath(path: string): boolean {
  return path.endsWith(DRV_EXTENSION);
}

/** The core: fingerprint -> store path. `inner` is usually a sha256 hash. */
export function makeStorePath(storeDir: string, type: string, inner: Hash, name: string): string {
  checkStorePathName(name);
  const fingerprint = `${type}:${inner.algo}:${base16Encode(inner.digest)}:${storeDir}:${name}`;
  const h = compressHash(hashBytes('sha256', fingerprint).digest, 20);
  return `${storeDir}/${nix32Encode(h)}-${name}`;
}

/** `<type>:<ref1>:<ref2>...[:self]`, references in sorted order. */
export function makeType(type: string, references: Iterable<string>, hasSelfReference = false): string {
  let s = type;
  for (const r of [...references].sort()) s += ':' + r;
  if (hasSelfReference) s += ':self';
  return s;
}

/** A path added from NAR contents (nix-store --add, builtins.path). */
export function makeSourcePath(
  storeDir: string,
  narHash: Hash,
  name: string,
  references: Iterable<string> = [],
  hasSelfReference = false,
): string {
  return makeStorePath(storeDir, makeType('source', references, hasSelfReference), narHash, name);
}

/** builtins.toFile, .drv files: text with references, no self-reference. */
export function makeTextPath(storeDir: string, contentHash: Hash, name: string, references: Iterable<string> = []): string {
  if (contentHash.algo !== 'sha256') {
    throw new BadStorePath(`text store path '${name}' needs a sha256 hash, not ${contentHash.algo}`, { name });
  }
  return makeStorePath(storeDir, makeType('text', references), contentHash, name);
}

/**
 * A content-addressed output (fixed-output derivations, CA floating outputs,
 * `store add --mode flat|nar`). sha256+recursive is a "source" path and may
 * have references; every other combination is an `output:out` path of the
 * `fixed:out:` hash and may have none.
 */
export function makeFixedOutputPath(
  storeDir: string,
  method: 'flat' | 'recursive',
  hash: Hash,
  name: string,
  references: Iterable<string> = [],
  hasSelfReference = false,
): string {
  if (hash.algo === 'sha256' && method === 'recursive') {
    return makeSourcePath(storeDir, hash, name, references, hasSelfReference);
  }
  const refs = [...references];
  if (refs.length > 0 || hasSelfReference) {
    throw new BadStorePath(`fixed-output path '${name}' (${method} ${hash.algo}) cannot have references`, {
      name,
      references: refs,
    });
  }
  const inner = hashBytes('sha256', `fixed:out:${method === 'recursive' ? 'r:' : ''}${formatHash(hash, 'base16')}:`);
  return makeStorePath(storeDir, 'output:out', inner, name);
}

/** Content-addressed path for any method, including `text`. */
export function makeContentAddressedPath(
  storeDir: string,
  method: ContentMethod,
  hash: Hash,
  name: string,
  references: Iterable<string> = [],
  hasSelfReference = false,
): string {
  if (method === 'text') {
    if (hasSelfReference) throw new BadStorePath(`text path '${name}' cannot refer to itself`, { name });
    return makeTextPath(storeDir, hash, name, references);
  }
  return makeFixedOutputPath(storeDir, method, hash, name, references, hasSelfReference);
}

/** `name` for output `out`, `name-<output>` otherwise. */
export function outputPathName(drvName: string, outputName: string): string {
  return outputName === 'out' ? drvName : `${drvName}-${outputName}`;
}

/** An input-addressed output: `output:<id>` of the derivation's modulo hash. */
export function makeOutputPath(storeDir: string, outputName: string, drvHashModulo: Hash, drvName: string): string {
  return makeStorePath(storeDir, `output:${outputName}`, drvHashModulo, outputPathName(drvName, outputName));
}

/** The `/<nix32>` string standing for an output path not yet known. */
export function hashPlaceholder(outputName: string): string {
  return '/' + nix32Encode(hashBytes('sha256', `nix-output:${outputName}`).digest);
}

/**
 * The placeholder a derivation uses for an output of a content-addressed
 * input derivation whose path is not known until that one is built.
 */
export function downstreamPlaceholder(storeDir: string, drvPath: string, outputName: string): string {
  const { hashPart, name } = parseStorePath(storeDir, drvPath);
  const drvName = name.endsWith(DRV_EXTENSION) ? name.slice(0, -DRV_EXTENSION.length) : name;
  const clear = `nix-upstream-output:${hashPart}:${outputPathName(drvName, outputName)}`;
  return '/' + nix32Encode(hashBytes('sha256', clear).digest);
}
