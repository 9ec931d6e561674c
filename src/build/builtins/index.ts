// Builtin builders (`builder = "builtin:<name>"`), run in-process instead of
// as a child process. Each reads the derivation's environment (with the
// scratch-path rewrites applied, as Nix hands it to them) and writes the
// output at the real location of `$out`. Their messages go to the build log;
// a failure fails the build as a builder exiting with code 1, as in Nix.
import type { Derivation } from '../../format/derivation.js';
import type { BuildLog } from '../logs.js';
import { BuiltinFailed } from '../errors-run.js';

export interface BuiltinContext {
  drvPath: string;
  drv: Derivation;
  /** The derivation's environment with scratch paths substituted. */
  env: ReadonlyMap<string, string>;
  /** Physical location of a logical store path. */
  realPath(logical: string): string;
  log: BuildLog;
  signal: AbortSignal;
}

/** Nix's getAttr of the builtins: a missing attribute is an error. */
export function requireAttr(ctx: BuiltinContext, name: string): string {
  const v = ctx.env.get(name);
  if (v === undefined) throw new BuiltinFailed(`attribute '${name}' missing`, { drvPath: ctx.drvPath, attribute: name });
  return v;
}

export const BUILTINS = ['fetchurl', 'buildenv', 'unpack-channel'] as const;

export async function runBuiltin(ctx: BuiltinContext): Promise<void> {
  const name = ctx.drv.builder.slice('builtin:'.length);
  switch (name) {
    case 'fetchurl':
      return (await import('./fetchurl.js')).builtinFetchurl(ctx);
    case 'buildenv':
      return (await import('./buildenv.js')).builtinBuildenv(ctx);
    case 'unpack-channel':
      return (await import('./unpack-channel.js')).builtinUnpackChannel(ctx);
    default:
      throw new BuiltinFailed(`unsupported builtin builder '${name}'`, { drvPath: ctx.drvPath, builder: ctx.drv.builder });
  }
}
