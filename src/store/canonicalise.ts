// Canonical metadata of store files, as Nix sets it before registering a
// path: mtime 1 (one second after the epoch), mode 0444 or 0555 (0555 for
// directories and executables; setuid, setgid and sticky bits gone), owned
// by the store owner, no extended attributes, and only regular files,
// directories and symlinks.
import { chmodSync, lchownSync, lstatSync, lutimesSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { InvalidOwnership } from './errors.js';
import { UnsupportedFileType } from './nar-fs.js';
import { removeXattrs } from './xattr.js';

/** The mtime of every store file, in seconds. */
export const STORE_MTIME = 1;

const S_IXUSR = 0o100;

export interface CanonicaliseOptions {
  /**
   * When set, every file must be owned by this uid (the build user) or be a
   * hard link to a file already seen: a builder must not smuggle in someone
   * else's file (`ln /etc/shadow $out/`).
   */
  fromUid?: number;
  /** dev:ino of files already canonicalised (shared across a build's outputs). */
  inodesSeen?: Set<string>;
}

function euid(): number {
  return process.geteuid?.() ?? 0;
}

function egid(): number {
  return process.getegid?.() ?? 0;
}

/** Mode and mtime only (also used after hard-linking in optimise). */
export function canonicaliseTimestampAndPermissions(path: string, st: Stats = lstatSync(path)): void {
  if (!st.isSymbolicLink()) {
    const mode = st.mode & 0o7777;
    if (mode !== 0o444 && mode !== 0o555) {
      chmodSync(path, 0o444 | (st.mode & S_IXUSR ? 0o111 : 0));
    }
  }
  if (st.mtimeMs !== STORE_MTIME * 1000) {
    lutimesSync(path, st.atimeMs / 1000, STORE_MTIME);
  }
}

function canonicaliseOne(path: string, opts: CanonicaliseOptions, seen: Set<string>): Stats | null {
  const st = lstatSync(path);
  if (!st.isFile() && !st.isDirectory() && !st.isSymbolicLink()) {
    throw new UnsupportedFileType(`file '${path}' has an unsupported type (only regular files, directories and symlinks may be in the store)`, {
      path,
    });
  }
  removeXattrs(path);
  const key = `${st.dev}:${st.ino}`;
  if (opts.fromUid !== undefined && st.uid !== opts.fromUid) {
    if (st.isDirectory() || !seen.has(key)) {
      throw new InvalidOwnership(`invalid ownership on file '${path}' (owner ${st.uid}, expected ${opts.fromUid})`, {
        path,
        uid: st.uid,
        expected: opts.fromUid,
      });
    }
    return null; // a hard link to a file we already took over
  }
  seen.add(key);
  canonicaliseTimestampAndPermissions(path, st);
  if (st.uid !== euid()) {
    try {
      lchownSync(path, euid(), egid());
    } catch (e) {
      throw new InvalidOwnership(`cannot change the owner of '${path}' to ${euid()}: ${(e as Error).message}`, { path, uid: st.uid });
    }
  }
  return st;
}

/** Canonicalises `path` and everything below it. */
export function canonicalisePathMetaData(path: string, opts: CanonicaliseOptions = {}): void {
  const seen = opts.inodesSeen ?? new Set<string>();
  const stack = [path];
  while (stack.length > 0) {
    const p = stack.pop()!;
    const st = canonicaliseOne(p, opts, seen);
    if (st?.isDirectory()) for (const name of readdirSync(p)) stack.push(join(p, name));
  }
  const top = lstatSync(path);
  if (top.uid !== euid()) {
    throw new InvalidOwnership(`wrong ownership of top-level store path '${path}' (owner ${top.uid})`, { path, uid: top.uid });
  }
}
