// exportReferencesGraph: handing the builder the closure of some of its
// inputs. Two forms, as Nix 2.8 implements them (it never documented them):
//
// Legacy (no structured attrs): the env var is a whitespace-separated list
// of pairs `<file name> <store path>`. Each file name must match
// [A-Za-z_][A-Za-z0-9_.-]*, each path must lie in the store (a path inside
// a store path counts as that store path). The build dir gets one file per
// pair, in the format of `nix-store --register-validity` without hashes and
// with empty derivers; for each path of the closure, in sorted order:
//
//   <store path>\n
//   \n                        (deriver, left empty)
//   <number of references>\n
//   <reference>\n ...         (sorted, self-references included)
//
// Structured attrs: `exportReferencesGraph` is an object mapping a key to a
// store path or a list of store paths; `.attrs.json` gets a top-level
// attribute of that key: a list (sorted by path) of objects
//   {"closureSize":N,"narHash":"sha256:<nix32>","narSize":N,"path":"...","references":[...]}
// plus "ca" for content-addressed paths (keys in byte order: "ca" first).
//
// The closure of a path includes, for every .drv in it, the closures of that
// derivation's outputs (which must then be valid). Every named path must be
// in the derivation's input closure.
import { formatHash, type Hash } from '../format/hash.js';
import { compareUtf8, outputPath } from '../format/derivation.js';
import { isDerivationPath, parseStorePath, toStorePath } from '../format/store-path.js';
import type { LocalStore } from '../store/local-store.js';
import {
  ExportReferencesGraphBadFileName,
  ExportReferencesGraphBadPath,
  ExportReferencesGraphNotStorePath,
  ExportReferencesGraphOddTokens,
  ExportReferencesNotInInputClosure,
  ExportReferencesUnknownOutput,
} from './errors-register.js';
import { jsonObject, tokenizeString, type JsonValue } from './structured-attrs.js';

/** What the closure writers need to know of a path. */
export interface PathInfoLike {
  path: string;
  narHash: Hash;
  narSize: number;
  references: readonly string[];
  deriver?: string | null;
  /** Rendered content address, when the path has one. */
  ca?: string | null;
}

export interface LegacyGraphEntry {
  fileName: string;
  /** The store path the token names (the token may be a path inside it). */
  storePath: string;
}

const FILE_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** Nix's isInDir: strictly below `dir`. */
function isInStore(storeDir: string, p: string): boolean {
  return p.startsWith('/') && p.startsWith(storeDir) && p.length >= storeDir.length + 2 && p[storeDir.length] === '/';
}

/** Parses and checks the legacy form (the env var's value), with Nix's messages. */
export function parseLegacyExportReferencesGraph(storeDir: string, value: string): LegacyGraphEntry[] {
  const tokens = tokenizeString(value);
  if (tokens.length % 2 !== 0) {
    throw new ExportReferencesGraphOddTokens(`odd number of tokens in 'exportReferencesGraph': '${value}'`, { value });
  }
  const res: LegacyGraphEntry[] = [];
  for (let i = 0; i < tokens.length; i += 2) {
    const fileName = tokens[i]!;
    const p = tokens[i + 1]!;
    if (!FILE_NAME.test(fileName)) {
      throw new ExportReferencesGraphBadFileName(`invalid file name '${fileName}' in 'exportReferencesGraph'`, { fileName });
    }
    if (!isInStore(storeDir, p)) {
      throw new ExportReferencesGraphNotStorePath(`'exportReferencesGraph' contains a non-store path '${p}'`, { path: p });
    }
    res.push({ fileName, storePath: toStorePath(storeDir, p) });
  }
  return res;
}

function sortedInfos(infos: readonly PathInfoLike[]): PathInfoLike[] {
  return [...infos].sort((a, b) => compareUtf8(a.path, b.path));
}

/** The legacy file: `nix-store --register-validity` format, no hashes, empty derivers. */
export function registrationText(infos: readonly PathInfoLike[]): string {
  let s = '';
  for (const info of sortedInfos(infos)) {
    const refs = [...new Set(info.references)].sort(compareUtf8);
    s += `${info.path}\n\n${refs.length}\n`;
    for (const r of refs) s += r + '\n';
  }
  return s;
}

/** The structured-attrs value: path infos with closure sizes (Nix's pathInfoToJSON, re-read by nlohmann). */
export function closureJson(infos: readonly PathInfoLike[]): JsonValue {
  const byPath = new Map(infos.map((i) => [i.path, i]));
  const closureSize = (root: string): bigint => {
    let total = 0n;
    const seen = new Set<string>();
    const todo = [root];
    while (todo.length > 0) {
      const p = todo.pop()!;
      if (seen.has(p)) continue;
      seen.add(p);
      const info = byPath.get(p);
      if (!info) continue; // not in the set: the caller's closure was incomplete
      total += BigInt(info.narSize);
      for (const r of info.references) if (!seen.has(r)) todo.push(r);
    }
    return total;
  };
  return sortedInfos(infos).map((info) => {
    const o = jsonObject();
    if (info.ca) o['ca'] = info.ca;
    o['closureSize'] = closureSize(info.path);
    o['narHash'] = formatHash(info.narHash, 'nix32');
    o['narSize'] = BigInt(info.narSize);
    o['path'] = info.path;
    o['references'] = [...new Set(info.references)].sort(compareUtf8);
    return o;
  });
}

/**
 * Nix's exportReferences against a local store: the closure of `roots`
 * (each of which must be in `inputPaths`), plus the closures of the outputs
 * of every derivation in it. For DesugarInput.closureInfos.
 */
export function closureInfosFromStore(store: LocalStore, inputPaths: ReadonlySet<string>): (roots: string[]) => PathInfoLike[] {
  return (roots) => {
    const paths = new Set<string>();
    for (const r of roots) {
      if (!inputPaths.has(r)) {
        throw new ExportReferencesNotInInputClosure(
          `cannot export references of path '${r}' because it is not in the input closure of the derivation`,
          { path: r },
        );
      }
      for (const p of store.computeClosure([r])) paths.add(p);
    }
    for (const j of [...paths]) {
      if (!isDerivationPath(j)) continue;
      const drv = store.readDerivation(j);
      for (const name of drv.outputs.keys()) {
        const o = outputPath(store.storeDir, drv, name);
        if (o === null) {
          throw new ExportReferencesUnknownOutput('exportReferences on CA derivations is not yet implemented', { derivation: j, output: name });
        }
        for (const p of store.computeClosure([o])) paths.add(p);
      }
    }
    return [...paths].sort(compareUtf8).map((p) => {
      const info = store.requirePathInfo(p);
      return { path: p, narHash: info.narHash, narSize: info.narSize, references: info.references, deriver: info.deriver, ca: info.ca };
    });
  };
}

/** A store path named in the structured form: a string, exactly a store path. */
export function structuredGraphRoot(storeDir: string, key: string, v: JsonValue): string {
  if (typeof v !== 'string') {
    throw new ExportReferencesGraphBadPath(`exportReferencesGraph.${key}: expected a store path string, got a JSON ${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'bigint' ? 'number' : typeof v}`, {
      key,
    });
  }
  try {
    parseStorePath(storeDir, v);
  } catch {
    throw new ExportReferencesGraphBadPath(`path '${v}' is not in the Nix store`, { key, path: v });
  }
  return v;
}
