// Removing extended attributes and ACLs from new store files (Linux), as Nix
// does: they are not part of the NAR, so leaving them would make the same
// path differ between machines. Through koffi, loaded on first use; where
// it or the calls are unavailable this is a no-op.
import { createRequire } from 'node:module';

/** Attributes Nix leaves alone (settings.ignoredAcls). */
const IGNORED = new Set(['security.selinux', 'system.nfs4_acl', 'security.csm']);

interface XattrFns {
  llistxattr: (path: string, buf: Buffer | null, size: number) => number;
  lremovexattr: (path: string, name: string) => number;
}

let fns: XattrFns | null | undefined;

function load(): XattrFns | null {
  if (fns !== undefined) return fns;
  fns = null;
  if (process.platform !== 'linux') return fns;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const lib = koffi.load('libc.so.6');
    fns = {
      llistxattr: lib.func('long llistxattr(const char *path, void *list, size_t size)') as XattrFns['llistxattr'],
      lremovexattr: lib.func('int lremovexattr(const char *path, const char *name)') as XattrFns['lremovexattr'],
    };
  } catch {
    fns = null;
  }
  return fns;
}

/** Removes every extended attribute of `path` (not following symlinks); returns the names removed. */
export function removeXattrs(path: string): string[] {
  const f = load();
  if (!f) return [];
  const size = f.llistxattr(path, null, 0);
  if (size <= 0) return [];
  const buf = Buffer.alloc(size);
  const got = f.llistxattr(path, buf, size);
  if (got <= 0) return [];
  const removed: string[] = [];
  for (const name of buf.subarray(0, got).toString('latin1').split('\0')) {
    if (!name || IGNORED.has(name)) continue;
    if (f.lremovexattr(path, name) === 0) removed.push(name);
  }
  return removed;
}
