// Resolving a derivation that depends on content-addressed outputs (Nix
// 2.8's Derivation::tryResolve + rewriteDerivation + resolvedFinished).
//
// Once its inputs are built, such a derivation (deferred input-addressed,
// CA floating or impure, with input derivations) is rewritten into a
// "resolved" one without input derivations:
//   - each used input output becomes an input source (its realised path);
//   - downstreamPlaceholder(input, output) is replaced by that path in the
//     builder, the arguments, and the environment's names and values;
//   - deferred outputs get their input-addressed paths, computed from the
//     resolved derivation (its env[out] set to the path).
// The resolved .drv is written to the store and built instead; afterwards
// realisations record the outputs under the ORIGINAL derivation's static
// output hashes, which is how queries for the original find them.
import { printDerivation } from '../format/aterm.js';
import { derivationType, type Derivation, type DerivationOutput } from '../format/derivation.js';
import { derivationPath, derivationReferences, hashDerivationModulo, staticOutputHashes } from '../format/hash-modulo.js';
import { downstreamPlaceholder, makeOutputPath } from '../format/store-path.js';
import type { LocalStore } from '../store/local-store.js';
import { ResolveFailed } from './errors-run.js';

/** Nix resolves deferred derivations, and CA floating or impure ones that have input derivations. */
export function needsResolution(drv: Derivation): boolean {
  if (drv.inputDrvs.size === 0) return false;
  const type = derivationType(drv);
  return type === 'deferred' || type === 'caFloating' || type === 'impure';
}

export interface Resolved {
  drv: Derivation;
  drvPath: string;
  /** Placeholder -> realised path, as applied. */
  rewrites: Map<string, string>;
}

export function resolveDerivation(
  store: LocalStore,
  drvPath: string,
  drv: Derivation,
  rewriteStrings: (s: string, rewrites: ReadonlyMap<string, string>) => string,
): Resolved {
  const storeDir = store.storeDir;
  const rewrites = new Map<string, string>();
  const inputSrcs = new Set(drv.inputSrcs);
  for (const [input, outs] of drv.inputDrvs) {
    const map = store.queryPartialDerivationOutputMap(input);
    for (const o of outs) {
      const p = map.get(o);
      if (!p || !store.isValidPath(p)) {
        throw new ResolveFailed(`cannot resolve derivation '${drvPath}': output '${o}' of '${input}' is not built`, {
          drvPath,
          input,
          output: o,
        });
      }
      rewrites.set(downstreamPlaceholder(storeDir, input, o), p);
      inputSrcs.add(p);
    }
  }
  const rw = (s: string) => rewriteStrings(s, rewrites);
  const env = new Map<string, string>();
  for (const [k, v] of drv.env) env.set(rw(k), rw(v));
  const resolved: Derivation = {
    name: drv.name,
    outputs: new Map(drv.outputs),
    inputDrvs: new Map(),
    inputSrcs,
    platform: drv.platform,
    builder: rw(drv.builder),
    args: drv.args.map(rw),
    env,
  };
  const deferred = [...resolved.outputs].filter(([, o]) => o.kind === 'deferred');
  if (deferred.length > 0) {
    const modulo = hashDerivationModulo(resolved, true, { storeDir, resolve: (p) => store.readDerivation(p) });
    for (const [name] of deferred) {
      const h = modulo.hashes.get(name);
      if (!h) throw new ResolveFailed(`cannot resolve derivation '${drvPath}': no hash for output '${name}'`, { drvPath, output: name });
      const path = makeOutputPath(storeDir, name, h, drv.name);
      const out: DerivationOutput = { kind: 'inputAddressed', path };
      resolved.outputs.set(name, out);
      resolved.env.set(name, path);
    }
  }
  return { drv: resolved, drvPath: derivationPath(resolved, storeDir), rewrites };
}

/** Writes the resolved .drv into the store (a text path, as nix-instantiate writes derivations). */
export async function writeResolved(store: LocalStore, r: Resolved): Promise<string> {
  if (store.isValidPath(r.drvPath)) return r.drvPath;
  const { addTextToStore } = await import('../store/add.js');
  const text = printDerivation(r.drv, { storeDir: store.storeDir });
  const p = await addTextToStore(store, `${r.drv.name}.drv`, text, derivationReferences(r.drv));
  if (p !== r.drvPath) {
    throw new ResolveFailed(`resolved derivation was written to '${p}', expected '${r.drvPath}'`, { expected: r.drvPath, got: p });
  }
  return p;
}

/**
 * After the resolved derivation is built: records its outputs as the
 * realisations of the original one (not for impure derivations, as Nix).
 */
export function recordOriginalRealisations(
  store: LocalStore,
  drvPath: string,
  drv: Derivation,
  builtOutputs: ReadonlyMap<string, string>,
  wanted: ReadonlySet<string> | null,
): void {
  if (derivationType(drv) === 'impure') return;
  const hashes = staticOutputHashes(drv, { storeDir: store.storeDir, resolve: (p) => store.readDerivation(p) });
  for (const name of drv.outputs.keys()) {
    if (wanted && !wanted.has(name)) continue;
    const outPath = builtOutputs.get(name);
    const h = hashes.get(name);
    if (!outPath || !h) continue;
    store.registerRealisation({ id: { drvHash: h, outputName: name }, outPath, signatures: [], dependentRealisations: new Map() });
  }
}
