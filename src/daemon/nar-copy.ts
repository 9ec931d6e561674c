// Delimits one NAR inside a protocol stream and passes its bytes on, streamed.
//
// Some ops send a NAR with no length in front (old-framing AddToStore,
// NarFromPath answers, each path of AddMultipleToStore, tunnelled imports),
// so the only way to find its end is to follow the NAR grammar. That grammar
// lives in src/format (NarParser, which also enforces the entry-name and
// symlink rules); here we feed it what the source has, pass on the bytes it
// accepted and give back to the source whatever followed the NAR.
import { defineError } from '../errors.js';
import { NarParser } from '../format/nar-reader.js';
import type { NarEvent } from '../format/nar.js';
import type { WireSource } from './wire.js';

export { NAR_MAGIC } from '../format/nar.js';

export class NarNotRegularFile extends defineError('NarNotRegularFile', 'E_NAR_NOT_REGULAR_FILE') {}

const PIECE = 64 * 1024;

export interface CopyNarOptions {
  /** Yield only the contents of the (single, regular) root file instead of the NAR. */
  onlyContents?: boolean;
}

/**
 * Yields the NAR's bytes (or the root file's contents) as they are read from
 * `src`; stops exactly at the NAR's end. A malformed NAR throws BadNar.
 */
export async function* copyNar(src: WireSource, opts: CopyNarOptions = {}): AsyncGenerator<Buffer> {
  const contents: Buffer[] = [];
  let depth = 0;
  const onEvent = opts.onlyContents
    ? (e: NarEvent) => {
        if (depth === 0 && (e.type === 'directory' || e.type === 'symlink')) {
          throw new NarNotRegularFile(`expected a regular file, got a ${e.type}`, { got: e.type });
        }
        if (e.type === 'regular') depth++;
        else if (e.type === 'contents' && e.data.length > 0) contents.push(Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength));
      }
    : () => undefined;
  const parser = new NarParser({ onEvent });
  while (!parser.done) {
    const chunk = await src.readSome(PIECE, 'NAR');
    parser.push(chunk);
    const rest = parser.takeRemainder();
    if (rest.length > 0) src.unread(chunk.subarray(chunk.length - rest.length));
    if (opts.onlyContents) {
      for (const c of contents.splice(0)) yield c;
    } else {
      yield rest.length > 0 ? chunk.subarray(0, chunk.length - rest.length) : chunk;
    }
  }
}
