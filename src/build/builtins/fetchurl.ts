// builtin:fetchurl: downloads `url` to `$out` (file://, http://, https://),
// streaming to disk. `unpack = "1"`: the download is a NAR, restored at
// `$out`; when the URL ends in `.xz` it is an xz-compressed NAR, as in Nix,
// which the host's `xz` decompresses (Node has no xz decoder; unpack-channel
// relies on the host's tar the same way). `executable = "1"`: mode 0755. TLS
// certificates are not checked by Nix here either: the output hash is.
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, chmodSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { restoreNar } from '../../store/nar-fs.js';
import { BuiltinFailed } from '../errors-run.js';
import { requireAttr, type BuiltinContext } from './index.js';

async function open(ctx: BuiltinContext, url: string): Promise<Readable> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BuiltinFailed(`unable to download '${url}': not a valid URL`, { drvPath: ctx.drvPath, url });
  }
  if (u.protocol === 'file:') {
    const path = fileURLToPath(u);
    const s = createReadStream(path);
    // Surface ENOENT and friends before anything is written.
    await new Promise<void>((resolve, reject) => {
      s.once('open', () => resolve());
      s.once('error', (e) =>
        reject(new BuiltinFailed(`unable to download '${url}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? "Couldn't read a file:// file" : e.message} (37)`, { drvPath: ctx.drvPath, url })),
      );
    });
    return s;
  }
  if (u.protocol === 'http:' || u.protocol === 'https:') {
    let res: Response;
    try {
      res = await fetch(u, { signal: ctx.signal, redirect: 'follow' });
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
      throw new BuiltinFailed(`unable to download '${url}': ${cause}`, { drvPath: ctx.drvPath, url });
    }
    if (!res.ok || !res.body) {
      throw new BuiltinFailed(`unable to download '${url}': HTTP error ${res.status}`, { drvPath: ctx.drvPath, url, status: res.status });
    }
    return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  }
  throw new BuiltinFailed(`unable to download '${url}': unsupported protocol '${u.protocol.replace(/:$/, '')}'`, { drvPath: ctx.drvPath, url });
}

export async function builtinFetchurl(ctx: BuiltinContext): Promise<void> {
  const out = ctx.realPath(requireAttr(ctx, 'out'));
  const url = requireAttr(ctx, 'url');
  const unpack = ctx.env.get('unpack') === '1';
  ctx.log.note(`downloading '${url}'...`);
  const src = await open(ctx, url);
  if (unpack && url.endsWith('.xz')) {
    await restoreThroughXz(ctx, url, src, out);
  } else if (unpack) {
    await restoreNar(out, src as AsyncIterable<Uint8Array>);
  } else {
    await pipeline(src, createWriteStream(out, { flags: 'wx', mode: 0o644 }), { signal: ctx.signal });
  }
  if (ctx.env.get('executable') === '1') chmodSync(out, 0o755);
}

/** How much of xz's stderr a failure quotes. */
const XZ_STDERR_MAX = 4096;

/**
 * Restores the xz-compressed NAR `src` at `out`, streaming through `xz -dc`.
 * When xz fails, its message is the error, even though the restore sees it
 * first as a NAR cut short; when the NAR itself is bad, xz is stopped and
 * the NAR error stands.
 */
async function restoreThroughXz(ctx: BuiltinContext, url: string, src: Readable, out: string): Promise<void> {
  const fail = (why: string) => new BuiltinFailed(`cannot unpack '${url}': ${why}`, { drvPath: ctx.drvPath, url });
  const xz = spawn('xz', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'], signal: ctx.signal });
  let stderr = '';
  xz.stderr.setEncoding('utf8');
  xz.stderr.on('data', (c: string) => {
    if (stderr.length < XZ_STDERR_MAX) stderr += c.slice(0, XZ_STDERR_MAX - stderr.length);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    xz.once('error', (error) => resolve({ code: null, signal: null, error }));
    xz.once('close', (code, signal) => resolve({ code, signal }));
  });
  // xz stopping early ends its stdin with EPIPE: its exit status says why.
  const feeding = pipeline(src, xz.stdin).catch(() => {});
  const xzFailure = async (): Promise<BuiltinFailed | null> => {
    const r = await exited;
    if (r.error) {
      if (ctx.signal.aborted) throw r.error;
      return (r.error as NodeJS.ErrnoException).code === 'ENOENT'
        ? fail(`an xz-compressed NAR needs the 'xz' program, which is not on drvbox's PATH (${r.error.message})`)
        : fail(`cannot run xz: ${r.error.message}`);
    }
    if (r.code === 0) return null;
    const said = stderr.trim().split('\n')[0] ?? '';
    return fail(`xz failed with ${r.signal ? `signal ${r.signal}` : `exit code ${r.code}`}${said ? `: ${said}` : ''}`);
  };
  try {
    await restoreNar(out, xz.stdout as AsyncIterable<Uint8Array>);
  } catch (e) {
    if (ctx.signal.aborted) throw e;
    // Cut short: xz ended (or never started), so its status explains the NAR error.
    const cutShort = xz.pid === undefined || xz.stdout.readableEnded;
    if (!cutShort) xz.kill();
    src.destroy();
    const x = await xzFailure();
    await feeding;
    throw cutShort && x ? x : e;
  }
  const x = await xzFailure();
  await feeding;
  if (x) throw x;
}
