// Derivation hashes "modulo" fixed-output derivations (Nix 2.8's
// hashDerivationModulo), the output paths of a new derivation, and the .drv
// store path.
//
//   fixed output      hash[out] = sha256("fixed:out:" <[r:|text:]algo> ":" <base16> ":" <out path>)
//   impure            hash[o]   = sha256("impure"), kind deferred
//   otherwise         h = sha256(ATerm with every input .drv path replaced by the
//                     base16 modulo hash of that input (output names of inputs
//                     with equal hashes merged), outputs masked when asked);
//                     hash[o] = h for every output; kind deferred when the
//                     derivation is CA floating or any input's kind is deferred
//   input-addressed output path  = makeOutputPath(o, hash[o], name)
//   .drv path         = makeTextPath(name + ".drv", sha256(ATerm), inputSrcs ∪ inputDrvs)
//
// Input derivations come from a resolver the caller supplies (the store reads
// them); results are memoised per .drv path in a cache the caller may keep.
// The walk over inputs uses an explicit stack, so deep chains cannot
// overflow the call stack, and a cycle is a typed error.
import { defineError } from '../errors.js';
import { base16Encode, formatHash, hashBytes, type Hash } from './hash.js';
import { printDerivation } from './aterm.js';
import {
  derivationType,
  fixedOutputPath,
  printMethodAlgo,
  sortedUtf8,
  validateDerivation,
  type Derivation,
  type DerivationDraft,
  type DerivationOutput,
} from './derivation.js';
import { DEFAULT_STORE_DIR, DRV_EXTENSION, hashPlaceholder, makeOutputPath, makeTextPath } from './store-path.js';

export type DrvHashKind = 'regular' | 'deferred';

export interface DrvHash {
  /** deferred: some output path cannot be known before a CA input is built. */
  readonly kind: DrvHashKind;
  /** Per output name. */
  readonly hashes: ReadonlyMap<string, Hash>;
}

/**
 * Returns the parsed derivation stored at a .drv path (the store supplies
 * it), or undefined when there is none (a MissingInputDerivation error).
 */
export type DerivationResolver = (drvPath: string) => Derivation | undefined;

export interface HashModuloOptions {
  storeDir?: string;
  resolve: DerivationResolver;
  /** Memo of input derivations' modulo hashes (maskOutputs = false), keyed by .drv path. */
  cache?: Map<string, DrvHash>;
}

export class MissingInputDerivation extends defineError('MissingInputDerivation', 'E_DRV_MISSING_INPUT') {}
export class MissingInputOutput extends defineError('MissingInputOutput', 'E_DRV_MISSING_INPUT_OUTPUT') {}
export class DerivationCycle extends defineError('DerivationCycle', 'E_DRV_CYCLE') {}
export class OutputPathMismatch extends defineError('OutputPathMismatch', 'E_DRV_OUTPUT_PATH_MISMATCH') {}
export class OutputEnvMismatch extends defineError('OutputEnvMismatch', 'E_DRV_OUTPUT_ENV_MISMATCH') {}

/**
 * sha256("impure"), the modulo hash of every output of an impure derivation;
 * written out so that loading this module computes nothing (node:crypto
 * would load with it, at every start-up of the CLI).
 */
export const IMPURE_OUTPUT_HASH: Hash = {
  algo: 'sha256',
  digest: Buffer.from('ddffc26775f61118da8597d1f2f62c544ec92461b31b5b1075ed8689a7ee8292', 'hex'),
};

interface Ctx {
  storeDir: string;
  resolve: DerivationResolver;
  cache: Map<string, DrvHash>;
}

function context(opts: HashModuloOptions): Ctx {
  return { storeDir: opts.storeDir ?? DEFAULT_STORE_DIR, resolve: opts.resolve, cache: opts.cache ?? new Map() };
}

function resolveInput(ctx: Ctx, drvPath: string, wantedBy: string): Derivation {
  const d = ctx.resolve(drvPath);
  if (!d) {
    throw new MissingInputDerivation(`input derivation '${drvPath}' of '${wantedBy}' is not available`, {
      derivation: wantedBy,
      input: drvPath,
    });
  }
  return d;
}

/** Whether hashing `drv` needs the hashes of its inputs (fixed and impure ones do not). */
function needsInputs(drv: Derivation): boolean {
  const t = derivationType(drv);
  return t !== 'caFixed' && t !== 'impure';
}

