// Helpers of the register tests: scratch outputs written by hand into a temp
// store, the dependencies of the Nix fixtures recreated with the same
// contents (so the same NAR hashes), and registerOutputs with defaults.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Derivation } from '../../src/format/derivation.js';
import { formatHash } from '../../src/format/hash.js';
import { planOutputs, type BuildMode, type OutputPlan } from '../../src/build/output-plan.js';
import { registerOutputs, type RegisteredOutput, type RegisterInput } from '../../src/build/register.js';
import { canonicalisePathMetaData } from '../../src/store/canonicalise.js';
import type { LocalStore } from '../../src/store/local-store.js';
import { hashPath } from '../../src/store/nar-fs.js';

/** A file (string), a directory (object of entries), or a symlink ({ link: target }). */
export type Tree = string | Buffer | { link: string } | { [name: string]: Tree };

export function writeTree(real: string, t: Tree): void {
  if (typeof t === 'string' || Buffer.isBuffer(t)) {
    mkdirSync(dirname(real), { recursive: true });
    writeFileSync(real, t);
  } else if ('link' in t && typeof t.link === 'string') {
    mkdirSync(dirname(real), { recursive: true });
    symlinkSync(t.link, real);
  } else {
    mkdirSync(real, { recursive: true });
    for (const [n, sub] of Object.entries(t as Record<string, Tree>)) writeTree(join(real, n), sub);
  }
}

/** Puts `t` at store path `p` and registers it (canonical, hashed); returns its NAR hash (SRI). */
export async function addPath(store: LocalStore, p: string, t: Tree, references: string[] = []): Promise<string> {
  const real = store.toRealPath(p);
  writeTree(real, t);
  canonicalisePathMetaData(real);
  const { hash, narSize } = await hashPath(real);
  store.registerValidPaths([{ path: p, narHash: hash, narSize, references }], { checkOutputs: false });
  return formatHash(hash, 'sri');
}

export const DEP = '/nix/store/z4asv3j07d89ywjf8fxkn7sg6mf5s9q5-dep';
export const DEP2 = '/nix/store/w99i6dfzs3wnsqdw6arglqrrpjza1i13-dep2';

/** `dep` and `dep2` of the fixture expressions, byte for byte. */
export async function addFixtureDeps(store: LocalStore): Promise<{ dep: string; dep2: string }> {
  const dep = await addPath(store, DEP, 'dep\n');
  const dep2 = await addPath(store, DEP2, { ref: `${DEP}\n`, self: `${DEP2}\n` }, [DEP, DEP2]);
  return { dep, dep2 };
}

export interface RunOptions {
  mode?: BuildMode;
  needsHashRewrite?: boolean;
  inputs?: Iterable<string>;
  addedPaths?: Iterable<string>;
  structuredAttrs?: Record<string, unknown> | null;
  settings?: Partial<RegisterInput['settings']>;
  fromUid?: number;
  drvHashes?: RegisterInput['drvHashes'];
  log?: string[];
  plan?: OutputPlan;
  onPlaced?: RegisterInput['onPlaced'];
}

export function planFor(store: LocalStore, drvPath: string, drv: Derivation, o: RunOptions = {}): OutputPlan {
  return (
    o.plan ??
    planOutputs({
      storeDir: store.storeDir,
      drvPath,
      drv,
      needsHashRewrite: o.needsHashRewrite ?? true,
      mode: o.mode ?? 'normal',
      pathExists: (p) => store.isValidPath(p),
      isValid: (p) => store.isValidPath(p),
    })
  );
}

/** Writes the scratch outputs with `write(scratch paths)` and registers them. */
export async function buildAndRegister(
  store: LocalStore,
  drvPath: string,
  drv: Derivation,
  write: (scratch: Record<string, string>) => Record<string, Tree | null>,
  o: RunOptions = {},
): Promise<Map<string, RegisteredOutput>> {
  const plan = planFor(store, drvPath, drv, o);
  const scratch: Record<string, string> = {};
  for (const [n, e] of plan.outputs) scratch[n] = e.scratchPath;
  for (const [n, t] of Object.entries(write(scratch))) if (t !== null) writeTree(store.toRealPath(scratch[n]!), t);
  return registerOutputs({
    store,
    drvPath,
    drv,
    plan,
    mode: o.mode ?? 'normal',
    realPathOf: (p) => store.toRealPath(p),
    inputClosure: new Set(o.inputs ?? []),
    addedPaths: new Set(o.addedPaths ?? []),
    structuredAttrs: o.structuredAttrs ?? null,
    settings: { autoOptimise: false, keepFailed: false, diffHook: '', runDiffHook: false, ...o.settings },
    log: (l) => o.log?.push(l),
    ...(o.fromUid !== undefined ? { fromUid: o.fromUid } : {}),
    ...(o.drvHashes ? { drvHashes: o.drvHashes } : {}),
    ...(o.onPlaced ? { onPlaced: o.onPlaced } : {}),
  });
}

/** A derivation with the given outputs (kinds) and env; paths are not checked by registration. */
export function makeDrv(name: string, outputs: Derivation['outputs'], env: Record<string, string> = {}): Derivation {
  return {
    name,
    outputs,
    inputDrvs: new Map(),
    inputSrcs: new Set(),
    platform: 'x86_64-linux',
    builder: '/bin/sh',
    args: [],
    env: new Map(Object.entries(env)),
  };
}
