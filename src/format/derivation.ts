// The derivation model, as Nix 2.8 keeps it in memory (BasicDerivation +
// inputDrvs). Pure data plus the rules every codec shares: output kinds,
// the byte order of keys, output paths, and validation.
//
// Output kinds (the ATerm columns path, hashAlgo, hash in brackets):
//   inputAddressed  {path}                 [path, "", ""]
//   caFixed         {method, hash}         [computed path, "r:sha256", base16]
//   caFloating      {method, hashAlgo}     ["", "r:sha256", ""]
//   deferred        input-addressed, path not known yet   ["", "", ""]
//   impure          {method, hashAlgo}     ["", "r:sha256", "impure"]
// The method prefix of hashAlgo is "" (flat), "r:" (recursive) or "text:"
// (text; a later Nix spelling, Nix 2.8 has no text outputs).
//
// Every map and set prints in byte order of the UTF-8 encoding, like
// std::map<std::string> in Nix: see compareUtf8.
import { defineError } from '../errors.js';
import { HASH_SIZE, isHashAlgo, type Hash, type HashAlgo } from './hash.js';
import {
  DEFAULT_STORE_DIR,
  DRV_EXTENSION,
  makeFixedOutputPath,
  makeTextPath,
  outputPathName,
  parseStorePath,
  storePathNameProblem,
  type ContentMethod,
} from './store-path.js';

export type { ContentMethod } from './store-path.js';

export interface InputAddressedOutput {
  readonly kind: 'inputAddressed';
  readonly path: string;
}
export interface CaFixedOutput {
  readonly kind: 'caFixed';
  readonly method: ContentMethod;
  readonly hash: Hash;
}
export interface CaFloatingOutput {
  readonly kind: 'caFloating';
  readonly method: ContentMethod;
  readonly hashAlgo: HashAlgo;
}
export interface DeferredOutput {
  readonly kind: 'deferred';
}
export interface ImpureOutput {
  readonly kind: 'impure';
  readonly method: ContentMethod;
  readonly hashAlgo: HashAlgo;
}

export type DerivationOutput = InputAddressedOutput | CaFixedOutput | CaFloatingOutput | DeferredOutput | ImpureOutput;
export type OutputKind = DerivationOutput['kind'];

export interface Derivation {
  /** The name without `.drv` (not stored in the ATerm; it comes from the .drv path). */
  name: string;
  outputs: Map<string, DerivationOutput>;
  /** .drv store path -> names of the outputs used. */
  inputDrvs: Map<string, Set<string>>;
  inputSrcs: Set<string>;
  /** `system` in the JSON form. */
  platform: string;
  builder: string;
  args: string[];
  env: Map<string, string>;
}

/** What a whole derivation is, from the kinds of its outputs (Nix's DerivationType). */
export type DerivationType = 'inputAddressed' | 'deferred' | 'caFixed' | 'caFloating' | 'impure';

export class NoOutputs extends defineError('NoOutputs', 'E_DRV_NO_OUTPUTS') {}
export class MixedOutputKinds extends defineError('MixedOutputKinds', 'E_DRV_MIXED_OUTPUT_KINDS') {}
export class BadFixedOutput extends defineError('BadFixedOutput', 'E_DRV_BAD_FIXED_OUTPUT') {}
export class MixedFloatingHashAlgos extends defineError('MixedFloatingHashAlgos', 'E_DRV_MIXED_FLOATING_ALGOS') {}
export class InvalidDerivation extends defineError('InvalidDerivation', 'E_DRV_INVALID') {}
/** A string that cannot be written as UTF-8 (lone surrogate) or into an unquoted ATerm field. */
export class UnrepresentableString extends defineError('UnrepresentableString', 'E_DRV_UNREPRESENTABLE_STRING') {}

