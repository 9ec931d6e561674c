// The temporary build directory of one build: `<build-dir>/nix-build-<name>.drv-<n>`,
// mode 0700, named as Nix 2.8 names it (the smallest free number), so that
// an unsandboxed build sees the same NIX_BUILD_TOP under drvbox and Nix.
// mkdir fails on anything already there (a file, a symlink planted by
// someone else), so the counter simply moves on; nothing is followed.
import { chmodSync, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { chmod, mkdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BuildDirFailed } from './errors-run.js';

// Nix's startBuilder counts from 0 for every build (a local counter), so the
// first free name is taken: usually `-0`.

export function makeBuildDir(parent: string, drvName: string): string {
  const prefix = `nix-build-${drvName}.drv-`;
  for (let counter = 0; counter < 100000; counter++) {
    const dir = join(parent, prefix + String(counter));
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

/** makeBuildDir off the event loop. */
export async function makeBuildDirAsync(parent: string, drvName: string): Promise<string> {
  const prefix = `nix-build-${drvName}.drv-`;
  for (let counter = 0; counter < 100000; counter++) {
    const dir = join(parent, prefix + String(counter));
    try {
      await mkdir(dir, { mode: 0o700 });
      if (umaskHidesOwnerBits()) await chmod(dir, 0o700);
      return dir;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      throw new BuildDirFailed(`cannot create the build directory '${dir}': ${(e as Error).message}`, { path: dir, errno: code });
    }
  }
  throw new BuildDirFailed(`cannot find a free build directory name under '${parent}'`, { path: parent });
}

let ownerMasked: boolean | null = null;
function umaskHidesOwnerBits(): boolean {
  if (ownerMasked === null) {
    const m = process.umask(0o022);
    process.umask(m);
    ownerMasked = (m & 0o700) !== 0;
  }
  return ownerMasked;
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

/** removeBuildDir off the event loop (the usual case: nothing read-only inside). */
export async function removeBuildDirAsync(dir: string): Promise<void> {
  try {
    // Most build dirs are empty at the end (or hold a few files): try the one syscall first.
    await rmdir(dir);
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
  }
  try {
    await rm(dir, { recursive: true, force: true });
  } catch {
    removeBuildDir(dir);
  }
}
