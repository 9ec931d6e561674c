// builtin:buildenv: the user environment of nix-env. `derivations` is a flat
// list of groups "<active> <priority> <n> <path>..."; every active package
// (then, at lower priority, those named in its
// nix-support/propagated-user-env-packages) is merged into `$out` as a tree
// of symlinks: directories present in several packages become real
// directories, files link to the package with the best (lowest) priority, and
// equal priorities collide. `$out/manifest.nix` links to `manifest`.
//
// Store paths are logical; links point at logical paths, while reading goes
// through the physical location (a diverted store).
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, unlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { BuiltinFailed } from '../errors-run.js';
import { requireAttr, type BuiltinContext } from './index.js';

interface Package {
  path: string;
  active: boolean;
  priority: number;
}

/** Names that never enter a profile (useless, or colliding between every package). */
const SKIPPED_SUFFIXES = ['/propagated-build-inputs', '/nix-support', '/perllocal.pod', '/info/dir', '/log', '/manifest.nix', '/manifest.json'];

class Profile {
  /** Priority of each link made, by its path relative to $out. */
  private readonly priorities = new Map<string, number>();
  links = 0;

  constructor(
    private readonly ctx: BuiltinContext,
    private readonly outReal: string,
  ) {}

  private phys(logical: string): string {
    try {
      return this.ctx.realPath(logical);
    } catch {
      return logical; // not a store path: a host path
    }
  }

  private statFollow(logical: string): Stats | null {
    try {
      return statSync(this.phys(logical));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw e;
    }
  }

  /** Links the entries of srcDir (logical) into out/rel. */
  link(srcDir: string, rel: string, priority: number): void {
    let names: string[];
    try {
      names = readdirSync(this.phys(srcDir));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') {
        this.ctx.log.note(`warning: not including '${srcDir}' in the user environment because it's not a directory`);
        return;
      }
      throw e;
    }
    for (const name of names.sort()) {
      if (name.startsWith('.')) continue;
      const src = `${srcDir}/${name}`;
      const dstRel = rel ? `${rel}/${name}` : name;
      const dst = join(this.outReal, dstRel);
      const srcSt = this.statFollow(src);
      if (!srcSt) {
        this.ctx.log.note(`warning: skipping dangling symlink '${dst}'`);
        continue;
      }
      if (SKIPPED_SUFFIXES.some((s) => src.endsWith(s))) continue;
      let dstSt: Stats | null = null;
      try {
        dstSt = lstatSync(dst);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      if (srcSt.isDirectory()) {
        if (dstSt?.isDirectory()) {
          this.link(src, dstRel, priority);
          continue;
        }
        if (dstSt?.isSymbolicLink()) {
          // A directory linked from another package: replace the link by a
          // real directory holding both packages' entries.
          const target = readlinkSync(dst);
          if (!this.statFollow(target)?.isDirectory()) {
            throw new BuiltinFailed(`collision between '${src}' and non-directory '${target}'`, { drvPath: this.ctx.drvPath });
          }
          unlinkSync(dst);
          mkdirSync(dst, { mode: 0o755 });
          this.link(target, dstRel, this.priorities.get(dstRel) ?? priority);
          this.link(src, dstRel, priority);
          continue;
        }
      } else if (dstSt) {
        if (dstSt.isSymbolicLink()) {
          const prev = this.priorities.get(dstRel) ?? 0;
          if (prev === priority) {
            throw new BuiltinFailed(
              `files '${src}' and '${readlinkSync(dst)}' have the same priority ${priority}; use 'nix-env --set-flag priority NUMBER INSTALLED_PKGNAME' ` +
                `to change the priority of one of the conflicting packages (0 being the highest priority)`,
              { drvPath: this.ctx.drvPath, file: dstRel },
            );
          }
          if (prev < priority) continue;
          unlinkSync(dst);
        } else if (dstSt.isDirectory()) {
          throw new BuiltinFailed(`collision between non-directory '${src}' and directory '${dst}'`, { drvPath: this.ctx.drvPath });
        }
      }
      symlinkSync(src, dst);
      this.priorities.set(dstRel, priority);
      this.links++;
    }
  }

  propagated(pkg: string): string[] {
    try {
      return readFileSync(join(this.phys(pkg), 'nix-support', 'propagated-user-env-packages'), 'utf8').split(/[ \n]+/).filter(Boolean);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw e;
    }
  }
}

export function parsePackages(ctx: BuiltinContext, spec: string): Package[] {
  const t = spec.split(/[ \t\n\r]+/).filter(Boolean);
  const pkgs: Package[] = [];
  let i = 0;
  const num = (what: string): number => {
    const s = t[i++];
    if (s === undefined || !/^-?\d+$/.test(s)) {
      throw new BuiltinFailed(`invalid 'derivations' attribute: expected ${what}, got '${s ?? '<end>'}'`, { drvPath: ctx.drvPath });
    }
    return Number(s);
  };
  while (i < t.length) {
    const active = t[i++]!;
    const priority = num('a priority');
    const n = num('a number of outputs');
    for (let k = 0; k < n; k++) {
      const p = t[i++];
      if (p === undefined) throw new BuiltinFailed(`invalid 'derivations' attribute: missing output path`, { drvPath: ctx.drvPath });
      pkgs.push({ path: p, active: active !== 'false', priority });
    }
  }
  return pkgs;
}

export async function builtinBuildenv(ctx: BuiltinContext): Promise<void> {
  const outLogical = requireAttr(ctx, 'out');
  const out = ctx.realPath(outLogical);
  mkdirSync(out, { recursive: true });
  const pkgs = parsePackages(ctx, requireAttr(ctx, 'derivations'));
  const profile = new Profile(ctx, out);
  const done = new Set<string>();
  let postponed = new Set<string>();
  const add = (pkg: string, priority: number) => {
    if (done.has(pkg)) return;
    done.add(pkg);
    profile.link(pkg, '', priority);
    for (const p of profile.propagated(pkg)) if (!done.has(p)) postponed.add(p);
  };
  // Best priority first (fewer replacements), then by path for a stable result.
  pkgs.sort((a, b) => a.priority - b.priority || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const p of pkgs) if (p.active) add(p.path, p.priority);
  // Propagated packages come later, at ever lower priority.
  let counter = 1000;
  while (postponed.size > 0) {
    const batch = [...postponed].sort();
    postponed = new Set();
    for (const p of batch) add(p, counter++);
  }
  symlinkSync(requireAttr(ctx, 'manifest'), join(out, 'manifest.nix'));
}
