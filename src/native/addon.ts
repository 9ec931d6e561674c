// The native addon (src/native/addon.c, compiled by
// backends/linux/build-launcher.mjs into dist/launcher/drvbox-native.node):
// flock and the xattr calls without loading koffi, which costs ~10 ms at
// the start of each build. Callers fall back to koffi where it is missing
// (not built, not Linux, or DRVBOX_NATIVE set to the empty string).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { builtFile } from './built-file.js';

export interface NativeAddon {
  /** flock(2): 0, or a negative errno. */
  flock(fd: number, op: number): number;
  /** llistxattr(2): the names (latin1), or a negative errno. */
  listXattrs(path: string): string[] | number;
  /** lremovexattr(2): 0, or a negative errno. */
  removeXattr(path: string, name: string): number;
}

/** Where the addon is; DRVBOX_NATIVE overrides it, and an empty value turns it off. */
export const NATIVE_ADDON_PATH: string = builtFile('drvbox-native.node', 'DRVBOX_NATIVE');

let addon: NativeAddon | null | undefined;

/** The addon, loaded once; null where it is not there or does not load. */
export function nativeAddon(): NativeAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (process.platform !== 'linux' || NATIVE_ADDON_PATH === '' || !existsSync(NATIVE_ADDON_PATH)) return addon;
  try {
    const m = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as Partial<NativeAddon>;
    if (typeof m.flock === 'function' && typeof m.listXattrs === 'function' && typeof m.removeXattr === 'function') addon = m as NativeAddon;
  } catch {
    // an addon built for another Node ABI or libc: koffi does the work
  }
  return addon;
}
