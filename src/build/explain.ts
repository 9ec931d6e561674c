// `drvbox sandbox explain`: the plan a backend would carry out for one
// derivation, without building (no lock, no build dir, nothing written).
// The request is made exactly as the goal makes it (planOutputs, desugar,
// makeBuildRequest); the build dir is the name the first build would get.
import { join } from 'node:path';
import { backendFor, backendNamed, type Backend, type BuildRequest } from '../../backends/backend.js';
import { derivationType, isBuiltin } from '../format/derivation.js';
import { isStorePath } from '../format/store-path.js';
import type { LocalStore } from '../store/local-store.js';
import { DrvAttrs } from './drv-attrs.js';
import { makeBuildRequest, type EngineParts } from './goal.js';
import type { RunSettings } from './run-settings.js';

/** Input roots as far as they are known: explain also works before the inputs are built. */
function knownInputs(store: LocalStore, drvPath: string): { roots: string[]; missing: string[] } {
  const drv = store.readDerivation(drvPath);
  const roots: string[] = [];
  const missing: string[] = [];
  for (const p of drv.inputSrcs) (store.isValidPath(p) ? roots : missing).push(p);
  for (const [input, outs] of drv.inputDrvs) {
    const map = store.queryPartialDerivationOutputMap(input);
    for (const o of outs) {
      const p = map.get(o);
      if (p && store.isValidPath(p)) roots.push(p);
      else missing.push(p ?? `${input}^${o}`);
    }
  }
  return { roots, missing };
}

export async function explainDerivation(p: {
  store: LocalStore;
  drvPath: string;
  settings: RunSettings;
  parts: EngineParts;
  /** A backend by name; default: the one a build would use (sandbox setting, probe). */
  platform?: 'linux' | 'darwin' | 'none';
}): Promise<string> {
  const { store, drvPath, settings, parts } = p;
  const drv = store.readDerivation(drvPath);
  if (isBuiltin(drv)) {
    return `'${drvPath}' uses the builtin builder '${drv.builder}', which runs inside drvbox itself, without a sandbox\n`;
  }
  const header: string[] = [];
  let backend: Backend;
  let explain: (req: BuildRequest) => string;
  if (p.platform) {
    const named = await backendNamed(p.platform, settings.systemFeatures);
    backend = named.backend;
    explain = named.explain;
  } else {
    const attrs = new DrvAttrs(drv);
    const type = derivationType(drv);
    const choice = await backendFor({
      drvPath,
      sandboxMode: settings.sandboxMode,
      noChroot: attrs.bool('__noChroot'),
      sandboxedDerivation: type !== 'caFixed' && type !== 'impure',
      additionalSandboxProfile: attrs.string('__sandboxProfile') ?? '',
      storeDir: store.storeDir,
      realStoreDir: store.realStoreDir,
      sandboxFallback: settings.sandboxFallback,
      systemFeatures: settings.systemFeatures,
    });
    if (choice.warning) header.push(choice.warning);
    backend = choice.backend;
    explain = (req) => backend.explain(backend.plan(req, choice.planHost));
  }
  const plan = parts.planOutputs({
    storeDir: store.storeDir,
    drvPath,
    drv,
    needsHashRewrite: backend.caps.needsHashRewrite,
    mode: 'normal',
    pathExists: (x) => store.isValidPath(x),
    isValid: (x) => store.isValidPath(x),
  });
  const { roots, missing } = knownInputs(store, drvPath);
  const closure = roots.length > 0 ? store.computeClosure(roots) : new Set<string>();
  const buildDirHost = join(settings.buildDir, `nix-build-${drv.name}.drv-0`);
  const buildDirSandbox = backend.buildDirInSandbox(buildDirHost, settings.backendSettings);
  const desugared = parts.desugar({
    storeDir: store.storeDir,
    drvPath,
    drv,
    plan,
    buildDirSandbox,
    cores: settings.cores,
    callerEnv: process.env as Record<string, string>,
    closureInfos: parts.closureInfosFromStore(store, closure),
    isStorePath: (x: string) => isStorePath(store.storeDir, x),
  });
  const req = makeBuildRequest({
    store,
    drvPath,
    drv,
    desugared,
    plan,
    buildDirHost,
    buildDirSandbox,
    inputPaths: [...closure, ...missing.filter((m) => isStorePath(store.storeDir, m))],
    settings,
  });
  const out = header.map((h) => h + '\n').join('');
  const notes = missing.length > 0 ? `note: inputs not built yet (the plan assumes them): ${missing.join(', ')}\n` : '';
  return out + explain(req) + notes;
}
