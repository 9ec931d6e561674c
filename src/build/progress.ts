// What a build run shows on stderr.
//   tty     a status block redrawn at most 10 times a second: counts
//           (built/running/queued/failed), then one line per running build
//           with its last log line, capped to the terminal's height and cut to
//           its width; messages scroll above it.
//   plain   (not a terminal) one line per event, as nix-build prints them.
//   quiet   only failures.
// `-v` streams every builder's output as `<name>> line` (both tty and plain).
// A failure prints Nix's message, the last log lines (unless they were
// streamed) and where the full log is.
import { writeSync } from 'node:fs';
import { basename } from 'node:path';
import type { GoalResult } from './goal.js';
import type { BuildLog } from './logs.js';
import type { Reporter } from './scheduler.js';

export interface ProgressOptions {
  verbose: boolean;
  quiet: boolean;
  /** Where output goes; default process.stderr. */
  stream?: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean; columns?: number; rows?: number };
  /** Force a mode (tests); default: tty when the stream is a terminal. */
  tty?: boolean;
  /** The command that prints a log, for failure messages. */
  logCommand?: string;
}

/**
 * Writes to fd 2 synchronously, waiting while a pipe is full: stderr through
 * a slow reader must slow the builders down (their log is read no faster),
 * not pile up in memory as process.stderr.write would.
 */
function writeStderr(text: string): void {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  let pause: Int32Array | null = null;
  while (off < buf.length) {
    try {
      off += writeSync(2, buf, off, buf.length - off);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN') return; // a closed stderr: nothing to show any more
      pause ??= new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(pause, 0, 0, 2);
    }
  }
}

const MIN_REDRAW_MS = 100;
const MAX_RUNNING_LINES = 10;
const MAX_PARTIAL = 4096;

interface Running {
  name: string;
  log: BuildLog;
  since: number;
}

function shortName(drvPath: string): string {
  const b = basename(drvPath).replace(/\.drv$/, '');
  const dash = b.indexOf('-');
  return dash >= 0 ? b.slice(dash + 1) : b;
}

/** Removes terminal escape sequences and control characters from builder text shown in the status. */
export function sanitizeForStatus(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '').replace(/\t/g, ' ');
}

/** Cuts `s` to `width` columns (one column per code point; good enough for log lines). */
export function fitWidth(s: string, width: number): string {
  const cps = [...s];
  if (cps.length <= width) return s;
  return cps.slice(0, Math.max(0, width - 1)).join('') + '…';
}

export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** The lines printed for a failed goal (message, tail, log location). */
export function failureLines(r: GoalResult, opts: { showTail: boolean; logCommand: string }): string[] {
  // Continuation lines of a message are indented under its first, as Nix prints them.
  const [first, ...more] = (r.error?.message ?? `build of '${r.drvPath}' failed`).split('\n');
  const lines = [`error: ${first}`, ...more.map((l) => `       ${l}`)];
  if (r.failure === 'dependency' || r.failure === 'interrupted') return lines;
  if (opts.showTail && r.logTail.length > 0) {
    lines[lines.length - 1] += ';';
    lines.push(`       last ${r.logTail.length} log lines:`);
    for (const l of r.logTail) lines.push(`       > ${l}`);
  }
  if (r.logPath) lines.push(`       For full logs, run '${opts.logCommand} ${r.drvPath}' (${r.logPath}).`);
  if (r.keptBuildDir) lines.push(`       The build directory was kept at '${r.keptBuildDir}'.`);
  return lines;
}

export class Progress implements Reporter {
  private readonly out: NonNullable<ProgressOptions['stream']>;
  private readonly tty: boolean;
  private readonly running = new Map<string, Running>();
  private readonly partial = new Map<string, string>();
  private total = 0;
  private built = 0;
  private failed = 0;
  private drawn = 0;
  private lastDraw = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  private closed = false;

  constructor(private readonly opts: ProgressOptions) {
    this.out = opts.stream ?? {
      write: (text: string) => {
        writeStderr(text);
        return true;
      },
      // Getters: process.stderr loads tty and net (~3 ms at start-up), which
      // a --quiet run never needs.
      get isTTY() {
        return process.stderr.isTTY;
      },
      get columns() {
        return process.stderr.columns;
      },
      get rows() {
        return process.stderr.rows;
      },
    };
    this.tty = !opts.quiet && (opts.tty ?? Boolean((this.out as { isTTY?: boolean }).isTTY));
  }

