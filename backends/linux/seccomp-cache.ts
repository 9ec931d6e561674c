// The default policy's seccomp program, compiled by the build step (npm
// install / npm run build: backends/linux/write-seccomp-cache.mjs) and kept
// next to the launcher, so that a build gets the same bytes without loading
// koffi and libseccomp (~12 ms of every sandboxed run's start-up).
//
// The file names the libseccomp that compiled it (path, size, mtime, inode).
// When that library changed or is gone, or the policy is not the one
// compiled, the file is not used: the program is compiled again, and a
// missing libseccomp is the usual error. A cached program is never weaker
// than a fresh one.
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { builtFile } from '../../src/native/built-file.js';
import type { CompiledSeccomp } from './seccomp.js';

/** Where the build step writes the program; DRVBOX_SECCOMP_CACHE overrides ('' turns the cache off). */
export const SECCOMP_CACHE_PATH: string = builtFile(`seccomp-${process.arch}.json`, 'DRVBOX_SECCOMP_CACHE');

/** The libseccomp a program was compiled with. */
export interface LibraryId {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

interface CacheFile {
  version: 1;
  /** policyKey() of the policy compiled. */
  policy: string;
  library: LibraryId;
  archs: string[];
  skipped: string[];
  /** The program, base64. */
  bpf: string;
}

/** A policy as text (its bigints in decimal): what the cache and the in-memory table are keyed by. */
export function policyKey(policy: unknown): string {
  return JSON.stringify(policy, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
}

export function libraryId(path: string): LibraryId | null {
  try {
    const st = statSync(path);
    return { path, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
  } catch {
    return null;
  }
}

/** The file this process mapped `libseccomp.so*` from (once loaded), from /proc/self/maps. */
export function mappedLibrary(maps: string = readFileSync('/proc/self/maps', 'utf8')): string | null {
  for (const line of maps.split('\n')) {
    const at = line.indexOf('/');
    if (at < 0) continue;
    const path = line.slice(at);
    if (/\/libseccomp\.so[^/]*$/.test(path)) return path;
  }
  return null;
}

const isStrings = (x: unknown): x is string[] => Array.isArray(x) && x.every((s) => typeof s === 'string');

/** The cached program for the policy with key `key`, if the file holds it and its libseccomp is unchanged. */
export function readCachedProgram(file: string, key: string): CompiledSeccomp | null {
  if (file === '') return null;
  let data: Partial<CacheFile>;
  try {
    data = JSON.parse(readFileSync(file, 'utf8')) as Partial<CacheFile>;
  } catch {
    return null;
  }
  if (data === null || typeof data !== 'object' || data.version !== 1 || data.policy !== key) return null;
  const lib = data.library;
  if (!lib || typeof lib.path !== 'string' || !isStrings(data.archs) || !isStrings(data.skipped) || typeof data.bpf !== 'string') return null;
  const now = libraryId(lib.path);
  if (!now || now.size !== lib.size || now.mtimeMs !== lib.mtimeMs || now.ino !== lib.ino) return null;
  const bpf = Buffer.from(data.bpf, 'base64');
  // struct sock_filter is 8 bytes; the launcher checks the program again.
  if (bpf.length === 0 || bpf.length % 8 !== 0) return null;
  return { bpf, archs: data.archs, skipped: data.skipped };
}

/** Writes `program` (compiled from the policy with key `key` by `library`) to `file`, atomically. */
export function writeCachedProgram(file: string, key: string, program: CompiledSeccomp, library: LibraryId): void {
  const data: CacheFile = {
    version: 1,
    policy: key,
    library,
    archs: program.archs,
    skipped: program.skipped,
    bpf: program.bpf.toString('base64'),
  };
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(data, null, 1) + '\n', { mode: 0o644 });
  renameSync(tmp, file);
}
