// `store import`: a `nix-store --export` stream in, paths registered out.
//
// Each entry's NAR is restored to its own temp name while it streams in,
// hashed on the way (the NAR is never held in memory); its trailer then names
// the path, its references (each valid in the store, earlier in the stream,
// or the path itself) and its deriver. Only when the whole stream has been
// read and checked are the temps renamed into place and registered, all in
// one transaction; any error before that removes the temps and leaves the
// store exactly as it was.
import { hashEquals } from '../format/hash.js';
import { ExportParser, type ExportEvent } from '../format/export-stream.js';
import { BadImportEntry } from './errors.js';
import { installStaged, makeTempStorePath, NarEventSink, type Staged, type TempStorePath } from './ingest.js';
import type { LocalStore } from './local-store.js';

export interface ImportResult {
  /** Every path in the stream, in stream order (as nix-store --import prints them). */
  paths: string[];
  /** The paths that were not valid before. */
  added: string[];
}

export async function importPaths(store: LocalStore, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<ImportResult> {
  const parser = new ExportParser(store.storeDir);
  const staged: Staged[] = [];
  const seen = new Set<string>();
  const paths: string[] = [];
  let temp: TempStorePath | null = null;
  let sink: NarEventSink | null = null;
  const temps: TempStorePath[] = [];

  const onEvent = async (e: ExportEvent): Promise<void> => {
    switch (e.type) {
      case 'pathStart':
        temp = await makeTempStorePath(store, 'drvbox-import');
        temps.push(temp);
        sink = new NarEventSink(temp.real);
        break;
      case 'nar':
        sink!.handle(e.event);
        break;
      case 'pathEnd': {
        const nar = sink!.finish();
        sink = null;
        const path = e.path;
        for (const r of e.references) {
          if (r !== path && !seen.has(r) && !store.isValidPath(r)) {
            throw new BadImportEntry(
              `cannot import '${path}': its reference '${r}' is neither in the store nor earlier in the stream`,
              { path, reference: r },
            );
          }
        }
        if (seen.has(path)) {
          const first = staged.find((s) => s.info.path === path);
          if (first && !hashEquals(first.info.narHash, nar.hashes.get('sha256')!)) {
            throw new BadImportEntry(`cannot import '${path}': it occurs twice in the stream with different contents`, { path });
          }
          temp!.remove();
        } else {
          seen.add(path);
          staged.push({
            temp: temp!,
            info: {
              path,
              narHash: nar.hashes.get('sha256')!,
              narSize: nar.narSize,
              references: e.references,
              deriver: e.deriver,
            },
          });
        }
        paths.push(path);
        temp = null;
        break;
      }
      case 'end':
        break;
    }
  };

  try {
    for await (const chunk of source) {
      // Events hold views of `chunk`; each is consumed before the next chunk.
      for (const e of parser.push(chunk)) await onEvent(e);
    }
    parser.finish();
    const added = await installStaged(store, staged);
    return { paths, added };
  } catch (e) {
    (sink as NarEventSink | null)?.abort();
    throw e;
  } finally {
    for (const t of temps) {
      try {
        t.remove();
      } catch {
        /* best effort */
      }
    }
  }
}
