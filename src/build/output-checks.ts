// Output checks, as Nix's checkOutputs, run on the outputs of a build before
// they are registered.
//
// Legacy form (no structured attrs), env vars holding whitespace-separated
// specifiers, applied to every output:
//   allowedReferences     the output's references must all be specified
//   allowedRequisites     its closure must all be specified
//   disallowedReferences  none of its references may be specified
//   disallowedRequisites  nothing in its closure may be specified
// Structured form: `outputChecks.<output>` objects with those four lists and
// `maxSize` / `maxClosureSize` (bytes of NAR), per output.
//
// A specifier is a store path or the name of an output of this derivation.
// Unlike Nix, an output that was already valid before the build (a sibling
// of the rebuilt ones) can be named too (Nix issue 16485). As in Nix, the
// legacy form ignores an output's own path in the requisites checks.
// Checks run per output in name order, in the order above (sizes first),
// and the first violation fails the build, listing the offending paths.
import { compareUtf8 } from '../format/derivation.js';
import { isStorePath } from '../format/store-path.js';
import { InvalidPath } from '../store/errors.js';
import {
  BadDerivationAttr,
  IllegalReferenceSpecifier,
  OutputCheckFailed,
  OutputClosureTooLarge,
  OutputTooLarge,
} from './errors-register.js';
import { isJsonObject, jsonElements, tokenizeString, type JsonObject, type JsonValue } from './structured-attrs.js';

export interface CheckedPathInfo {
  path: string;
  narSize: number;
  references: readonly string[];
}

export interface OutputChecksInput {
  storeDir: string;
  drvPath: string;
  /** The derivation's env (legacy form). */
  env: ReadonlyMap<string, string>;
  structuredAttrs: JsonObject | null;
  /** Outputs built now, by output name: what is checked. */
  built: ReadonlyMap<string, CheckedPathInfo>;
  /** Final path of every output of the derivation, also those that were valid already. */
  outputPaths: ReadonlyMap<string, string>;
  /** Info of a valid path (inputs, sibling outputs), or null. */
  queryPathInfo(path: string): CheckedPathInfo | null;
}

interface Checks {
  ignoreSelfRefs: boolean;
  maxSize?: bigint;
  maxClosureSize?: bigint;
  allowedReferences?: string[];
  allowedRequisites?: string[];
  disallowedReferences?: string[];
  disallowedRequisites?: string[];
}

const LISTS = ['allowedReferences', 'allowedRequisites', 'disallowedReferences', 'disallowedRequisites'] as const;

/** nlohmann's get<uint64_t>: numbers (wrapped or truncated) and Booleans; anything else is an error. */
function toUint64(v: JsonValue, what: string, drvPath: string): bigint {
  if (typeof v === 'bigint') return BigInt.asUintN(64, v);
  if (typeof v === 'number') return BigInt.asUintN(64, BigInt(Math.trunc(Number.isFinite(v) ? v : 0)));
  if (typeof v === 'boolean') return v ? 1n : 0n;
  throw new BadDerivationAttr(`attribute '${what}' of derivation '${drvPath}' must be a number`, { derivation: drvPath, attribute: what });
}

function structuredChecks(output: JsonObject, outputName: string, drvPath: string): Checks {
  const checks: Checks = { ignoreSelfRefs: false };
  if ('maxSize' in output) checks.maxSize = toUint64(output['maxSize']!, `outputChecks.${outputName}.maxSize`, drvPath);
  if ('maxClosureSize' in output) {
    checks.maxClosureSize = toUint64(output['maxClosureSize']!, `outputChecks.${outputName}.maxClosureSize`, drvPath);
  }
  for (const name of LISTS) {
    if (!(name in output)) continue;
    checks[name] = jsonElements(output[name]!).map((x) => {
      if (typeof x !== 'string') {
        throw new BadDerivationAttr(`attribute '${name}' of derivation '${drvPath}' must be a list of strings`, { derivation: drvPath, attribute: name });
      }
      return x;
    });
  }
  return checks;
}