/** The memoised modulo hash (unmasked) of the derivation at `drvPath`. */
function pathHash(ctx: Ctx, drvPath: string, wantedBy: string): DrvHash {
  const cached = ctx.cache.get(drvPath);
  if (cached) return cached;
  interface Frame {
    path: string;
    drv: Derivation;
    expanded: boolean;
  }
  const stack: Frame[] = [{ path: drvPath, drv: resolveInput(ctx, drvPath, wantedBy), expanded: false }];
  const onPath = new Set<string>(); // expanded, unfinished: the ancestors of the top frame
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (ctx.cache.has(top.path)) {
      stack.pop();
      continue;
    }
    if (!top.expanded) {
      top.expanded = true;
      onPath.add(top.path);
      if (needsInputs(top.drv)) {
        for (const input of top.drv.inputDrvs.keys()) {
          if (ctx.cache.has(input)) continue;
          if (onPath.has(input)) {
            throw new DerivationCycle(`derivation '${top.path}' depends on itself through '${input}'`, {
              derivation: top.path,
              input,
            });
          }
          stack.push({ path: input, drv: resolveInput(ctx, input, top.path), expanded: false });
        }
      }
      continue;
    }
    ctx.cache.set(top.path, hashOne(ctx, top.drv, false, top.path));
    onPath.delete(top.path);
    stack.pop();
  }
  return ctx.cache.get(drvPath)!;
}

function hashOne(ctx: Ctx, drv: Derivation, maskOutputs: boolean, label: string): DrvHash {
  const type = derivationType(drv);
  if (type === 'caFixed') {
    const hashes = new Map<string, Hash>();
    for (const [name, out] of drv.outputs) {
      if (out.kind !== 'caFixed') continue;
      const path = fixedOutputPath(ctx.storeDir, drv.name, name, out);
      const clear = `fixed:out:${printMethodAlgo(out.method, out.hash.algo)}:${base16Encode(out.hash.digest)}:${path}`;
      hashes.set(name, hashBytes('sha256', clear));
    }
    return { kind: 'regular', hashes };
  }
  if (type === 'impure') {
    return { kind: 'deferred', hashes: new Map([...drv.outputs.keys()].map((o) => [o, IMPURE_OUTPUT_HASH])) };
  }
  let kind: DrvHashKind = type === 'caFloating' ? 'deferred' : 'regular';
  const inputs = new Map<string, Set<string>>();
  for (const [input, wanted] of drv.inputDrvs) {
    const res = pathHash(ctx, input, label);
    if (res.kind === 'deferred') kind = 'deferred';
    for (const o of wanted) {
      const h = res.hashes.get(o);
      if (!h) {
        throw new MissingInputOutput(`derivation '${label}' uses output '${o}' of '${input}', which has no such output`, {
          derivation: label,
          input,
          output: o,
        });
      }
      const key = base16Encode(h.digest);
      let set = inputs.get(key);
      if (!set) inputs.set(key, (set = new Set()));
      set.add(o);
    }
  }
  const h = hashBytes('sha256', printDerivation(drv, { storeDir: ctx.storeDir, maskOutputs, inputDrvsOverride: inputs }));
  return { kind, hashes: new Map([...drv.outputs.keys()].map((o) => [o, h])) };
}

/**
 * Nix's hashDerivationModulo. `maskOutputs` hashes the derivation with its
 * output paths and their env values emptied (how a new derivation's paths
 * are computed); input derivations are always hashed unmasked.
 */
export function hashDerivationModulo(drv: Derivation, maskOutputs: boolean, opts: HashModuloOptions): DrvHash {
  return hashOne(context(opts), drv, maskOutputs, drv.name);
}

/** The memoised modulo hash of a stored derivation, by .drv path (Nix's pathDerivationModulo). */
export function pathDerivationModulo(drvPath: string, opts: HashModuloOptions): DrvHash {
  return pathHash(context(opts), drvPath, drvPath);
}

/** The per-output hashes used for input-addressed output paths (Nix's staticOutputHashes). */
export function staticOutputHashes(drv: Derivation, opts: HashModuloOptions): ReadonlyMap<string, Hash> {
  return hashDerivationModulo(drv, true, opts).hashes;
}

/** References of a .drv file: its input sources and input derivations. */
export function derivationReferences(drv: Derivation): string[] {
  return sortedUtf8(new Set([...drv.inputSrcs, ...drv.inputDrvs.keys()]));
}

/** The store path of the .drv file (Nix's writeDerivation / computeStorePathForText). */
export function derivationPath(drv: Derivation, storeDir: string = DEFAULT_STORE_DIR): string {
  const text = printDerivation(drv, { storeDir });
  return makeTextPath(storeDir, hashBytes('sha256', text), drv.name + DRV_EXTENSION, derivationReferences(drv));
}

export interface CompleteOptions extends HashModuloOptions {}

export interface CompletedDerivation {
  drv: Derivation;
  drvPath: string;
  /** The modulo hash (masked) the input-addressed paths came from; absent for fixed, floating and impure. */
  drvHash?: DrvHash;
}

