// Delimits one NAR inside a protocol stream and passes its bytes on, streamed.
//
// Some ops send a NAR with no length in front (old-framing AddToStore,
// NarFromPath answers, each path of AddMultipleToStore), so the only way to
// find its end is to follow the NAR grammar:
//
//   nar   = str("nix-archive-1") node
//   node  = str("(") str("type") ( str("regular") [str("executable") str("")]
//             str("contents") str(<bytes>)
//         | str("symlink") str("target") str(<target>)
//         | str("directory") { str("entry") str("(") str("name") str(<name>)
//             str("node") node str(")") } ) str(")")
//
// Every token is a protocol string, so the bytes we yield are exactly the
// bytes read. File contents are streamed in pieces, never held whole; other
// tokens are small (capped). Entry names are checked the way the NAR writer
// must produce them (non-empty, no '/', no NUL, not '.'/'..', ascending).
//
// This is the one place that knows the NAR grammar in the daemon; when
// src/format/nar.ts's NarParser is available it can replace the walk below.
import { defineError } from '../errors.js';
import { paddingOf, WireWriter, type WireSource } from './wire.js';

export class BadNarStream extends defineError('BadNarStream', 'E_BAD_NAR_STREAM') {}

export const NAR_MAGIC = 'nix-archive-1';
/** Longest token other than file contents (symlink targets up to PATH_MAX). */
const MAX_TOKEN = 4096;
const MAX_DEPTH = 256;
const PIECE = 64 * 1024;
const FLUSH_AT = 16 * 1024;

export interface CopyNarOptions {
  /** Yield only the contents of the (single, regular) root file instead of the NAR. */
  onlyContents?: boolean;
}

/** Yields the NAR's bytes (or the root file's contents) as they are read from `src`. */
export async function* copyNar(src: WireSource, opts: CopyNarOptions = {}): AsyncGenerator<Buffer> {
  const out = new WireWriter(FLUSH_AT * 2);
  const keep = !opts.onlyContents;

  async function token(what: string): Promise<string> {
    const b = await src.bytes(`NAR ${what}`, MAX_TOKEN);
    if (keep) out.bytes(b);
    return b.toString('latin1');
  }
  async function expect(tok: string): Promise<void> {
    const got = await token(`'${tok}'`);
    if (got !== tok) throw new BadNarStream(`bad NAR: expected '${tok}', got '${printable(got)}'`, { expected: tok, got: printable(got) });
  }

  await expect(NAR_MAGIC);
  // explicit stack of open directories: the name of the previous entry in each
  const dirs: (string | null)[] = [];

  // each iteration parses one node, then closes finished entries/directories
  for (;;) {
    await expect('(');
    await expect('type');
    const type = await token('node type');
    if (type === 'regular') {
      let tag = await token('regular file tag');
      if (tag === 'executable') {
        await expect('');
        tag = await token('regular file tag');
      }
      if (tag !== 'contents') throw new BadNarStream(`bad NAR: expected 'contents', got '${printable(tag)}'`, { got: printable(tag) });
      const len = await src.u64('NAR file size');
      if (keep) out.u64(len);
      let left = len;
      while (left > 0n) {
        const piece = await src.readSome(left > BigInt(PIECE) ? PIECE : Number(left), 'NAR file contents');
        left -= BigInt(piece.length);
        if (keep && out.length > 0) yield out.take();
        yield piece;
      }
      const pad = paddingOf(Number(len % 8n));
      if (pad) {
        const p = await src.readExact(pad, 'NAR file padding');
        if (p.some((x) => x !== 0)) throw new BadNarStream('bad NAR: non-zero padding after file contents', {});
        if (keep) out.raw(p);
      }
      await expect(')');
      if (dirs.length > 0) await expect(')'); // the enclosing entry
    } else if (type === 'symlink') {
      if (opts.onlyContents) throw new BadNarStream('expected a regular file, got a symlink', {});
      await expect('target');
      await token('symlink target');
      await expect(')');
      if (dirs.length > 0) await expect(')'); // the enclosing entry
    } else if (type === 'directory') {
      if (opts.onlyContents) throw new BadNarStream('expected a regular file, got a directory', {});
      if (dirs.length >= MAX_DEPTH) throw new BadNarStream(`bad NAR: directories nested deeper than ${MAX_DEPTH}`, {});
      dirs.push(null);
    } else {
      throw new BadNarStream(`bad NAR: unknown node type '${printable(type)}'`, { type: printable(type) });
    }

    // inside a directory: either another entry (loop to parse its node) or its end
    let descend = false;
    while (dirs.length > 0 && !descend) {
      const tag = await token('directory tag');
      if (tag === 'entry') {
        await expect('(');
        await expect('name');
        const name = await token('entry name');
        checkName(name, dirs[dirs.length - 1]!);
        dirs[dirs.length - 1] = name;
        await expect('node');
        descend = true;
      } else if (tag === ')') {
        dirs.pop();
        // a nested directory is an entry's node: close that entry
        if (dirs.length > 0) await expect(')');
      } else {
        throw new BadNarStream(`bad NAR: expected 'entry' or ')', got '${printable(tag)}'`, { got: printable(tag) });
      }
    }
    if (!descend) break;
    if (out.length >= FLUSH_AT) yield out.take();
    continue;
  }
  if (out.length > 0) yield out.take();
}

function checkName(name: string, prev: string | null): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new BadNarStream(`bad NAR: invalid entry name '${printable(name)}'`, { name: printable(name) });
  }
  if (prev !== null && !(Buffer.compare(Buffer.from(prev, 'latin1'), Buffer.from(name, 'latin1')) < 0)) {
    throw new BadNarStream(`bad NAR: entry '${printable(name)}' is not after '${printable(prev)}'`, { name: printable(name) });
  }
}

function printable(s: string): string {
  return s.length > 64 ? JSON.stringify(s.slice(0, 64)) + '…' : JSON.stringify(s).slice(1, -1);
}