  private get columns(): number {
    return Math.max(20, (this.out as { columns?: number }).columns ?? 80);
  }

  private get rows(): number {
    return Math.max(4, (this.out as { rows?: number }).rows ?? 24);
  }

  /** Prints lines above the status block. */
  private print(lines: string[]): void {
    if (lines.length === 0) return;
    this.clearBlock();
    this.out.write(lines.join('\n') + '\n');
    this.draw(true);
  }

  private clearBlock(): void {
    if (!this.tty || this.drawn === 0) return;
    this.out.write(`\x1b[${this.drawn}F\x1b[J`);
    this.drawn = 0;
  }

  private draw(force = false): void {
    if (!this.tty || this.closed || this.total === 0) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < MIN_REDRAW_MS) {
      this.timer ??= setTimeout(() => {
        this.timer = null;
        this.clearBlock();
        this.draw(true);
      }, MIN_REDRAW_MS - (now - this.lastDraw));
      this.timer.unref();
      return;
    }
    this.lastDraw = now;
    const width = this.columns - 1;
    const queued = Math.max(0, this.total - this.built - this.failed - this.running.size);
    const lines = [
      fitWidth(
        `[${this.built}/${this.total} built, ${this.running.size} running, ${queued} queued${this.failed ? `, ${this.failed} failed` : ''}] ${formatDuration(now - this.startedAt)}`,
        width,
      ),
    ];
    const room = Math.min(MAX_RUNNING_LINES, this.rows - 2);
    const entries = [...this.running.values()].sort((a, b) => a.since - b.since);
    const shown = entries.length > room ? entries.slice(0, room - 1) : entries;
    for (const e of shown) {
      const last = sanitizeForStatus(e.log.lastLine());
      lines.push(fitWidth(`  ${e.name} (${formatDuration(now - e.since)})${last ? ': ' + last : ''}`, width));
    }
    if (shown.length < entries.length) lines.push(`  … and ${entries.length - shown.length} more`);
    this.clearBlock();
    this.out.write(lines.join('\n') + '\n');
    this.drawn = lines.length;
  }

  planned(drvPaths: string[]): void {
    this.total += drvPaths.length;
    if (this.opts.quiet) return;
    if (this.tty) {
      this.draw(true);
      return;
    }
    this.print([
      drvPaths.length === 1 ? 'this derivation will be built:' : `these ${drvPaths.length} derivations will be built:`,
      ...drvPaths.map((p) => `  ${p}`),
    ]);
  }

  started(drvPath: string, info: { name: string; logPath: string | null; log: BuildLog }): void {
    this.running.set(drvPath, { name: info.name, log: info.log, since: Date.now() });
    if (this.opts.quiet) return;
    if (this.tty && !this.opts.verbose) this.draw();
    else this.print([`building '${drvPath}'...`]);
  }

  chunk(drvPath: string, chunk: Uint8Array): void {
    if (this.opts.quiet) return;
    if (!this.opts.verbose) {
      if (this.tty) this.draw();
      return;
    }
    const prefix = `${this.running.get(drvPath)?.name ?? shortName(drvPath)}> `;
    const text = (this.partial.get(drvPath) ?? '') + Buffer.from(chunk).toString('utf8');
    const nl = text.lastIndexOf('\n');
    if (nl < 0) {
      this.partial.set(drvPath, text.slice(0, MAX_PARTIAL));
      return;
    }
    this.partial.set(drvPath, text.slice(nl + 1, nl + 1 + MAX_PARTIAL));
    this.print(text.slice(0, nl).split('\n').map((l) => prefix + l));
  }

  finished(r: GoalResult): void {
    const name = this.running.get(r.drvPath)?.name ?? shortName(r.drvPath);
    this.running.delete(r.drvPath);
    const rest = this.partial.get(r.drvPath);
    this.partial.delete(r.drvPath);
    if (rest && this.opts.verbose && !this.opts.quiet) this.print([`${name}> ${rest}`]);
    if (r.status === 'failed') {
      this.failed++;
      this.print(failureLines(r, { showTail: !this.opts.verbose, logCommand: this.opts.logCommand ?? 'drvbox log' }));
      return;
    }
    this.built++;
    if (this.tty) this.draw();
  }

  message(text: string): void {
    if (this.opts.quiet && !text.startsWith('warning:') && !text.startsWith('error:')) return;
    this.print([text]);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.clearBlock();
    this.closed = true;
  }
}
