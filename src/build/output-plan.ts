// Where each output of a build is written (its scratch path), and the string
// rewrites that point the builder there, as Nix's startBuilder decides them.
//
// An output is built at its final path when that is possible: always in a
// sandbox that has its own store directory (no hash rewriting), otherwise
// when the path does not exist yet, or exists but is invalid (it is deleted
// before the build; not in repair mode, which keeps it until the new copy
// is in place). Otherwise (an output that is valid or being repaired or
// checked) the builder writes a fallback path, and registration rewrites
// its hash part to the final one. Outputs whose path is only known after
// the build (CA floating, impure) always go to a fallback path.
//
// Fallback paths are store paths of a made-up fingerprint (Nix's
// makeFallbackPath), with the all-zero sha256 as inner hash:
//   rewrite:<drv base name>:name:<output>   output path not known
//   rewrite:<drv base name>:<final base>    output path known
//
// inputRewrites, applied to args, env and passAsFile/.attrs contents:
//   hashPlaceholder(out) -> scratch path of out
//   hash part of the final path -> hash part of the scratch path (when they differ)
import type { Derivation, OutputKind } from '../format/derivation.js';
import { compareUtf8, outputPath } from '../format/derivation.js';
import { HASH_SIZE } from '../format/hash.js';
import { hashPlaceholder, makeStorePath, outputPathName, parseStorePath } from '../format/store-path.js';

export type BuildMode = 'normal' | 'check' | 'repair';

export interface OutputPlanEntry {
  name: string;
  kind: OutputKind;
  /** null when only known after the build (CA floating, impure, deferred). */
  finalPath: string | null;
  /** Logical path the builder writes ($out etc.). */
  scratchPath: string;
}

export interface OutputPlan {
  outputs: Map<string, OutputPlanEntry>;
  /**
   * Applied to args, env values and passAsFile/.attrs contents:
   * placeholders (hashPlaceholder(out)) -> scratch paths, final hash parts ->
   * scratch hash parts. Not to the builder path (Nix leaves it alone).
   */
  inputRewrites: Map<string, string>;
}

export interface PlanOutputsInput {
  storeDir: string;
  drvPath: string;
  drv: Derivation;
  /** The backend builds in the real store directory (no private store dir). */
  needsHashRewrite: boolean;
  mode: BuildMode;
  /** Valid or present in the store. */
  pathExists(logicalPath: string): boolean;
  /** Registered as valid. Without it, every existing path counts as valid (always safe: it only adds a rewrite). */
  isValid?(logicalPath: string): boolean;
  /** Unused: a build produces every output; kept for the goal's convenience. */
  wantedOutputs?: ReadonlySet<string>;
}

const ZERO_SHA256 = { algo: 'sha256' as const, digest: new Uint8Array(HASH_SIZE.sha256) };

function drvBaseName(storeDir: string, drvPath: string): string {
  const { hashPart, name } = parseStorePath(storeDir, drvPath);
  return `${hashPart}-${name}`;
}

/** Fallback path of an output whose final path is not known before the build. */
export function makeFallbackPath(storeDir: string, drvPath: string, drvName: string, outputName: string): string {
  return makeStorePath(storeDir, `rewrite:${drvBaseName(storeDir, drvPath)}:name:${outputName}`, ZERO_SHA256, outputPathName(drvName, outputName));
}

/** Fallback path standing in for the known output path `path`. */
export function makeFallbackPathFor(storeDir: string, drvPath: string, path: string): string {
  const p = parseStorePath(storeDir, path);
  return makeStorePath(storeDir, `rewrite:${drvBaseName(storeDir, drvPath)}:${p.hashPart}-${p.name}`, ZERO_SHA256, p.name);
}

export function planOutputs(p: PlanOutputsInput): OutputPlan {
  const { storeDir, drvPath, drv } = p;
  const isValid = p.isValid ?? p.pathExists;
  const outputs = new Map<string, OutputPlanEntry>();
  const inputRewrites = new Map<string, string>();
  for (const name of [...drv.outputs.keys()].sort(compareUtf8)) {
    const out = drv.outputs.get(name)!;
    const known = out.kind === 'inputAddressed' || out.kind === 'caFixed' ? outputPath(storeDir, drv, name) : null;
    let scratch: string;
    if (known === null) scratch = makeFallbackPath(storeDir, drvPath, drv.name, name);
    else if (!p.needsHashRewrite || !p.pathExists(known)) scratch = known;
    else if (p.mode !== 'repair' && !isValid(known)) scratch = known;
    else scratch = makeFallbackPathFor(storeDir, drvPath, known);
    outputs.set(name, { name, kind: out.kind, finalPath: known, scratchPath: scratch });
    inputRewrites.set(hashPlaceholder(name), scratch);
    if (known !== null && known !== scratch) {
      inputRewrites.set(parseStorePath(storeDir, known).hashPart, parseStorePath(storeDir, scratch).hashPart);
    }
  }
  return { outputs, inputRewrites };
}

/**
 * Scratch paths to delete before the builder starts: fallback paths (a
 * leftover of an interrupted build would be in the builder's way) and final
 * paths that exist but are not valid. Never a valid path.
 */
export function scratchPathsToClear(plan: OutputPlan, isValid: (p: string) => boolean): string[] {
  const res: string[] = [];
  for (const o of plan.outputs.values()) if (!isValid(o.scratchPath)) res.push(o.scratchPath);
  return res;
}

/**
 * Nix's rewriteStrings: each rewrite in byte order of its key, replacing
 * every occurrence left to right. Used on small strings (env, args, the
 * contents of passAsFile and .attrs files); outputs use the streaming
 * HashRewriter instead.
 */
export function rewriteStrings(s: string, rewrites: ReadonlyMap<string, string>): string {
  if (rewrites.size === 0) return s;
  for (const from of [...rewrites.keys()].sort(compareUtf8)) {
    const to = rewrites.get(from)!;
    if (from === to || from === '') continue;
    let j = s.indexOf(from);
    if (j < 0) continue;
    // Nix searches again from the start of the replacement; that only
    // differs (by looping forever) when `to` contains `from`, so skip it then.
    const step = to.includes(from) ? to.length : 0;
    while (j >= 0) {
      s = s.slice(0, j) + to + s.slice(j + from.length);
      j = s.indexOf(from, j + step);
    }
  }
  return s;
}
