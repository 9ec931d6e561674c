// NAR encoder: NarEvents in, wire bytes out (grammar in nar.ts). It checks
// every invariant on every call, not only in tests: entry names valid and
// strictly ascending, contents adding up to the declared size, events in an
// order the grammar allows. A NarWriter writes exactly one NAR.
import {
  BadNarEvent,
  compareBytes,
  encodeUtf8,
  entryNameProblem,
  MAX_CONTENTS_SIZE,
  NAME_RULE_TEXT,
  NAR_MAGIC,
  padLength,
  showBytes,
  symlinkTargetProblem,
  TOKEN_CLOSE,
  TOKEN_CONTENTS,
  TOKEN_DIRECTORY,
  TOKEN_ENTRY,
  TOKEN_EXECUTABLE,
  TOKEN_NAME,
  TOKEN_NODE,
  TOKEN_OPEN,
  TOKEN_REGULAR,
  TOKEN_SYMLINK,
  TOKEN_TARGET,
  TOKEN_TYPE,
  type NarEvent,
  type NarRule,
} from './nar.js';

/** `u64le(len) bytes pad` of a string. */
export function encodeNarString(s: string | Uint8Array): Uint8Array {
  const b = typeof s === 'string' ? encodeUtf8(s) : s;
  const out = new Uint8Array(8 + b.length + padLength(b.length));
  writeU64(out, 0, b.length);
  out.set(b, 8);
  return out;
}

export function writeU64(buf: Uint8Array, at: number, n: number): void {
  const lo = n >>> 0;
  const hi = Math.floor(n / 0x100000000) >>> 0;
  buf[at] = lo & 0xff;
  buf[at + 1] = (lo >>> 8) & 0xff;
  buf[at + 2] = (lo >>> 16) & 0xff;
  buf[at + 3] = lo >>> 24;
  buf[at + 4] = hi & 0xff;
  buf[at + 5] = (hi >>> 8) & 0xff;
  buf[at + 6] = (hi >>> 16) & 0xff;
  buf[at + 7] = hi >>> 24;
}

export function encodeU64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  writeU64(b, 0, n);
  return b;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The fixed byte sequences of the format, encoded once. */
export const NAR_BYTES = (() => {
  const s = encodeNarString;
  return {
    magic: s(NAR_MAGIC),
    open: s(TOKEN_OPEN),
    close: s(TOKEN_CLOSE),
    directoryNode: concat([s(TOKEN_OPEN), s(TOKEN_TYPE), s(TOKEN_DIRECTORY)]),
    symlinkNode: concat([s(TOKEN_OPEN), s(TOKEN_TYPE), s(TOKEN_SYMLINK), s(TOKEN_TARGET)]),
    regularNode: concat([s(TOKEN_OPEN), s(TOKEN_TYPE), s(TOKEN_REGULAR), s(TOKEN_CONTENTS)]),
    executableNode: concat([s(TOKEN_OPEN), s(TOKEN_TYPE), s(TOKEN_REGULAR), s(TOKEN_EXECUTABLE), s(''), s(TOKEN_CONTENTS)]),
    entryStart: concat([s(TOKEN_ENTRY), s(TOKEN_OPEN), s(TOKEN_NAME)]),
    node: s(TOKEN_NODE),
  } as const;
})();

const ZEROS = new Uint8Array(8);

type Frame =
  | { kind: 'dir'; prev: Uint8Array | null }
  | { kind: 'entry'; hasNode: boolean }
  | { kind: 'regular'; size: number; written: number };

export class NarWriter {
  /** Bytes produced so far. */
  offset = 0;
  private started = false;
  private finished = false;
  private readonly stack: Frame[] = [];

  /** True once the root node is complete. */
  get done(): boolean {
    return this.finished;
  }

  /**
   * Encodes one event. For `contents` the returned array is `data` itself;
   * everything else is a fresh array the caller may keep.
   */
  write(e: NarEvent): Uint8Array {
    const out = this.encode(e);
    this.offset += out.length;
    return out;
  }

  /** Encodes a whole event sequence into one array (tests, small NARs). */
  static encodeAll(events: Iterable<NarEvent>): Uint8Array {
    const w = new NarWriter();
    const parts: Uint8Array[] = [];
    for (const e of events) parts.push(w.write(e));
    w.end();
    return concat(parts);
  }

  /** Throws unless the root node is complete. */
  end(): void {
    if (!this.finished) this.fail('event-order', 'the NAR is incomplete (root node not closed)');
  }

  private fail(rule: NarRule, what: string, extra: Record<string, unknown> = {}): never {
    throw new BadNarEvent(`invalid NAR event at output byte ${this.offset}: ${what} (${rule})`, {
      offset: this.offset,
      rule,
      ...extra,
    });
  }

