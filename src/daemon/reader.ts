// A buffered WireSource over a Node stream (socket, pipe, child stdio).
//
// It holds at most `highWaterMark` bytes beyond what the current read asked
// for: when that much is buffered the stream is paused, so a fast client can
// never make us hold more than one field (itself bounded by WireLimits) plus
// the high-water mark.
import type { Readable } from 'node:stream';
import { WireSource, WireTruncated, type WireLimits } from './wire.js';

export interface StreamReaderOptions {
  limits?: Partial<WireLimits>;
  /** Bytes buffered ahead before the stream is paused (default 256 KiB). */
  highWaterMark?: number;
}

export class StreamReader extends WireSource {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private want = 0;
  private ended = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private readonly hwm: number;
  private readonly onData = (chunk: Buffer | string) => {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (b.length === 0) return;
    this.chunks.push(b);
    this.buffered += b.length;
    if (this.buffered >= Math.max(this.hwm, this.want)) this.stream.pause();
    this.notify();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.notify();
  };
  private readonly onError = (e: Error) => {
    this.failure ??= e;
    this.notify();
  };

  constructor(
    private readonly stream: Readable,
    opts: StreamReaderOptions = {},
  ) {
    super(opts.limits);
    this.hwm = opts.highWaterMark ?? 256 * 1024;
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', this.onError);
  }

  /** Bytes received but not yet consumed. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Whether the stream ended and everything buffered was consumed. */
  get atEnd(): boolean {
    return this.ended && this.buffered === 0;
  }

  /** Fails every pending and future read (used on shutdown). */
  abort(reason: Error): void {
    this.failure ??= reason;
    this.notify();
  }

  /** Stops listening to the stream. */
  detach(): void {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onEnd);
    this.stream.off('error', this.onError);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async need(n: number): Promise<void> {
    while (this.buffered < n) {
      if (this.failure) throw this.failure;
      if (this.ended) return;
      this.want = n;
      this.stream.resume();
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    this.want = 0;
    if (this.failure && this.buffered < n) throw this.failure;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length > n) {
      out = first.subarray(0, n);
      this.chunks[0] = first.subarray(n);
    } else if (first.length === n) {
      out = first;
      this.chunks.shift();
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    if (this.buffered < this.hwm && !this.ended) this.stream.resume();
    return out;
  }

  unread(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.unshift(b);
    this.buffered += b.length;
  }

  protected async readExactRaw(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    if (this.buffered < n) await this.need(n);
    if (this.buffered < n) throw new WireTruncated('unexpected end of input');
    return this.take(n);
  }

  protected async readSomeRaw(max: number): Promise<Buffer> {
    if (this.buffered === 0) await this.need(1);
    if (this.buffered === 0) throw new WireTruncated('unexpected end of input');
    return this.take(Math.min(max, this.chunks[0]!.length));
  }
}
