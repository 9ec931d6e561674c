// builtin:fetchurl: downloads `url` to `$out` (file://, http://, https://),
// streaming to disk. `unpack = "1"`: the download is a NAR, restored at
// `$out` (Nix also accepts `.nar.xz`; Node has no xz decoder, so that is
// refused with a clear message). `executable = "1"`: mode 0755. TLS
// certificates are not checked by Nix here either: the output hash is.
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
  if (unpack && url.endsWith('.xz')) {
    throw new BuiltinFailed(`cannot unpack '${url}': xz-compressed NARs are not supported by drvbox's builtin:fetchurl`, { drvPath: ctx.drvPath, url });
  }
  ctx.log.note(`downloading '${url}'...`);
  const src = await open(ctx, url);
  if (unpack) {
    await restoreNar(out, src as AsyncIterable<Uint8Array>);
  } else {
    await pipeline(src, createWriteStream(out, { flags: 'wx', mode: 0o644 }), { signal: ctx.signal });
  }
  if (ctx.env.get('executable') === '1') chmodSync(out, 0o755);
}
