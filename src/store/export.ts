// `store export`: paths out as a `nix-store --export` stream, references
// before referrers (the order nix-store --export uses), each NAR streamed
// from disk and hashed on the way: a path whose contents no longer match
// its registered hash aborts the export (corruption must not spread).
import { createHash } from 'node:crypto';
import { formatHash, hashEquals } from '../format/hash.js';
import { exportStream, type ExportEntry } from '../format/export-stream.js';
import { PathModified } from './errors.js';
import type { LocalStore } from './local-store.js';
import { writeSync } from 'node:fs';
import { exportEntryTrailer, exportPathStart, exportStreamEnd } from '../format/export-stream.js';
import { dumpPath, streamNar } from './nar-fs.js';
import type { PathInfo } from './path-info.js';

/** The NAR of a valid path, checked against its registered hash as it streams. */
export async function* narFromPath(store: LocalStore, info: PathInfo): AsyncGenerator<Uint8Array> {
  const h = createHash(info.narHash.algo);
  for await (const chunk of dumpPath(store.toRealPath(info.path))) {
    h.update(chunk);
    yield chunk;
  }
  const got = { algo: info.narHash.algo, digest: h.digest() };
  if (!hashEquals(got, info.narHash)) {
    throw new PathModified(
      `hash of path '${info.path}' has changed from '${formatHash(info.narHash)}' to '${formatHash(got)}'!`,
      { path: info.path, expected: formatHash(info.narHash), got: formatHash(got) },
    );
  }
}

/** The export stream of `paths` (all must be valid). */
export function exportPaths(store: LocalStore, paths: Iterable<string>): AsyncGenerator<Uint8Array> {
  const unique = [...new Set(paths)];
  const infos = unique.map((p) => store.requirePathInfo(p));
  const order = store.topoSortPaths(unique).reverse();
  const byPath = new Map(infos.map((i) => [i.path, i]));
  function* entries(): Generator<ExportEntry> {
    for (const p of order) {
      const info = byPath.get(p)!;
      yield { info: { path: info.path, references: info.references, deriver: info.deriver }, nar: narFromPath(store, info) };
    }
  }
  return exportStream(entries(), store.storeDir);
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** write(2) all of `data` to `fd`, waiting out EAGAIN (a non-blocking pipe). */
export function writeAllSync(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(fd, data, off, data.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(sleepCell, 0, 0, 1);
    }
  }
}

/**
 * The export stream of `paths` written straight to a file descriptor with
 * synchronous writes, so the NAR chunks can be reused buffers (flat peak
 * RSS whatever the size). For the CLI, where blocking the event loop on
 * stdout is fine.
 */
export async function exportPathsToFd(store: LocalStore, paths: Iterable<string>, fd: number): Promise<void> {
  const unique = [...new Set(paths)];
  const infos = new Map(unique.map((p) => [p, store.requirePathInfo(p)]));
  for (const p of store.topoSortPaths(unique).reverse()) {
    const info = infos.get(p)!;
    const trailer = exportEntryTrailer({ path: info.path, references: info.references, deriver: info.deriver }, store.storeDir);
    writeAllSync(fd, exportPathStart());
    const h = createHash(info.narHash.algo);
    await streamNar(store.toRealPath(p), (chunk) => {
      h.update(chunk);
      writeAllSync(fd, chunk);
    });
    const got = { algo: info.narHash.algo, digest: h.digest() };
    if (!hashEquals(got, info.narHash)) {
      throw new PathModified(`hash of path '${info.path}' has changed from '${formatHash(info.narHash)}' to '${formatHash(got)}'!`, {
        path: info.path,
        expected: formatHash(info.narHash),
        got: formatHash(got),
      });
    }
    writeAllSync(fd, trailer);
  }
  writeAllSync(fd, exportStreamEnd());
}
