// A drvbox store holding the path infos (and .drv files) of the Nix fixture
// store, for closure queries: contents are not needed, except the .drv files.
import { writeFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { parseDerivation } from '../../src/format/aterm.js';
import { derivationNameFromPath, outputPath, type Derivation } from '../../src/format/derivation.js';
import { parseHash } from '../../src/format/hash.js';
import type { LocalStore } from '../../src/store/local-store.js';
import { tempStore } from '../store/util.js';
import { drvFile, type PrepareMeta } from './nix-fixtures.js';

export async function fixtureStore(t: TestContext, meta: PrepareMeta): Promise<LocalStore> {
  const { store } = await tempStore(t);
  for (const i of meta.pathInfos) if (i.path.endsWith('.drv')) writeFileSync(store.toRealPath(i.path), drvFile(i.path));
  store.registerValidPaths(
    meta.pathInfos.map((i) => ({
      path: i.path,
      narHash: parseHash(i.narHash),
      narSize: i.narSize,
      references: i.references,
      ca: i.ca ?? null,
      deriver: i.deriver ?? null,
    })),
    { checkOutputs: false },
  );
  return store;
}

export function readDrv(drvPath: string): Derivation {
  return parseDerivation(drvFile(drvPath), derivationNameFromPath('/nix/store', drvPath));
}

/** Nix's inputPaths of a derivation: the closure of its sources and of the outputs it uses. */
export function inputClosure(store: LocalStore, drv: Derivation): Set<string> {
  const roots = new Set(drv.inputSrcs);
  for (const [d, outs] of drv.inputDrvs) {
    const inner = store.readDerivation(d);
    for (const o of outs) {
      const p = outputPath(store.storeDir, inner, o);
      if (p) roots.add(p);
    }
  }
  return store.computeClosure(roots);
}
