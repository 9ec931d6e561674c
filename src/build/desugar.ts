// Desugaring (pure): a derivation plus the output plan and a few settings
// become the exact builder, argv, environment and extra files of the build
// dir, as Nix's initEnv / initTmpDir / writeStructuredAttrs and the
// exportReferencesGraph writer make them. Backends never see structured
// attrs, passAsFile or exportReferencesGraph: only this result.
//
// The environment, in the order Nix fills its std::map (later entries win):
//   PATH=/path-not-set  HOME=/homeless-shelter  NIX_STORE  NIX_BUILD_CORES
//   without structured attrs: every variable of the derivation, except
//     those named in passAsFile, which become files `.attr-<nix32 sha256 of
//     the name>` in the build dir and a variable `<name>Path` naming the file
//   NIX_BUILD_TOP TMPDIR TEMPDIR TMP TEMP PWD = the build dir as the builder sees it
//   fixed-output: NIX_OUTPUT_CHECKED=1
//   fixed-output or impure: each impureEnvVars name, from the caller's env
//   NIX_LOG_FD=2  TERM=xterm-256color
//   structured attrs: NIX_ATTRS_SH_FILE, NIX_ATTRS_JSON_FILE (in the build
//     dir as the builder sees it; Nix 2.8 names the host path, which does
//     not exist inside its sandbox)
// Args, env names and values and the contents of all these files get the
// plan's inputRewrites; the builder path does not (as in Nix).
import { createHash } from 'node:crypto';
import { compareUtf8, type Derivation } from '../format/derivation.js';
import { nix32Encode } from '../format/nix32.js';
import { parseStorePath } from '../format/store-path.js';
import { BadStructuredAttrs } from './errors-register.js';
import {
  closureJson,
  parseLegacyExportReferencesGraph,
  registrationText,
  structuredGraphRoot,
  type PathInfoLike,
} from './export-references-graph.js';
import { rewriteStrings, type OutputPlan } from './output-plan.js';
import {
  DerivationAttrs,
  dumpJson,
  isJsonObject,
  jsonObject,
  prepareStructuredAttrs,
  structuredAttrsShell,
  tokenizeString,
  type JsonObject,
} from './structured-attrs.js';

export type { PathInfoLike } from './export-references-graph.js';

export const HOME_DIR = '/homeless-shelter';
export const PATH_NOT_SET = '/path-not-set';
export const ATTRS_JSON_FILE = '.attrs.json';
export const ATTRS_SH_FILE = '.attrs.sh';

export interface DesugarInput {
  storeDir: string;
  drvPath: string;
  drv: Derivation;
  plan: OutputPlan;
  /** NIX_BUILD_TOP as the builder sees it. */
  buildDirSandbox: string;
  /** Already resolved (0 -> CPU count is the caller's job). */
  cores: number;
  /** For impureEnvVars of fixed-output (and impure) derivations. */
  callerEnv: Record<string, string | undefined>;
  /**
   * Path infos of every path in the closure of `roots` for
   * exportReferencesGraph (closureInfosFromStore gives Nix's semantics:
   * roots must be inputs, derivations bring their outputs).
   */
  closureInfos(roots: string[]): PathInfoLike[];
  /** Not needed by desugar (it checks store paths itself); accepted for the contract. */
  isStorePath?(p: string): boolean;
}

export interface DesugaredFile {
  /** A plain file name in the top of the build dir. */
  name: string;
  contents: string | Uint8Array;
}

export interface Desugared {
  builder: string;
  args: string[];
  /** Sorted by byte order of the names (Nix's std::map), the order of envp. */
  env: Array<[string, string]>;
  /** Written into the build dir before the builder starts (mode 0644, owned by the build user). */
  files: DesugaredFile[];
  /** The parsed __json, for output checks; null without structured attrs. */
  structuredAttrs: JsonObject | null;
}

