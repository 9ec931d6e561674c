// Per-derivation build logs, kept where Nix keeps them:
//   <logDir>/drvs/<first 2 chars of the .drv base name>/<the rest>
// as plain text (Nix 2.8 bzip2s them by default and then names them
// `<rest>.bz2`; `drvbox log` says so when it finds only such a file).
//
// The builder's bytes go to disk synchronously as they arrive, so a builder
// that floods gigabytes keeps memory flat: nothing is buffered but the last
// few lines, each capped, for progress display and failure messages. Lines
// are cut as Nix cuts them: `\n` ends a line, `\r` moves back to its start
// so that the next text overwrites it (progress bars).
import { closeSync, existsSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { openFd } from '../store/fs-util.js';

/** How much of one line is kept in memory (the log file keeps everything). */
export const MAX_KEPT_LINE = 4096;
/** Lines shown when a build fails. */
export const DEFAULT_TAIL_LINES = 10;

/** Where the log of `drvPath` is written. */
export function drvLogPath(drvLogDir: string, drvPath: string): string {
  const base = basename(drvPath);
  return join(drvLogDir, base.slice(0, 2), base.slice(2));
}

/** An existing log of `drvPath`: plain (ours) or Nix's `.bz2`, or null. */
export function findDrvLog(drvLogDir: string, drvPath: string): { path: string; compressed: boolean } | null {
  const p = drvLogPath(drvLogDir, drvPath);
  if (existsSync(p)) return { path: p, compressed: false };
  if (existsSync(p + '.bz2')) return { path: p + '.bz2', compressed: true };
  return null;
}

/** Applies `\r` the way a terminal (and Nix's log tail) does: later text overwrites from column 0. */
export function overlayCarriageReturns(line: string): string {
  if (!line.includes('\r')) return line;
  let acc = '';
  for (const seg of line.split('\r')) acc = seg + acc.slice(seg.length);
  return acc;
}

function writeFully(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

export interface BuildLogOptions {
  /** Complete lines kept for the failure message (default 10). */
  tailLines?: number;
  /** Every chunk of builder output, after it reached the file (-v streaming). */
  onChunk?: (chunk: Uint8Array) => void;
}

/**
 * One build's log: a file (or none, for tests), the last lines, the line
 * being written, and a byte count. Not thread-safe; called from 'data'
 * handlers, one chunk at a time.
 */
/** Log subdirectories known to exist (there are at most 32*32). */
const madeDirs = new Set<string>();

export class BuildLog {
  bytes = 0;
  private fd: number | null = null;
  private readonly tailMax: number;
  private readonly kept: string[] = [];
  /** The current (unterminated) line, capped at MAX_KEPT_LINE. */
  private partial = '';

  /** `fd`: the log file opened by open(); else the file is opened here (synchronously). */
  constructor(
    readonly path: string | null,
    private readonly opts: BuildLogOptions = {},
    fd?: number,
  ) {
    this.tailMax = opts.tailLines ?? DEFAULT_TAIL_LINES;
    if (fd !== undefined) this.fd = fd;
    else if (path) {
      mkdirSync(dirname(path), { recursive: true });
      // Truncate: a rebuild replaces the old log, as in Nix.
      this.fd = openSync(path, 'w', 0o644);
    }
  }

  /** Opens the log file off the event loop (many builds start at once). */
  static async open(path: string, opts: BuildLogOptions = {}): Promise<BuildLog> {
    const openLog = () => openFd(path, 'w', 0o644);
    const dir = dirname(path);
    let fd: number;
    if (madeDirs.has(dir)) fd = await openLog();
    else {
      try {
        fd = await openLog();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        await mkdir(dir, { recursive: true });
        fd = await openLog();
      }
      madeDirs.add(dir);
    }
    return new BuildLog(path, opts, fd);
  }

  write(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.fd !== null) writeFully(this.fd, chunk);
    this.bytes += chunk.length;
    this.track(chunk);
    this.opts.onChunk?.(chunk);
  }

  /** A line drvbox itself adds to the log (e.g. registration notes). */
  note(line: string): void {
    this.write(Buffer.from(line.endsWith('\n') ? line : line + '\n', 'utf8'));
  }

  private push(line: string): void {
    this.kept.push(overlayCarriageReturns(line));
    if (this.kept.length > this.tailMax) this.kept.shift();
  }

  private appendPartial(s: string): void {
    if (this.partial.length < MAX_KEPT_LINE) this.partial = (this.partial + s).slice(0, MAX_KEPT_LINE);
  }

  /** Keeps the tail without looking at every byte of large chunks. */
  private track(chunk: Uint8Array): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    const last = buf.lastIndexOf(10);
    if (last < 0) {
      this.appendPartial(buf.subarray(0, MAX_KEPT_LINE).toString('utf8'));
      return;
    }
    const first = buf.indexOf(10);
    // The line that was open before this chunk ends at its first newline.
    this.appendPartial(buf.subarray(0, Math.min(first, MAX_KEPT_LINE)).toString('utf8'));
    this.push(this.partial);
    this.partial = '';
    // Only the last `tailMax` complete lines of the chunk can matter.
    let start = last;
    let n = 0;
    while (start > first && n < this.tailMax) {
      const prev = buf.lastIndexOf(10, start - 1);
      start = prev;
      n++;
    }
    let at = start + 1;
    while (at <= last) {
      const nl = buf.indexOf(10, at);
      this.push(buf.subarray(at, Math.min(nl, at + MAX_KEPT_LINE)).toString('utf8'));
      at = nl + 1;
    }
    if (last + 1 < buf.length) this.appendPartial(buf.subarray(last + 1, last + 1 + MAX_KEPT_LINE).toString('utf8'));
  }

  /** The last complete lines (plus the unterminated one, if any). */
  tail(): string[] {
    const lines = [...this.kept];
    if (this.partial !== '') {
      lines.push(overlayCarriageReturns(this.partial));
      if (lines.length > this.tailMax) lines.shift();
    }
    return lines;
  }

  /** The line to show in a progress display: the one being written, else the last one. */
  lastLine(): string {
    if (this.partial !== '') return overlayCarriageReturns(this.partial);
    return this.kept[this.kept.length - 1] ?? '';
  }

  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }
}