function legacyChecks(env: ReadonlyMap<string, string>): Checks {
  const checks: Checks = { ignoreSelfRefs: true };
  for (const name of LISTS) {
    const v = env.get(name);
    if (v !== undefined) checks[name] = tokenizeString(v);
  }
  return checks;
}

/** The checks that apply to `outputName`, or null when none do. */
export function outputChecksFor(
  outputName: string,
  drvPath: string,
  env: ReadonlyMap<string, string>,
  structuredAttrs: JsonObject | null,
): Checks | null {
  if (!structuredAttrs) return legacyChecks(env);
  const all = structuredAttrs['outputChecks'];
  if (!isJsonObject(all) || !(outputName in all)) return null;
  const mine = all[outputName]!;
  return isJsonObject(mine) ? structuredChecks(mine, outputName, drvPath) : { ignoreSelfRefs: false };
}

export function checkOutputs(input: OutputChecksInput): void {
  const byPath = new Map<string, CheckedPathInfo>();
  for (const info of input.built.values()) byPath.set(info.path, info);
  const infoOf = (p: string): CheckedPathInfo => {
    const i = byPath.get(p) ?? input.queryPathInfo(p);
    if (!i) throw new InvalidPath(`path '${p}' is not valid`, { path: p });
    return i;
  };
  const closure = (root: string): { paths: Set<string>; size: bigint } => {
    const paths = new Set<string>();
    let size = 0n;
    const todo = [root];
    while (todo.length > 0) {
      const p = todo.shift()!;
      if (paths.has(p)) continue;
      paths.add(p);
      const info = infoOf(p);
      size += BigInt(info.narSize);
      for (const r of info.references) todo.push(r);
    }
    return { paths, size };
  };

  for (const outputName of [...input.built.keys()].sort(compareUtf8)) {
    const info = input.built.get(outputName)!;
    const checks = outputChecksFor(outputName, input.drvPath, input.env, input.structuredAttrs);
    if (!checks) continue;

    if (checks.maxSize !== undefined && BigInt(info.narSize) > checks.maxSize) {
      throw new OutputTooLarge(`path '${info.path}' is too large at ${info.narSize} bytes; limit is ${checks.maxSize} bytes`, {
        derivation: input.drvPath,
        output: outputName,
        path: info.path,
        size: info.narSize,
        limit: Number(checks.maxSize),
      });
    }
    if (checks.maxClosureSize !== undefined) {
      const { size } = closure(info.path);
      if (size > checks.maxClosureSize) {
        throw new OutputClosureTooLarge(
          `closure of path '${info.path}' is too large at ${size} bytes; limit is ${checks.maxClosureSize} bytes`,
          { derivation: input.drvPath, output: outputName, path: info.path, size: Number(size), limit: Number(checks.maxClosureSize) },
        );
      }
    }

    const checkRefs = (check: (typeof LISTS)[number], allowed: boolean, recursive: boolean): void => {
      const value = checks[check];
      if (value === undefined) return;
      const spec = new Set<string>();
      for (const s of value) {
        if (isStorePath(input.storeDir, s)) spec.add(s);
        else if (input.outputPaths.has(s)) spec.add(input.outputPaths.get(s)!);
        else {
          throw new IllegalReferenceSpecifier(`derivation contains an illegal reference specifier '${s}'`, {
            derivation: input.drvPath,
            output: outputName,
            check,
            specifier: s,
          });
        }
      }
      const used = recursive ? closure(info.path).paths : new Set(info.references);
      if (recursive && checks.ignoreSelfRefs) used.delete(info.path);
      const bad = [...used].filter((p) => (allowed ? !spec.has(p) : spec.has(p))).sort(compareUtf8);
      if (bad.length > 0) {
        throw new OutputCheckFailed(`output '${info.path}' is not allowed to refer to the following paths:${bad.map((p) => `\n  ${p}`).join('')}`, {
          derivation: input.drvPath,
          output: outputName,
          path: info.path,
          check,
          paths: bad,
        });
      }
    };
    checkRefs('allowedReferences', true, false);
    checkRefs('allowedRequisites', true, true);
    checkRefs('disallowedReferences', false, false);
    checkRefs('disallowedRequisites', false, true);
  }
}
