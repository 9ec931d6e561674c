// What every command gets: settings, the store location, output helpers and a
// lazily opened store. Heavy modules (SQLite, koffi) load only when used.
import { writeSync } from 'node:fs';
import { loadSettings } from '../config/load.js';
import type { Settings } from '../config/settings.js';
import { resolveStoreLocation, type StoreLocation } from '../config/store-location.js';
// Type-only: the store module (better-sqlite3, koffi) loads in openStore().
import type { LocalStore } from '../store/local-store.js';

export interface GlobalFlags {
  store?: string;
  storeDir?: string;
  verbose: boolean;
  quiet: boolean;
  options: Array<[string, string]>;
}

export class CliContext {
  private settingsCache: Settings | null = null;
  private locationCache: StoreLocation | null = null;
  private readonly closers: Array<() => void | Promise<void>> = [];
  private storeCache: Promise<LocalStore> | null = null;

  constructor(
    readonly flags: GlobalFlags,
    readonly env: NodeJS.ProcessEnv = process.env,
    readonly cwd: string = process.cwd(),
  ) {}

  get settings(): Settings {
    this.settingsCache ??= loadSettings(this.env, this.flags.options);
    return this.settingsCache;
  }

  get location(): StoreLocation {
    this.locationCache ??= resolveStoreLocation({
      store: this.flags.store,
      storeDir: this.flags.storeDir,
      env: this.env,
      platform: process.platform,
      cwd: this.cwd,
    });
    return this.locationCache;
  }

  /** The local store at `location`, opened on first use and closed when the command ends. */
  openStore(): Promise<LocalStore> {
    this.storeCache ??= import('../store/open.js').then(async (m) => {
      const store = await m.openStore(this.location, this.settings);
      this.onClose(() => store.close());
      return store;
    });
    return this.storeCache;
  }

  /** Runs when the command ends, whatever happened (close the DB, release locks). */
  onClose(fn: () => void | Promise<void>): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.closers.reverse()) {
      try {
        await fn();
      } catch (e) {
        this.debug(`cleanup failed: ${(e as Error).message}`);
      }
    }
    this.closers.length = 0;
  }

  /** A result line on stdout. */
  out(line: string): void {
    writeStdout(line + '\n');
  }

  /** A message on stderr (suppressed by --quiet). */
  info(msg: string): void {
    if (!this.flags.quiet) process.stderr.write(msg + '\n');
  }

  warn(msg: string): void {
    process.stderr.write(`warning: ${msg}\n`);
  }

  debug(msg: string): void {
    if (this.flags.verbose) process.stderr.write(`debug: ${msg}\n`);
  }
}

/**
 * Writes to fd 1 synchronously. process.stdout would do the same on Linux
 * but costs ~3 ms to set up (stream classes, tty/net), a tenth of a no-op
 * build. A full non-blocking pipe is waited on; a closed one (EPIPE) ends
 * the output quietly, as `drvbox ... | head` expects.
 */
function writeStdout(text: string): void {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  let pause: Int32Array | null = null;
  while (off < buf.length) {
    try {
      off += writeSync(1, buf, off, buf.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') return;
      pause ??= new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(pause, 0, 0, 2);
    }
  }
}