/**
 * Orders strings by their UTF-8 bytes (equivalently, by code point), as
 * std::string comparison does. UTF-16 order differs for characters above
 * U+FFFF against U+E000..U+FFFF, and localeCompare is not byte order at all.
 */
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Move surrogates (D800-DFFF) above E000-FFFF so code units sort as code points.
    if (x >= 0xd800) x += x >= 0xe000 ? -0x800 : 0x2000;
    if (y >= 0xd800) y += y >= 0xe000 ? -0x800 : 0x2000;
    return x - y;
  }
  return a.length - b.length;
}

export function sortedUtf8(keys: Iterable<string>): string[] {
  return [...keys].sort(compareUtf8);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when `s` encodes to UTF-8 without loss (no lone surrogates). */
export function isWellFormedString(s: string): boolean {
  // Cheap pre-check: most strings have no surrogates at all.
  return !/[\uD800-\uDFFF]/.test(s) || !LONE_SURROGATE.test(s);
}

export function methodPrefix(method: ContentMethod): string {
  switch (method) {
    case 'flat':
      return '';
    case 'recursive':
      return 'r:';
    case 'text':
      return 'text:';
  }
}

/** `r:sha256`, `sha1`, `text:sha256`: the hashAlgo column of the ATerm and JSON. */
export function printMethodAlgo(method: ContentMethod, algo: HashAlgo): string {
  return methodPrefix(method) + algo;
}

/** Parses the hashAlgo column; null when it is not `[r:|text:]<algo>`. */
export function parseMethodAlgo(s: string): { method: ContentMethod; algo: HashAlgo } | null {
  let method: ContentMethod = 'flat';
  let rest = s;
  if (rest.startsWith('r:')) {
    method = 'recursive';
    rest = rest.slice(2);
  } else if (rest.startsWith('text:')) {
    method = 'text';
    rest = rest.slice(5);
  }
  if (!isHashAlgo(rest)) return null;
  if (method === 'text' && rest !== 'sha256') return null;
  return { method, algo: rest };
}

export function derivationNameFromPath(storeDir: string, drvPath: string): string {
  const { name } = parseStorePath(storeDir, drvPath);
  if (!name.endsWith(DRV_EXTENSION)) {
    throw new InvalidDerivation(`'${drvPath}' is not a derivation path (no ${DRV_EXTENSION} suffix)`, { path: drvPath });
  }
  return name.slice(0, -DRV_EXTENSION.length);
}

/** The path of a fixed output, computed from its hash as Nix does (it is not stored). */
export function fixedOutputPath(storeDir: string, drvName: string, outputName: string, out: CaFixedOutput): string {
  const name = outputPathName(drvName, outputName);
  if (out.method === 'text') return makeTextPath(storeDir, out.hash, name);
  return makeFixedOutputPath(storeDir, out.method, out.hash, name);
}

/** The store path of an output, or null when it is not known before the build. */
export function outputPath(storeDir: string, drv: Derivation, outputName: string): string | null {
  const out = drv.outputs.get(outputName);
  if (!out) {
    throw new InvalidDerivation(`derivation '${drv.name}' has no output '${outputName}'`, {
      derivation: drv.name,
      output: outputName,
    });
  }
  switch (out.kind) {
    case 'inputAddressed':
      return out.path;
    case 'caFixed':
      return fixedOutputPath(storeDir, drv.name, outputName, out);
    default:
      return null;
  }
}

/** Every output with its path (null when unknown), in byte order of the names. */
export function outputPaths(storeDir: string, drv: Derivation): Map<string, string | null> {
  const res = new Map<string, string | null>();
  for (const name of sortedUtf8(drv.outputs.keys())) res.set(name, outputPath(storeDir, drv, name));
  return res;
}

/** Classifies the derivation as Nix's BasicDerivation::type() does, with its errors. */
export function derivationType(drv: Derivation): DerivationType {
  const kinds = new Set<OutputKind>();
  let floatingAlgo: HashAlgo | undefined;
  for (const [name, out] of drv.outputs) {
    kinds.add(out.kind);
    if (out.kind === 'caFloating') {
      if (floatingAlgo && floatingAlgo !== out.hashAlgo) {
        throw new MixedFloatingHashAlgos(
          `derivation '${drv.name}': all floating outputs must use the same hash algorithm (output '${name}' uses ${out.hashAlgo}, another ${floatingAlgo})`,
          { derivation: drv.name, output: name },
        );
      }
      floatingAlgo = out.hashAlgo;
    }
  }
  if (kinds.size === 0) throw new NoOutputs(`derivation '${drv.name}' must have at least one output`, { derivation: drv.name });
  if (kinds.size > 1) {
    throw new MixedOutputKinds(`derivation '${drv.name}' mixes output kinds: ${[...kinds].sort().join(', ')}`, {
      derivation: drv.name,
      kinds: [...kinds].sort(),
    });
  }
  const kind = [...kinds][0]!;
  if (kind === 'caFixed') {
    const names = [...drv.outputs.keys()];
    if (names.length > 1) {
      throw new BadFixedOutput(`derivation '${drv.name}': only one fixed output is allowed, got ${names.length}`, {
        derivation: drv.name,
        outputs: sortedUtf8(names),
      });
    }
    if (names[0] !== 'out') {
      throw new BadFixedOutput(`derivation '${drv.name}': the single fixed output must be named "out", not '${names[0]}'`, {
        derivation: drv.name,
        output: names[0],
      });
    }
  }
  return kind;
}

/** Whether all output paths are known without building (Nix's hasKnownOutputPaths). */
export function hasKnownOutputPaths(type: DerivationType): boolean {
  return type === 'inputAddressed' || type === 'caFixed';
}

export function isBuiltin(drv: Derivation): boolean {
  return drv.builder.startsWith('builtin:');
}

/** Checks a hash digest has the size its algorithm says (a hand-made Hash may not). */
function checkHashSize(drvName: string, outputName: string, h: Hash): void {
  if (h.digest.length !== HASH_SIZE[h.algo]) {
    throw new InvalidDerivation(
      `derivation '${drvName}': output '${outputName}' has a ${h.algo} hash of ${h.digest.length} bytes`,
      { derivation: drvName, output: outputName },
    );
  }
}

/** Unquoted ATerm fields (output names, paths, platform) are written without escapes. */
export function unquotedProblem(s: string): string | null {
  if (s.includes('"')) return 'contains a double quote';
  if (s.includes('\\')) return 'contains a backslash';
  return null;
}

export interface ValidateOptions {
  storeDir?: string;
}

/**
 * The invariants a derivation must hold to be written and hashed the way
 * Nix would: a valid name, a consistent set of output kinds, store paths in
 * the store, output names usable in store paths, non-empty builder and
 * system, and strings that are representable in UTF-8 and in the ATerm.
 */
export function validateDerivation(drv: Derivation, opts: ValidateOptions = {}): DerivationType {
  const storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
  const d = drv.name;
  const bad = (message: string, fields: Record<string, unknown>) =>
    new InvalidDerivation(`derivation '${d}': ${message}`, { derivation: d, ...fields });

  const nameProblem = storePathNameProblem(d + DRV_EXTENSION);
  if (nameProblem) throw bad(`invalid name '${d}': ${nameProblem}`, { name: d });
  if (d.endsWith(DRV_EXTENSION)) throw bad(`names must not end in '${DRV_EXTENSION}'`, { name: d });
  if (drv.builder === '') throw bad("required attribute 'builder' is empty", { field: 'builder' });
  if (drv.platform === '') throw bad("required attribute 'system' is empty", { field: 'system' });

  const type = derivationType(drv);
  for (const [name, out] of drv.outputs) {
    if (name === '') throw bad('an output name is empty', { output: name });
    if (name === 'drv') throw bad("an output must not be named 'drv'", { output: name });
    const p = storePathNameProblem(outputPathName(d, name));
    if (p) throw bad(`output name '${name}' gives an invalid store path name: ${p}`, { output: name });
    if (out.kind === 'inputAddressed') {
      try {
        parseStorePath(storeDir, out.path);
      } catch (e) {
        throw bad(`output '${name}' has an invalid path '${out.path}'`, { output: name, path: out.path });
      }
    }
    if (out.kind === 'caFixed') checkHashSize(d, name, out.hash);
    if ((out.kind === 'caFixed' && out.method === 'text' && out.hash.algo !== 'sha256') ||
        ((out.kind === 'caFloating' || out.kind === 'impure') && out.method === 'text' && out.hashAlgo !== 'sha256')) {
      throw bad(`output '${name}': text outputs need sha256`, { output: name });
    }
  }
  for (const [p, outs] of drv.inputDrvs) {
    try {
      parseStorePath(storeDir, p);
    } catch {
      throw bad(`input derivation '${p}' is not a store path`, { path: p });
    }
    if (!p.endsWith(DRV_EXTENSION)) throw bad(`input derivation '${p}' is not a .drv path`, { path: p });
    if (outs.size === 0) throw bad(`input derivation '${p}' names no outputs`, { path: p });
    for (const o of outs) {
      const problem = o === '' ? 'is empty' : unquotedProblem(o);
      if (problem) throw bad(`output name '${o}' of input '${p}' ${problem}`, { path: p, output: o });
    }
  }
  for (const p of drv.inputSrcs) {
    try {
      parseStorePath(storeDir, p);
    } catch {
      throw bad(`input source '${p}' is not a store path`, { path: p });
    }
  }
  checkStrings(drv);
  return type;
}

/** Throws UnrepresentableString for strings the ATerm printer could not write faithfully. */
export function checkStrings(drv: Derivation): void {
  const d = drv.name;
  const lone = (what: string, s: string) => {
    if (!isWellFormedString(s)) {
      throw new UnrepresentableString(`derivation '${d}': ${what} contains a lone UTF-16 surrogate`, {
        derivation: d,
        field: what,
        value: s,
      });
    }
  };
  const unquoted = (what: string, s: string) => {
    lone(what, s);
    const p = unquotedProblem(s);
    if (p) {
      throw new UnrepresentableString(`derivation '${d}': ${what} '${s}' ${p}, which Nix writes unescaped`, {
        derivation: d,
        field: what,
        value: s,
      });
    }
  };
  for (const [name, out] of drv.outputs) {
    unquoted('output name', name);
    if (out.kind === 'inputAddressed') unquoted(`path of output '${name}'`, out.path);
  }
  for (const [p, outs] of drv.inputDrvs) {
    unquoted('input derivation', p);
    for (const o of outs) unquoted(`output name of input '${p}'`, o);
  }
  for (const p of drv.inputSrcs) unquoted('input source', p);
  unquoted('system', drv.platform);
  lone('builder', drv.builder);
  for (const a of drv.args) lone('an argument', a);
  for (const [k, v] of drv.env) {
    lone('an environment variable name', k);
    lone(`environment variable '${k}'`, v);
  }
}

/** A deep copy (maps and sets are fresh; outputs are immutable values). */
export function cloneDerivation(drv: Derivation): Derivation {
  return {
    name: drv.name,
    outputs: new Map(drv.outputs),
    inputDrvs: new Map([...drv.inputDrvs].map(([k, v]) => [k, new Set(v)])),
    inputSrcs: new Set(drv.inputSrcs),
    platform: drv.platform,
    builder: drv.builder,
    args: [...drv.args],
    env: new Map(drv.env),
  };
}

/**
 * An output as a new derivation states it, before its path is computed:
 * paths are optional (when present they must match what is computed).
 */
export type DraftOutput =
  | { readonly kind: 'inputAddressed'; readonly path?: string }
  | DeferredOutput
  | { readonly kind: 'caFixed'; readonly method: ContentMethod; readonly hash: Hash; readonly path?: string }
  | CaFloatingOutput
  | ImpureOutput;

/** A derivation whose output paths (and their env values) may still be missing. */
export interface DerivationDraft extends Omit<Derivation, 'outputs'> {
  outputs: Map<string, DraftOutput>;
}