/**
 * Fills in output paths and output env values exactly as Nix 2.8's
 * derivationStrict (nix-instantiate) does, then validates:
 *   fixed output     out = makeFixedOutputPath(...), env.out = that path
 *   CA floating      path empty, env[o] = hashPlaceholder(o)
 *   impure           path empty, env[o] = hashPlaceholder(o)
 *   input-addressed  hash modulo with outputs masked (env[o] = ""); when its
 *                    kind is regular every output gets makeOutputPath and
 *                    env[o] = path; when deferred (a CA floating input) the
 *                    outputs stay deferred and env[o] stays "".
 * Paths or env values already present must equal what is computed.
 * Every input derivation must resolve and have the outputs used.
 */
export function completeDerivation(draft: DerivationDraft, opts: CompleteOptions): CompletedDerivation {
  const ctx = context(opts);
  const d = draft.name;
  const drv: Derivation = {
    name: draft.name,
    outputs: new Map(),
    inputDrvs: new Map([...draft.inputDrvs].map(([k, v]) => [k, new Set(v)])),
    inputSrcs: new Set(draft.inputSrcs),
    platform: draft.platform,
    builder: draft.builder,
    args: [...draft.args],
    env: new Map(draft.env),
  };
  // Provisional outputs, to classify and validate before hashing.
  for (const [name, o] of draft.outputs) {
    let out: DerivationOutput;
    if (o.kind === 'inputAddressed' || o.kind === 'deferred') out = { kind: 'deferred' };
    else if (o.kind === 'caFixed') out = { kind: 'caFixed', method: o.method, hash: o.hash };
    else out = o;
    drv.outputs.set(name, out);
  }
  validateDerivation(drv, { storeDir: ctx.storeDir });

  for (const [input, wanted] of drv.inputDrvs) {
    const inDrv = resolveInput(ctx, input, d);
    for (const o of wanted) {
      if (!inDrv.outputs.has(o)) {
        throw new MissingInputOutput(`derivation '${d}' uses output '${o}' of '${input}', which has no such output`, {
          derivation: d,
          input,
          output: o,
        });
      }
    }
  }

  const finalEnv = new Map<string, string>();
  const finalPath = new Map<string, string | undefined>();
  const type = derivationType(drv);
  let drvHash: DrvHash | undefined;
  if (type === 'caFixed') {
    const out = drv.outputs.get('out')!;
    if (out.kind !== 'caFixed') throw new Error('unreachable');
    const p = fixedOutputPath(ctx.storeDir, d, 'out', out);
    finalPath.set('out', p);
    finalEnv.set('out', p);
  } else if (type === 'caFloating' || type === 'impure') {
    for (const o of drv.outputs.keys()) {
      finalPath.set(o, undefined);
      finalEnv.set(o, hashPlaceholder(o));
    }
  } else {
    for (const o of drv.outputs.keys()) drv.env.set(o, '');
    drvHash = hashOne(ctx, drv, true, d);
    for (const o of drv.outputs.keys()) {
      if (drvHash.kind === 'regular') {
        const p = makeOutputPath(ctx.storeDir, o, drvHash.hashes.get(o)!, d);
        finalPath.set(o, p);
        finalEnv.set(o, p);
        drv.outputs.set(o, { kind: 'inputAddressed', path: p });
      } else {
        finalPath.set(o, undefined);
        finalEnv.set(o, '');
      }
    }
  }

  for (const [o, given] of draft.outputs) {
    const want = finalPath.get(o);
    const has = 'path' in given && given.path !== undefined && given.path !== '' ? given.path : undefined;
    if (has !== undefined && has !== want) {
      throw new OutputPathMismatch(
        want === undefined
          ? `derivation '${d}': output '${o}' is given path '${has}', but its path is not known until it is built`
          : `derivation '${d}': output '${o}' is given path '${has}', but it is '${want}'`,
        { derivation: d, output: o, expected: want ?? null, got: has },
      );
    }
    const envGiven = draft.env.get(o);
    const envWant = finalEnv.get(o)!;
    if (envGiven !== undefined && envGiven !== '' && envGiven !== envWant) {
      throw new OutputEnvMismatch(`derivation '${d}': env '${o}' is '${envGiven}', but it must be '${envWant}'`, {
        derivation: d,
        output: o,
        expected: envWant,
        got: envGiven,
      });
    }
    drv.env.set(o, envWant);
  }
  validateDerivation(drv, { storeDir: ctx.storeDir });
  const drvPath = derivationPath(drv, ctx.storeDir);
  // Nix memoises the new derivation's unmasked hash under its path; so do we.
  if (!ctx.cache.has(drvPath)) ctx.cache.set(drvPath, hashOne(ctx, drv, false, drvPath));
  return drvHash ? { drv, drvPath, drvHash } : { drv, drvPath };
}

/** `sha256:<nix32>` of a DrvHash output, for messages and debugging. */
export function describeDrvHash(h: DrvHash): string {
  return [...h.hashes].map(([o, x]) => `${o}=${formatHash(x)}`).join(' ') + ` (${h.kind})`;
}
