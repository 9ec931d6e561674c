// Runs the native NAR serialiser (src/native/nar-dump.c, compiled by
// backends/linux/build-launcher.mjs into dist/launcher/drvbox-nar-dump) and
// feeds its output to a sink. On a tree of many small files it is about
// twice as fast as the JS walk (two threads whose syscalls overlap, none of
// Node's per-call overhead). hashNarDump lets it hash the NAR too, with the
// system's OpenSSL: moving the NAR through Node's pipe costs more CPU than
// hashing it; runNarDump streams it to Node where libcrypto is missing.
//
// Callers get one of three outcomes: the NAR size, one of the serialiser's
// own failures (the same messages as src/store/nar-fs.ts, which turns them
// into its typed errors), or `unavailable` when the program is missing,
// could not start, or hit a system error: the caller then runs the JS
// serialiser, which reproduces that error exactly as it always reported it
// (or succeeds, if the tree changed meanwhile).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { builtFile } from './built-file.js';

/** Where the program is; DRVBOX_NAR_DUMP overrides it, and an empty value turns it off. */
export const NAR_DUMP_PATH: string = builtFile('drvbox-nar-dump', 'DRVBOX_NAR_DUMP');

let available: boolean | undefined;

/** Whether the program was built (checked once per process). */
export function narDumpAvailable(): boolean {
  available ??= process.platform === 'linux' && NAR_DUMP_PATH !== '' && existsSync(NAR_DUMP_PATH);
  return available;
}

export type NarDumpFailure =
  | { code: 'E_UNSUPPORTED_FILE_TYPE'; message: string; path: string }
  | { code: 'E_FILE_CHANGED'; message: string; path: string; expected: number; got: number };

export type NarDumpOutcome =
  | { ok: true; narSize: number }
  | { ok: false; failure: NarDumpFailure }
  | { ok: false; unavailable: string; exitCode?: number };

const UNSUPPORTED = /^E_UNSUPPORTED_FILE_TYPE (cannot serialise '(.*)': unsupported file type \(not a file, directory or symlink\))\n$/s;
const CHANGED = /^E_FILE_CHANGED (file '(.*)' changed while being read: expected (\d+) bytes, got (\d+))\n$/s;

/** The serialiser's own failure from its stderr, if that is what it reported. */
export function parseFailure(stderr: string): NarDumpFailure | null {
  let m = UNSUPPORTED.exec(stderr);
  if (m) return { code: 'E_UNSUPPORTED_FILE_TYPE', message: m[1]!, path: m[2]! };
  m = CHANGED.exec(stderr);
  if (m) return { code: 'E_FILE_CHANGED', message: m[1]!, path: m[2]!, expected: Number(m[3]), got: Number(m[4]) };
  return null;
}

export type NarHashOutcome = { ok: true; digest: Buffer; narSize: number } | { ok: false; failure: NarDumpFailure } | { ok: false; unavailable: string };

/** Algorithms the program found no libcrypto for (exit 3): not asked again in this process. */
const noCrypto = new Set<string>();

/** Hashes the NAR of `path` in the program (`--hash`); `unavailable` also when libcrypto is not there. */
export function hashNarDump(path: string, algo: 'md5' | 'sha1' | 'sha256' | 'sha512'): Promise<NarHashOutcome> {
  if (noCrypto.has(algo)) return Promise.resolve({ ok: false, unavailable: `no libcrypto ${algo} for ${NAR_DUMP_PATH}` });
  const out: Buffer[] = [];
  return run(path, ['--hash', algo], (c) => void out.push(c)).then((r) => {
    if (!r.ok) {
      if ('unavailable' in r && r.exitCode === 3) noCrypto.add(algo);
      return r;
    }
    const m = /^([0-9a-f]+) (\d+)\n$/.exec(Buffer.concat(out).toString('latin1'));
    if (!m) return { ok: false, unavailable: `${NAR_DUMP_PATH} --hash printed something else` };
    return { ok: true, digest: Buffer.from(m[1]!, 'hex'), narSize: Number(m[2]) };
  });
}

/** Longest stderr kept: the program prints one line. */
const STDERR_KEEP = 64 * 1024;

/**
 * Streams the NAR of `path` (not following a top-level symlink) into `sink`.
 * Chunks are fresh Buffers that `sink` may keep; the NAR is never held whole.
 */
export function runNarDump(path: string, sink: (chunk: Buffer) => void): Promise<NarDumpOutcome> {
  return run(path, [], sink);
}

function run(path: string, options: string[], sink: (chunk: Buffer) => void): Promise<NarDumpOutcome> {
  if (!narDumpAvailable()) return Promise.resolve({ ok: false, unavailable: `'${NAR_DUMP_PATH}' is not built` });
  return new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn(NAR_DUMP_PATH, [...options, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      // e.g. a NUL byte in the path: the JS serialiser reports it its own way
      resolve({ ok: false, unavailable: (e as Error).message });
      return;
    }
    let narSize = 0;
    let sinkError: unknown = null;
    const err: Buffer[] = [];
    let errLen = 0;
    let settled = false;
    const settle = (o: NarDumpOutcome): void => {
      if (!settled) {
        settled = true;
        resolve(o);
      }
    };
    child.stdout.on('data', (c: Buffer) => {
      if (sinkError !== null) return;
      try {
        sink(c);
        narSize += c.length;
      } catch (e) {
        sinkError = e;
        child.kill();
      }
    });
    child.stderr.on('data', (c: Buffer) => {
      if (errLen < STDERR_KEEP) {
        err.push(c);
        errLen += c.length;
      }
    });
    child.on('error', (e) => settle({ ok: false, unavailable: e.message }));
    child.on('close', (code, signal) => {
      if (sinkError !== null) return reject(sinkError); // the sink's own failure: not a reason to retry
      if (code === 0) return settle({ ok: true, narSize });
      const stderr = Buffer.concat(err).toString('utf8');
      const failure = code === 1 ? parseFailure(stderr) : null;
      if (failure) return settle({ ok: false, failure });
      settle({
        ok: false,
        unavailable: `${NAR_DUMP_PATH} ${signal ? `killed by ${signal}` : `exited with ${code}`}: ${stderr.trim()}`,
        ...(code !== null ? { exitCode: code } : {}),
      });
    });
  });
}