  private top(): Frame | undefined {
    return this.stack[this.stack.length - 1];
  }

  /** Checks that a node may start here and returns the prefix (magic for the root). */
  private nodeStart(type: string): Uint8Array | null {
    if (this.finished) this.fail('event-order', `'${type}' after the end of the NAR`);
    const top = this.top();
    if (!this.started) {
      this.started = true;
      return NAR_BYTES.magic;
    }
    if (top?.kind !== 'entry' || top.hasNode) this.fail('event-order', `'${type}' where no node may start`);
    return null;
  }

  private nodeDone(): void {
    const top = this.top();
    if (top === undefined) this.finished = true;
    else if (top.kind === 'entry') top.hasNode = true;
  }

  private encode(e: NarEvent): Uint8Array {
    switch (e.type) {
      case 'directory': {
        const pre = this.nodeStart(e.type);
        this.stack.push({ kind: 'dir', prev: null });
        return pre ? concat([pre, NAR_BYTES.directoryNode]) : NAR_BYTES.directoryNode.slice();
      }
      case 'symlink': {
        const pre = this.nodeStart(e.type);
        const target = e.targetBytes ?? encodeUtf8(e.target);
        const problem = symlinkTargetProblem(target);
        if (problem) this.fail(problem, `${NAME_RULE_TEXT[problem]}: ${showBytes(target)}`, { target: e.target });
        const parts = [NAR_BYTES.symlinkNode, encodeNarString(target), NAR_BYTES.close];
        if (pre) parts.unshift(pre);
        this.nodeDone();
        return concat(parts);
      }
      case 'regular': {
        const pre = this.nodeStart(e.type);
        const size = e.size;
        if (!Number.isSafeInteger(size) || size < 0 || size > MAX_CONTENTS_SIZE) {
          this.fail('contents-size', `invalid regular file size ${size}`, { size });
        }
        this.stack.push({ kind: 'regular', size, written: 0 });
        const head = e.executable ? NAR_BYTES.executableNode : NAR_BYTES.regularNode;
        const preLen = pre ? pre.length : 0;
        const out = new Uint8Array(preLen + head.length + 8);
        if (pre) out.set(pre);
        out.set(head, preLen);
        writeU64(out, preLen + head.length, size);
        return out;
      }
      case 'contents': {
        const top = this.top();
        if (top?.kind !== 'regular') this.fail('event-order', "'contents' outside a regular file");
        top.written += e.data.length;
        if (top.written > top.size) {
          this.fail('contents-size', `contents exceed the declared size ${top.size}`, { size: top.size });
        }
        return e.data;
      }
      case 'regularEnd': {
        const top = this.top();
        if (top?.kind !== 'regular') this.fail('event-order', "'regularEnd' outside a regular file");
        if (top.written !== top.size) {
          this.fail('contents-size', `contents are ${top.written} bytes, declared ${top.size}`, {
            size: top.size,
            written: top.written,
          });
        }
        this.stack.pop();
        this.nodeDone();
        const pad = padLength(top.size);
        const out = new Uint8Array(pad + NAR_BYTES.close.length);
        out.set(ZEROS.subarray(0, pad));
        out.set(NAR_BYTES.close, pad);
        return out;
      }
      case 'entry': {
        const top = this.top();
        if (top?.kind !== 'dir') this.fail('event-order', "'entry' outside a directory");
        const name = e.nameBytes ?? encodeUtf8(e.name);
        const problem = entryNameProblem(name);
        if (problem) this.fail(problem, `${NAME_RULE_TEXT[problem]}: ${showBytes(name)}`, { name: e.name });
        if (top.prev) {
          const c = compareBytes(top.prev, name);
          if (c === 0) this.fail('duplicate', `duplicate entry ${showBytes(name)}`, { name: e.name });
          if (c > 0) {
            this.fail('unsorted', `entry ${showBytes(name)} after ${showBytes(top.prev)}`, { name: e.name });
          }
        }
        top.prev = new Uint8Array(name); // a copy: the caller may reuse its array
        this.stack.push({ kind: 'entry', hasNode: false });
        return concat([NAR_BYTES.entryStart, encodeNarString(name), NAR_BYTES.node]);
      }
      case 'entryEnd': {
        const top = this.top();
        if (top?.kind !== 'entry' || !top.hasNode) this.fail('event-order', "'entryEnd' without a complete entry");
        this.stack.pop();
        return NAR_BYTES.close.slice();
      }
      case 'directoryEnd': {
        const top = this.top();
        if (top?.kind !== 'dir') this.fail('event-order', "'directoryEnd' outside a directory");
        this.stack.pop();
        this.nodeDone();
        return NAR_BYTES.close.slice();
      }
      default: {
        const bad: never = e;
        this.fail('event-order', `unknown event ${JSON.stringify(bad)}`);
      }
    }
  }
}
