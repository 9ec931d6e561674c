// Removing extended attributes and ACLs from new store files (Linux), as Nix
// does: they are not part of the NAR, so leaving them would make the same
// path differ between machines. Through the native addon, or koffi where it
// was not built (loaded on first use); where neither works this is a no-op.
import { createRequire } from 'node:module';
import { nativeAddon } from '../native/addon.js';

/** Attributes Nix leaves alone (settings.ignoredAcls). */
const IGNORED = new Set(['security.selinux', 'system.nfs4_acl', 'security.csm']);

interface XattrFns {
  /** The names, or none (also where listing failed). */
  list: (path: string) => string[];
  /** True when removed. */
  remove: (path: string, name: string) => boolean;
}

let fns: XattrFns | null | undefined;

function load(): XattrFns | null {
  if (fns !== undefined) return fns;
  fns = null;
  if (process.platform !== 'linux') return fns;
  const native = nativeAddon();
  if (native) {
    fns = {
      list: (path) => {
        const r = native.listXattrs(path);
        return typeof r === 'number' ? [] : r;
      },
      remove: (path, name) => native.removeXattr(path, name) === 0,
    };
    return fns;
  }
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const lib = koffi.load('libc.so.6');
    const llistxattr = lib.func('long llistxattr(const char *path, void *list, size_t size)') as (path: string, buf: Buffer | null, size: number) => number;
    const lremovexattr = lib.func('int lremovexattr(const char *path, const char *name)') as (path: string, name: string) => number;
    fns = {
      list: (path) => {
        const size = llistxattr(path, null, 0);
        if (size <= 0) return [];
        const buf = Buffer.alloc(size);
        const got = llistxattr(path, buf, size);
        if (got <= 0) return [];
        return buf.subarray(0, got).toString('latin1').split('\0').filter((n) => n !== '');
      },
      remove: (path, name) => lremovexattr(path, name) === 0,
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
  const removed: string[] = [];
  for (const name of f.list(path)) {
    if (IGNORED.has(name)) continue;
    if (f.remove(path, name)) removed.push(name);
  }
  return removed;
}
