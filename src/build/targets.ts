// What `drvbox build` and `drvbox derivation add` accept, turned into .drv
// store paths:
//   /nix/store/<hash>-<name>.drv[^out,dev | ^*]   a derivation in the store
//   ./x.drv[^...]                                  an ATerm file, added first
//   ./x.json[^...]                                 a derivation in JSON (see
//        src/format/derivation-json.ts), completed as nix-instantiate would
//        (output paths, env) and added; a keyed file may hold several
// Without a `^` selection every output is wanted (as nix-build of a .drv).
import { readFileSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { parseDerivation } from '../format/aterm.js';
import { printDerivation } from '../format/aterm.js';
import { validateDerivation, type Derivation } from '../format/derivation.js';
import { parseDerivationInputs } from '../format/derivation-json.js';
import { completeDerivation, derivationPath, derivationReferences } from '../format/hash-modulo.js';
import { isDerivationPath, parseStorePathBaseName } from '../format/store-path.js';
import type { LocalStore } from '../store/local-store.js';
import { BadBuildTarget, MissingInputPath, NoSuchOutput } from './errors-run.js';

export interface BuildTarget {
  /** The argument as given. */
  arg: string;
  drvPath: string;
  /** Wanted outputs; null = all. */
  outputs: string[] | null;
}

function requireReferences(store: LocalStore, drv: Derivation, drvPath: string): void {
  for (const p of derivationReferences(drv)) {
    if (!store.isValidPath(p)) {
      throw new MissingInputPath(`cannot add derivation '${drvPath}': its input '${p}' is not valid in the store`, { drvPath, path: p });
    }
  }
}

async function addDrvText(store: LocalStore, drv: Derivation, drvPath: string): Promise<string> {
  // A valid .drv needs no write (and no temp root, lock or koffi): the no-op path stays fast.
  if (store.isValidPath(drvPath)) return drvPath;
  requireReferences(store, drv, drvPath);
  const { addTextToStore } = await import('../store/add.js');
  const written = await addTextToStore(store, `${drv.name}.drv`, printDerivation(drv, { storeDir: store.storeDir }), derivationReferences(drv));
  if (written !== drvPath) {
    throw new BadBuildTarget(`derivation was stored as '${written}', expected '${drvPath}'`, { expected: drvPath, got: written });
  }
  return drvPath;
}

/** Adds the derivation(s) in a .json or .drv file to the store; returns their .drv paths in file order. */
export async function addDerivationFile(store: LocalStore, file: string): Promise<string[]> {
  let text: Buffer;
  try {
    text = readFileSync(file);
  } catch (e) {
    throw new BadBuildTarget(`cannot read '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, {
      path: file,
    });
  }
  const storeDir = store.storeDir;
  if (file.endsWith('.drv')) {
    let name: string | null = null;
    try {
      name = parseStorePathBaseName(basename(file)).name.slice(0, -'.drv'.length);
    } catch {
      // not named like a store path: the name nix-instantiate put in env.name, else the file name
    }
    const drv = parseDerivation(text, name ?? basename(file).slice(0, -'.drv'.length), { storeDir });
    if (name === null && drv.env.get('name')) drv.name = drv.env.get('name')!;
    validateDerivation(drv, { storeDir });
    const drvPath = derivationPath(drv, storeDir);
    if (store.isValidPath(drvPath)) return [drvPath];
    requireReferences(store, drv, drvPath);
    store.checkDerivationOutputs(drvPath, drv);
    return [await addDrvText(store, drv, drvPath)];
  }
  const inputs = parseDerivationInputs(text.toString('utf8'), { storeDir });
  // A keyed file may hold derivations that depend on each other: complete
  // them in dependency order, resolving inputs from the store or the file.
  const done = new Map<string, Derivation>();
  const paths: string[] = new Array(inputs.length);
  let remaining = inputs.map((x, i) => ({ ...x, i }));
  while (remaining.length > 0) {
    const next: typeof remaining = [];
    for (const x of remaining) {
      const waits = [...x.draft.inputDrvs.keys()].some((p) => !done.has(p) && !store.isValidPath(p) && remaining.some((y) => y.claimedPath === p));
      if (waits) {
        next.push(x);
        continue;
      }
      const c = completeDerivation(x.draft, {
        storeDir,
        resolve: (p) => done.get(p) ?? (store.isValidPath(p) ? store.readDerivation(p) : undefined),
      });
      if (x.claimedPath !== undefined && x.claimedPath !== c.drvPath) {
        throw new BadBuildTarget(`derivation '${x.claimedPath}' in '${file}' is really '${c.drvPath}'`, { claimed: x.claimedPath, actual: c.drvPath });
      }
      done.set(c.drvPath, c.drv);
      paths[x.i] = await addDrvText(store, c.drv, c.drvPath);
    }
    if (next.length === remaining.length) {
      throw new BadBuildTarget(`the derivations in '${file}' depend on each other in a cycle`, { path: file });
    }
    remaining = next;
  }
  return paths;
}

function splitSelection(arg: string): { path: string; outputs: string[] | null } {
  const at = arg.lastIndexOf('^');
  if (at < 0) return { path: arg, outputs: null };
  const sel = arg.slice(at + 1);
  const path = arg.slice(0, at);
  if (sel === '*') return { path, outputs: null };
  const outs = sel.split(',').filter(Boolean);
  if (outs.length === 0) throw new BadBuildTarget(`'${arg}': empty output selection after '^'`, { arg });
  return { path, outputs: outs };
}

function checkOutputs(store: LocalStore, drvPath: string, outputs: string[] | null): void {
  if (!outputs) return;
  const drv = store.readDerivation(drvPath);
  const missing = outputs.filter((o) => !drv.outputs.has(o));
  if (missing.length > 0) {
    throw new NoSuchOutput(`derivation '${drvPath}' does not have wanted outputs ${missing.map((o) => `'${o}'`).join(', ')}`, {
      drvPath,
      outputs: missing,
    });
  }
}

/** Resolves the command-line targets of `drvbox build`, adding files to the store. */
export async function resolveTargets(store: LocalStore, args: readonly string[], cwd: string = process.cwd()): Promise<BuildTarget[]> {
  const res: BuildTarget[] = [];
  for (const arg of args) {
    const { path, outputs } = splitSelection(arg);
    let storePath: string | null = null;
    if (path.startsWith(store.storeDir + '/')) storePath = path;
    else {
      const abs = resolve(cwd, path);
      storePath = store.storePathOf(abs);
      if (storePath === null) {
        let isFile = false;
        try {
          isFile = statSync(abs).isFile();
        } catch {
          isFile = false;
        }
        if (!isFile) throw new BadBuildTarget(`'${path}' is neither a store derivation nor a .drv or .json file`, { arg });
        for (const drvPath of await addDerivationFile(store, abs)) {
          checkOutputs(store, drvPath, outputs);
          res.push({ arg, drvPath, outputs });
        }
        continue;
      }
    }
    try {
      store.checkStorePath(storePath);
    } catch {
      throw new BadBuildTarget(`'${path}' is not a store path of '${store.storeDir}'`, { arg });
    }
    if (!isDerivationPath(storePath)) {
      throw new BadBuildTarget(`'${storePath}' is not a derivation (.drv); build the derivation that produces it`, { arg });
    }
    if (!store.isValidPath(storePath)) {
      throw new MissingInputPath(`path '${storePath}' is not valid`, { path: storePath });
    }
    checkOutputs(store, storePath, outputs);
    res.push({ arg, drvPath: storePath, outputs });
  }
  return res;
}