/** `.attr-<nix32 sha256 of the name>`: where passAsFile puts attribute `name`. */
export function passAsFileName(name: string): string {
  return '.attr-' + nix32Encode(createHash('sha256').update(name, 'utf8').digest());
}

function drvBaseName(storeDir: string, drvPath: string): string {
  const { hashPart, name } = parseStorePath(storeDir, drvPath);
  return `${hashPart}-${name}`;
}

export function desugar(input: DesugarInput): Desugared {
  const { storeDir, drv, plan, buildDirSandbox: top } = input;
  const base = drvBaseName(storeDir, input.drvPath);
  const attrs = DerivationAttrs.of(base, drv);
  const rewrites = plan.inputRewrites;
  const kinds = new Set([...drv.outputs.values()].map((o) => o.kind));
  const fixed = kinds.has('caFixed');
  const sandboxed = !fixed && !kinds.has('impure');

  const env = new Map<string, string>();
  const files: DesugaredFile[] = [];
  env.set('PATH', PATH_NOT_SET);
  env.set('HOME', HOME_DIR);
  env.set('NIX_STORE', storeDir);
  env.set('NIX_BUILD_CORES', String(input.cores));

  if (!attrs.structured) {
    const passAsFile = new Set(tokenizeString(drv.env.get('passAsFile') ?? ''));
    for (const name of [...drv.env.keys()].sort(compareUtf8)) {
      const value = drv.env.get(name)!;
      if (!passAsFile.has(name)) {
        env.set(name, value);
      } else {
        const fn = passAsFileName(name);
        files.push({ name: fn, contents: rewriteStrings(value, rewrites) });
        env.set(name + 'Path', `${top}/${fn}`);
      }
    }
  }

  for (const v of ['NIX_BUILD_TOP', 'TMPDIR', 'TEMPDIR', 'TMP', 'TEMP', 'PWD']) env.set(v, top);
  if (fixed) env.set('NIX_OUTPUT_CHECKED', '1');
  if (!sandboxed) {
    for (const v of attrs.getStrings('impureEnvVars') ?? []) env.set(v, input.callerEnv[v] ?? '');
  }
  env.set('NIX_LOG_FD', '2');
  env.set('TERM', 'xterm-256color');

  if (attrs.structured) {
    const json = prepareStructuredAttrs(attrs.structured, drv, (key, roots) =>
      closureJson(input.closureInfos([...new Set(roots.map((r) => structuredGraphRoot(storeDir, key, r)))])),
    );
    const outs = json['outputs'];
    if (!isJsonObject(outs)) {
      throw new BadStructuredAttrs(`cannot process __json attribute of '${base}': 'outputs' was replaced by an exportReferencesGraph entry`, {
        derivation: base,
      });
    }
    json['outputs'] = jsonObject(Object.entries(outs).map(([o, p]) => [o, rewriteStrings(String(p), rewrites)]));
    files.push({ name: ATTRS_SH_FILE, contents: rewriteStrings(structuredAttrsShell(json), rewrites) });
    env.set('NIX_ATTRS_SH_FILE', `${top}/${ATTRS_SH_FILE}`);
    files.push({ name: ATTRS_JSON_FILE, contents: rewriteStrings(dumpJson(json), rewrites) });
    env.set('NIX_ATTRS_JSON_FILE', `${top}/${ATTRS_JSON_FILE}`);
  } else {
    for (const e of parseLegacyExportReferencesGraph(storeDir, drv.env.get('exportReferencesGraph') ?? '')) {
      files.push({ name: e.fileName, contents: registrationText(input.closureInfos([e.storePath])) });
    }
  }

  const envOut: Array<[string, string]> = [...env.keys()]
    .sort(compareUtf8)
    .map((k) => [rewriteStrings(k, rewrites), rewriteStrings(env.get(k)!, rewrites)]);
  return {
    builder: drv.builder,
    args: drv.args.map((a) => rewriteStrings(a, rewrites)),
    env: envOut,
    files,
    structuredAttrs: attrs.structured,
  };
}
