// The temporary build directory of one build: `<build-dir>/nix-build-<name>.drv-<n>`,
// mode 0700, named as Nix 2.8 names it (the smallest free counter), so that
// an unsandboxed build sees the same NIX_BUILD_TOP under drvbox and Nix.
// mkdir fails on anything already there (a file, a symlink planted by
// someone else), so the counter simply moves on; nothing is followed.
import { chmodSync, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BuildDirFailed } from './errors-run.js';

/** Nix's createTempDir counter is per process; so is ours. */
let counter = 0;

export function makeBuildDir(parent: string, drvName: string): string {
  const prefix = `nix-build-${drvName}.drv-`;
  for (let tries = 0; tries < 100000; tries++) {
    const dir = join(parent, prefix + String(counter++));
    try {
      mkdirSync(dir, { mode: 0o700 });
      // mkdir honours the umask; 0700 is wanted exactly.
      chmodSync(dir, 0o700);
      return dir;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      throw new BuildDirFailed(`cannot create the build directory '${dir}': ${(e as Error).message}`, { path: dir, errno: code });
    }
  }
  throw new BuildDirFailed(`cannot find a free build directory name under '${parent}'`, { path: parent });
}

/**
 * Removes a build dir even when the builder left read-only or mode-0
 * directories in it (rm would fail on their entries).
 */
export function removeBuildDir(dir: string): void {
  const fix = (p: string): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (!st.isDirectory()) return;
    if ((st.mode & 0o700) !== 0o700) {
      try {
        chmodSync(p, st.mode | 0o700);
      } catch {
        return;
      }
    }
    let names: string[];
    try {
      names = readdirSync(p);
    } catch {
      return;
    }
    for (const n of names) fix(join(p, n));
  };
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    fix(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}
