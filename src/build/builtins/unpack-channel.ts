// builtin:unpack-channel: unpacks the tarball `src` into `$out` and renames
// its single top-level entry to `channelName` (how nix-channel builds a
// channel). The host's `tar` does the unpacking (it detects gzip, bzip2
// and xz itself); Node has no tar reader.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { BuiltinFailed } from '../errors-run.js';
import { requireAttr, type BuiltinContext } from './index.js';

export async function builtinUnpackChannel(ctx: BuiltinContext): Promise<void> {
  const out = ctx.realPath(requireAttr(ctx, 'out'));
  const channelName = requireAttr(ctx, 'channelName');
  const srcAttr = requireAttr(ctx, 'src');
  const src = srcAttr.startsWith('/') ? (() => {
    try {
      return ctx.realPath(srcAttr);
    } catch {
      return srcAttr;
    }
  })() : srcAttr;
  mkdirSync(out, { recursive: true });
  const code = await new Promise<number | null>((resolve, reject) => {
    const p = spawn('tar', ['-xf', src, '-C', out], { stdio: ['ignore', 'pipe', 'pipe'], signal: ctx.signal });
    p.stdout.on('data', (c: Buffer) => ctx.log.write(c));
    p.stderr.on('data', (c: Buffer) => ctx.log.write(c));
    p.once('error', (e) => reject(new BuiltinFailed(`unpacking '${srcAttr}': cannot run tar: ${e.message}`, { drvPath: ctx.drvPath })));
    p.once('close', resolve);
  });
  if (code !== 0) throw new BuiltinFailed(`unpacking '${srcAttr}': tar exited with ${code}`, { drvPath: ctx.drvPath, src: srcAttr });
  const entries = readdirSync(out);
  if (entries.length !== 1) {
    throw new BuiltinFailed(`channel tarball '${srcAttr}' contains more than one file`, { drvPath: ctx.drvPath, src: srcAttr });
  }
  renameSync(join(out, entries[0]!), join(out, channelName));
}
