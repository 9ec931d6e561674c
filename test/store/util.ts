// Shared fixtures of the store tests: fresh chroot-style stores in temp dirs,
// and child processes that use the compiled store (crash and concurrency tests).
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { TestContext } from 'node:test';
import { chrootLocation } from '../../src/config/store-location.js';
import { LocalStore, storeSettingsFrom, type StoreSettings } from '../../src/store/local-store.js';
import type { LocalStoreLocation } from '../../src/store/layout.js';
import { REPO_ROOT } from '../helpers/host.js';
import { tempDir } from '../helpers/tmp.js';

export const STORE_INDEX_URL = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'store', 'index.js')).href;
export const LOCATION_URL = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'config', 'store-location.js')).href;

/** A new chroot-style store under a temp dir; closed after the test. */
export async function tempStore(t: TestContext, settings: Partial<StoreSettings> = {}): Promise<{ store: LocalStore; dir: string; root: string }> {
  const dir = tempDir(t);
  const root = join(dir, 'root');
  const store = await LocalStore.open(chrootLocation(root, '/nix/store', 'test') as LocalStoreLocation, storeSettingsFrom(null, settings));
  t.after(() => store.close());
  return { store, dir, root };
}

export async function openAt(root: string, settings: Partial<StoreSettings> = {}): Promise<LocalStore> {
  return LocalStore.open(chrootLocation(root, '/nix/store', 'test') as LocalStoreLocation, storeSettingsFrom(null, settings));
}

/**
 * Runs `body` (an async function body, ESM) in a child node process with
 * `S` (the store index module), `openAt(root)`, `root` and `send(msg)`
 * (writes one line to stdout) in scope.
 */
export function storeChild(dir: string, root: string, body: string): ChildProcess {
  const file = join(dir, `child-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(
    file,
    `import * as S from ${JSON.stringify(STORE_INDEX_URL)};
import { chrootLocation } from ${JSON.stringify(LOCATION_URL)};
const root = ${JSON.stringify(root)};
const openAt = (r) => S.LocalStore.open(chrootLocation(r, '/nix/store', 'child'), S.storeSettingsFrom(null));
const send = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
(async () => { ${body} })().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\\n'); process.exit(3); });
`,
  );
  return spawn(process.execPath, [file], { stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Reads the JSON lines a child prints, one at a time. */
export class Messages {
  private readonly queue: unknown[] = [];
  private waiters: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private buf = '';
  stderr = '';
  private exited: string | null = null;

  constructor(child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const msg = JSON.parse(line) as unknown;
        const w = this.waiters.shift();
        if (w) w.resolve(msg);
        else this.queue.push(msg);
      }
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.on('exit', (code, sig) => {
      this.exited = `child exited (${code ?? sig}): ${this.stderr}`;
      for (const w of this.waiters.splice(0)) w.reject(new Error(this.exited));
    });
  }

  next(): Promise<unknown> {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.exited) return Promise.reject(new Error(this.exited));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

export function waitExit(child: ChildProcess): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode, stderr });
      return;
    }
    child.on('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
}
