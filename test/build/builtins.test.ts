// Builtin builders run in-process: fetchurl (file:// and http:// against a
// server on 127.0.0.1), buildenv, unpack-channel.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFileSync, createWriteStream, lstatSync, mkdirSync, readFileSync, readlinkSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { DraftOutput } from '../../src/format/derivation.js';
import { buildTargets } from '../../src/build/scheduler.js';
import { addDrv, Recorder, realStore, settings } from './engine-fixture.js';
import { requireTool } from '../helpers/host.js';

function fixed(content: Buffer | string, method: 'flat' | 'recursive' = 'flat', narHash?: Buffer): Map<string, DraftOutput> {
  const digest = narHash ?? createHash('sha256').update(content).digest();
  return new Map([['out', { kind: 'caFixed', method, hash: { algo: 'sha256', digest } }]]);
}

async function build(store: Awaited<ReturnType<typeof realStore>>, drvPath: string) {
  const rec = new Recorder();
  const r = await buildTargets([{ arg: drvPath, drvPath, outputs: null }], {
    store: store.store,
    settings: settings(store.buildDir),
    mode: 'normal',
    keepGoing: false,
    reporter: rec,
  });
  return { r, rec };
}

describe('builtin:fetchurl', () => {
  test('file:// URL, executable (recursive hash, as nixpkgs fetches executables)', async (t) => {
    const s = await realStore(t);
    const src = join(s.dir, 'payload.sh');
    writeFileSync(src, '#!/bin/sh\necho payload\n', { mode: 0o755 });
    const { hashPath } = await import('../../src/store/nar-fs.js');
    const nar = (await hashPath(src)).hash;
    const d = await addDrv(s.store, {
      name: 'payload.sh',
      builder: 'builtin:fetchurl',
      system: 'builtin',
      args: [],
      outputs: fixed('', 'recursive', Buffer.from(nar.digest)),
      env: { url: `file://${src}`, executable: '1' },
    });
    const { r, rec } = await build(s, d.drvPath);
    assert.equal(r.exitCode, 0, rec.finished_.map((f) => f.error?.message).join());
    const out = r.targets[0]!.outputs.get('out')!;
    assert.equal(readFileSync(s.store.toRealPath(out), 'utf8'), '#!/bin/sh\necho payload\n');
    assert.equal(statSync(s.store.toRealPath(out)).mode & 0o777, 0o555);
    assert.match(rec.output.get(d.drvPath) ?? '', new RegExp(`downloading 'file://${src}'`));
  });

  test('http:// from 127.0.0.1; a 404 fails like a builder (exit 1 in the log, nix-build status 1 for fixed outputs)', async (t) => {
    const s = await realStore(t);
    const body = Buffer.alloc(300_000, 7);
    const server = createServer((req, res) => {
      if (req.url === '/file.bin') {
        res.writeHead(200, { 'content-length': body.length });
        res.end(body);
      } else {
        res.writeHead(404);
        res.end('no');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => server.close());
    const port = (server.address() as AddressInfo).port;
    const ok = await addDrv(s.store, {
      name: 'file.bin',
      builder: 'builtin:fetchurl',
      system: 'builtin',
      args: [],
      outputs: fixed(body),
      env: { url: `http://127.0.0.1:${port}/file.bin` },
    });
    const { r } = await build(s, ok.drvPath);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(readFileSync(s.store.toRealPath(r.targets[0]!.outputs.get('out')!)), body);

    const missing = await addDrv(s.store, {
      name: 'missing.bin',
      builder: 'builtin:fetchurl',
      system: 'builtin',
      args: [],
      outputs: fixed('x'),
      env: { url: `http://127.0.0.1:${port}/missing.bin` },
    });
    const bad = await build(s, missing.drvPath);
    assert.equal(bad.r.exitCode, 1);
    assert.equal(bad.rec.finished_[0]!.error!.message, `builder for '${missing.drvPath}' failed with exit code 1`);
    assert.deepEqual(bad.rec.finished_[0]!.logTail.slice(-1), [`error: unable to download 'http://127.0.0.1:${port}/missing.bin': HTTP error 404`]);
  });

  /** A tree, its NAR at DIR/tree.nar (and .nar.xz with `xz`), and a fetchurl unpack of `file` in the store. */
  async function narFixture(t: import('node:test').TestContext) {
    const s = await realStore(t);
    const tree = join(s.dir, 'tree');
    mkdirSync(join(tree, 'bin'), { recursive: true });
    writeFileSync(join(tree, 'bin', 'run'), '#!/bin/sh\necho run\n', { mode: 0o755 });
    // Big enough for several xz blocks of output and pipe buffers.
    writeFileSync(join(tree, 'data'), Buffer.alloc(3 << 20, 'abc'));
    const { dumpPath, hashPath } = await import('../../src/store/nar-fs.js');
    const nar = join(s.dir, 'tree.nar');
    await pipeline(Readable.from(dumpPath(tree)), createWriteStream(nar));
    const { hash } = await hashPath(tree);
    const drv = (file: string) =>
      addDrv(s.store, {
        name: 'tree',
        builder: 'builtin:fetchurl',
        system: 'builtin',
        args: [],
        outputs: fixed('', 'recursive', Buffer.from(hash.digest)),
        env: { url: `file://${join(s.dir, file)}`, unpack: '1' },
      });
    return { s, nar, drv };
  }

  test('unpack = "1": the download is a NAR, restored as the output', async (t) => {
    const { s, drv } = await narFixture(t);
    const d = await drv('tree.nar');
    const { r, rec } = await build(s, d.drvPath);
    assert.equal(r.exitCode, 0, rec.finished_.map((f) => f.error?.message).join());
    const out = s.store.toRealPath(r.targets[0]!.outputs.get('out')!);
    assert.equal(readFileSync(join(out, 'bin', 'run'), 'utf8'), '#!/bin/sh\necho run\n');
    assert.equal(statSync(join(out, 'data')).size, 3 << 20);
  });

  test('unpack = "1" of a .xz URL: the download is an xz-compressed NAR (as Nix 2.8), decompressed by the host\'s xz', async (t) => {
    requireTool('xz', 'apt-get install -y xz-utils');
    const { s, nar, drv } = await narFixture(t);
    assert.equal(spawnSync('xz', ['-k', nar]).status, 0);
    const d = await drv('tree.nar.xz');
    const { r, rec } = await build(s, d.drvPath);
    assert.equal(r.exitCode, 0, rec.finished_.map((f) => f.error?.message).join());
    const out = s.store.toRealPath(r.targets[0]!.outputs.get('out')!);
    assert.equal(readFileSync(join(out, 'bin', 'run'), 'utf8'), '#!/bin/sh\necho run\n');
    assert.equal(statSync(join(out, 'bin', 'run')).mode & 0o777, 0o555);
    assert.equal(statSync(join(out, 'data')).size, 3 << 20);
  });

  test('unpack of a .xz URL that is not xz: the build fails with xz\'s own message', async (t) => {
    requireTool('xz', 'apt-get install -y xz-utils');
    const { s, nar, drv } = await narFixture(t);
    copyFileSync(nar, nar + '.xz');
    const d = await drv('tree.nar.xz');
    const { r, rec } = await build(s, d.drvPath);
    assert.equal(r.exitCode, 1);
    assert.equal(rec.finished_[0]!.error!.message, `builder for '${d.drvPath}' failed with exit code 1`);
    assert.deepEqual(rec.finished_[0]!.logTail.slice(-1), [
      `error: cannot unpack 'file://${nar}.xz': xz failed with exit code 1: xz: (stdin): File format not recognized`,
    ]);
    assert.equal(s.store.isValidPath(r.targets[0]!.outputs.get('out')!), false);
  });

  test('unpack of good xz that is not a NAR: the NAR error, and xz is stopped', async (t) => {
    requireTool('xz', 'apt-get install -y xz-utils');
    const { s, nar, drv } = await narFixture(t);
    // Far more than a pipe holds: xz is still writing when the restore gives up.
    writeFileSync(nar, Buffer.alloc(64 << 20, 'x'));
    assert.equal(spawnSync('xz', ['-0', '-f', '-k', nar]).status, 0);
    const d = await drv('tree.nar.xz');
    const { r, rec } = await build(s, d.drvPath);
    assert.equal(r.exitCode, 1);
    assert.match(rec.finished_[0]!.logTail.at(-1)!, /^error: .*not a NAR/i);
    const xzLeft = spawnSync('pgrep', ['-f', `^xz -dc$`]).stdout.toString().trim();
    assert.equal(xzLeft, '');
  });

  test('unpack of a .xz URL without xz on PATH: the build fails saying what is missing', async (t) => {
    const { s, nar, drv } = await narFixture(t);
    writeFileSync(nar + '.xz', 'whatever');
    const d = await drv('tree.nar.xz');
    const empty = join(s.dir, 'empty-path');
    mkdirSync(empty);
    const path = process.env.PATH;
    process.env.PATH = empty;
    let res;
    try {
      res = await build(s, d.drvPath);
    } finally {
      process.env.PATH = path;
    }
    assert.equal(res.r.exitCode, 1);
    assert.deepEqual(res.rec.finished_[0]!.logTail.slice(-1), [
      `error: cannot unpack 'file://${nar}.xz': an xz-compressed NAR needs the 'xz' program, which is not on drvbox's PATH (spawn xz ENOENT)`,
    ]);
  });
});

describe('builtin:buildenv', () => {
  test('merges packages into a symlink tree by priority; directories shared by two become real; manifest.nix links to the manifest', async (t) => {
    const s = await realStore(t);
    const pkg = async (name: string, files: Record<string, string>) => {
      const script = Object.entries(files)
        .map(([f, c]) => `/usr/bin/busybox mkdir -p $out/$(/usr/bin/busybox dirname ${f}); echo ${c} > $out/${f}`)
        .join('; ');
      const d = await addDrv(s.store, { name, script });
      const { r } = await build(s, d.drvPath);
      assert.equal(r.exitCode, 0);
      return r.targets[0]!.outputs.get('out')!;
    };
    const a = await pkg('a', { 'bin/a': 'a', 'share/doc/x': 'from-a', 'lib/liba': 'a' });
    const b = await pkg('b', { 'bin/b': 'b', 'share/doc/x': 'from-b' });
    const manifest = await pkg('manifest', { 'm.nix': 'manifest' });
    const env = await addDrv(s.store, {
      name: 'user-environment',
      builder: 'builtin:buildenv',
      system: 'builtin',
      args: [],
      env: { derivations: `true 5 1 ${a} true 3 1 ${b} false 0 1 ${manifest}`, manifest },
      inputSrcs: [a, b, manifest],
    });
    const { r, rec } = await build(s, env.drvPath);
    assert.equal(r.exitCode, 0, rec.finished_.map((f) => f.error?.message + '\n' + f.logTail.join('\n')).join());
    const out = s.store.toRealPath(r.targets[0]!.outputs.get('out')!);
    assert.equal(readlinkSync(join(out, 'bin', 'a')), `${a}/bin/a`);
    assert.equal(readlinkSync(join(out, 'bin', 'b')), `${b}/bin/b`);
    assert.ok(lstatSync(join(out, 'bin')).isDirectory());
    // b has the better (lower) priority for the shared file.
    assert.equal(readlinkSync(join(out, 'share', 'doc', 'x')), `${b}/share/doc/x`);
    // Only in a: a link to the directory itself.
    assert.equal(readlinkSync(join(out, 'lib')), `${a}/lib`);
    assert.equal(readlinkSync(join(out, 'manifest.nix')), manifest);
    assert.deepEqual(readdirSync(out).sort(), ['bin', 'lib', 'manifest.nix', 'share']);
    assert.deepEqual(s.store.requirePathInfo(r.targets[0]!.outputs.get('out')!).references, [a, b, manifest].sort());
  });
});

describe('builtin:unpack-channel', () => {
  test('unpacks the tarball and names its single top directory after the channel', async (t) => {
    requireTool('tar', 'apt-get install tar');
    const s = await realStore(t);
    mkdirSync(join(s.dir, 'src', 'nixpkgs-123'), { recursive: true });
    writeFileSync(join(s.dir, 'src', 'nixpkgs-123', 'default.nix'), '{}');
    const tarball = join(s.dir, 'channel.tar.gz');
    assert.equal(spawnSync('tar', ['-czf', tarball, '-C', join(s.dir, 'src'), 'nixpkgs-123']).status, 0);
    const d = await addDrv(s.store, {
      name: 'nixpkgs',
      builder: 'builtin:unpack-channel',
      system: 'builtin',
      args: [],
      env: { src: tarball, channelName: 'nixpkgs' },
    });
    const { r, rec } = await build(s, d.drvPath);
    assert.equal(r.exitCode, 0, rec.finished_.map((f) => f.error?.message + '\n' + f.logTail.join('\n')).join());
    assert.equal(readFileSync(join(s.store.toRealPath(r.targets[0]!.outputs.get('out')!), 'nixpkgs', 'default.nix'), 'utf8'), '{}');
  });

  test('an unknown builtin fails like a builder, naming it', async (t) => {
    const s = await realStore(t);
    const d = await addDrv(s.store, { name: 'x', builder: 'builtin:frobnicate', system: 'builtin', args: [] });
    const { r, rec } = await build(s, d.drvPath);
    assert.equal(r.exitCode, 100);
    assert.deepEqual(rec.finished_[0]!.logTail, ["error: unsupported builtin builder 'frobnicate'"]);
  });
});
