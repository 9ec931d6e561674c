// The native NAR serialiser (src/native/nar-dump.c) against the JS one
// (dumpPath) byte for byte, and against nix-hash. Linux only: that is where
// `npm run build` compiles it; the tests fail (not skip) if it was not built.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { NAR_DUMP_PATH, narDumpAvailable, parseFailure, runNarDump, type NarDumpOutcome } from '../../src/native/nar-dump.js';
import { dumpPath, FileChangedWhileReading, hashPath, UnsupportedFileType } from '../../src/store/nar-fs.js';
import { formatHash } from '../../src/format/hash.js';
import { arbTree, materialise } from '../fixtures/nars/trees.js';
import { requireTool } from '../helpers/host.js';
import { tempDir } from '../helpers/tmp.js';

function requireNarDump(): void {
  if (!narDumpAvailable()) {
    throw new Error(`cannot run on this host: the native NAR serialiser '${NAR_DUMP_PATH}' was not built (a C compiler and 'npm run build')`);
  }
}

async function jsBytes(path: string): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of dumpPath(path)) parts.push(c);
  return Buffer.concat(parts);
}

/**
 * The program's output. `ahead`: the walker reads every file ahead
 * (DRVBOX_NAR_DUMP_AHEAD=all), the path it otherwise takes only when it is
 * ahead of the copier, which depends on timing.
 */
async function nativeBytes(path: string, ahead = false): Promise<{ out: NarDumpOutcome; bytes: Buffer }> {
  const parts: Buffer[] = [];
  if (ahead) process.env.DRVBOX_NAR_DUMP_AHEAD = 'all';
  let run: Promise<NarDumpOutcome>;
  try {
    run = runNarDump(path, (c) => parts.push(c)); // spawns now, with this environment
  } finally {
    delete process.env.DRVBOX_NAR_DUMP_AHEAD;
  }
  const out = await run;
  return { out, bytes: Buffer.concat(parts) };
}

const MODES = [false, true] as const;
const modeName = (ahead: boolean): string => (ahead ? 'read ahead' : 'as it comes');

async function jsError(path: string): Promise<Error> {
  try {
    await jsBytes(path);
  } catch (e) {
    return e as Error;
  }
  throw new Error(`the JS serialiser accepted ${path}`);
}

/** nix-hash of `path` with nothing of the caller's environment (it needs no store). */
function nixHash(path: string, home: string): string {
  requireTool('nix-hash', 'Nix 2.8');
  const r = spawnSync('nix-hash', ['--type', 'sha256', '--base32', path], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: home, NIX_CONF_DIR: home },
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

/** Every kind of node and name the serialiser has to get right, plus enough small files to fill its ring. */
function makeFixedTree(root: string): void {
  mkdirSync(root);
  mkdirSync(join(root, 'a/b/c'), { recursive: true });
  mkdirSync(join(root, 'empty dir'));
  writeFileSync(join(root, 'a/b/c/deep'), 'deep\n');
  writeFileSync(join(root, 'empty-file'), '');
  for (const [name, mode] of [
    ['m644', 0o644],
    ['m755', 0o755],
    ['m700', 0o700],
    ['m100', 0o100],
    ['m010', 0o010], // group x only: not executable for Nix
    ['m001', 0o001],
  ] as const) {
    writeFileSync(join(root, name), `mode ${name}\n`);
    chmodSync(join(root, name), mode);
  }
  writeFileSync(join(root, 'name with spaces'), 'spaces\n');
  writeFileSync(join(root, 'ünïcödé ✓ 𝄞'), 'unicode\n');
  writeFileSync(Buffer.from([...Buffer.from(join(root, 'high-')), 0xff, 0xfe, 0x80, 0x41]), 'not UTF-8\n');
  writeFileSync(join(root, 'A-upper'), 'sorts before lower case\n');
  symlinkSync('a/b', join(root, 'link-to-dir'));
  symlinkSync('/nonexistent/dangling', join(root, 'link-dangling'));
  symlinkSync('m644', join(root, 'link-to-file'));
  // 3 MiB + 5: crosses the 256 KiB output buffer and read size; 100 KiB: above the read-ahead limit
  const big = Buffer.alloc((3 << 20) + 5);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131 + (i >> 12)) & 0xff;
  writeFileSync(join(root, 'big'), big);
  writeFileSync(join(root, 'medium'), big.subarray(0, 100 * 1024 + 3));
  // 20 x 40 small files of varying sizes: more than the 256 items the walker may run ahead
  for (let d = 0; d < 20; d++) {
    mkdirSync(join(root, 'many', `d${d}`), { recursive: true });
    for (let f = 0; f < 40; f++) writeFileSync(join(root, 'many', `d${d}`, `f${f}`), `file ${d}/${f}\n`.repeat((d + f) % 13));
  }
}

describe('native NAR serialiser (Linux)', () => {
  test('fixed tree: the same bytes as dumpPath, and hashPath equals nix-hash', async (t) => {
    requireNarDump();
    const d = tempDir(t);
    const root = join(d, 'tree');
    makeFixedTree(root);
    const want = await jsBytes(root);
    for (const ahead of MODES) {
      const { out, bytes } = await nativeBytes(root, ahead);
      assert.deepEqual(out, { ok: true, narSize: want.length }, modeName(ahead));
      assert.equal(bytes.length, want.length, modeName(ahead));
      assert.ok(bytes.equals(want), `native NAR (${modeName(ahead)}) differs from the JS one`);
    }
    const { hash, narSize } = await hashPath(root);
    assert.equal(narSize, want.length);
    assert.equal(formatHash(hash, 'nix32', false), nixHash(root, d));
    assert.equal(Buffer.from(hash.digest).toString('hex'), createHash('sha256').update(want).digest('hex'));
  });

  test('generated trees (raw byte names, exec bits, symlinks, empty dirs): the same bytes as dumpPath', async (t) => {
    requireNarDump();
    const d = tempDir(t);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(arbTree({ rawNames: true, maxEntries: 8, maxFile: 2000 }), async (tree) => {
        const root = join(d, `t${n++}`);
        materialise(root, tree);
        const want = await jsBytes(root);
        for (const ahead of MODES) {
          const { out, bytes } = await nativeBytes(root, ahead);
          assert.deepEqual(out, { ok: true, narSize: want.length });
          assert.ok(bytes.equals(want), `native NAR (${modeName(ahead)}) of ${root} differs from the JS one`);
        }
      }),
      { numRuns: 40 },
    );
  });

  test('top-level symlink and top-level file are dumped, not followed', async (t) => {
    requireNarDump();
    const d = tempDir(t);
    mkdirSync(join(d, 'dir'));
    writeFileSync(join(d, 'dir/x'), 'x\n');
    symlinkSync('dir', join(d, 'link'));
    writeFileSync(join(d, 'file'), 'a file\n');
    chmodSync(join(d, 'file'), 0o755);
    for (const p of [join(d, 'link'), join(d, 'file')]) {
      const want = await jsBytes(p);
      for (const ahead of MODES) {
        const { out, bytes } = await nativeBytes(p, ahead);
        assert.deepEqual(out, { ok: true, narSize: want.length });
        assert.ok(bytes.equals(want), `native NAR (${modeName(ahead)}) of ${p} differs`);
      }
      assert.equal(formatHash((await hashPath(p)).hash, 'nix32', false), nixHash(p, d));
    }
    assert.ok((await jsBytes(join(d, 'link'))).includes(Buffer.from('symlink')), 'the link itself was dumped');
  });

  test('a fifo in the tree: the same UnsupportedFileType, message and fields as the JS serialiser', async (t) => {
    requireNarDump();
    requireTool('mkfifo', 'coreutils');
    const d = tempDir(t);
    const root = join(d, 'tree');
    mkdirSync(join(root, 'sub'), { recursive: true });
    writeFileSync(join(root, 'a-first'), 'before the fifo\n');
    const fifo = join(root, 'sub', "the 'fifo'");
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    writeFileSync(join(root, 'z-last'), 'after the fifo\n');
    // enough entries for hashPath to use the program (it keeps small trees in JS)
    for (let i = 0; i < 300; i++) writeFileSync(join(root, 'sub', `f${i}`), `${i}\n`);
    const js = await jsError(root);
    assert.ok(js instanceof UnsupportedFileType);
    const { out } = await nativeBytes(root);
    assert.deepEqual(out, { ok: false, failure: { code: 'E_UNSUPPORTED_FILE_TYPE', message: js.message, path: fifo } });
    await assert.rejects(hashPath(root), (e: unknown) => {
      assert.ok(e instanceof UnsupportedFileType);
      assert.equal(e.message, `cannot serialise '${fifo}': unsupported file type (not a file, directory or symlink)`);
      assert.equal(e.message, js.message);
      assert.deepEqual(e.toJSON(), (js as UnsupportedFileType).toJSON());
      return true;
    });
  });

  test('a file shorter than its size (sysfs): the same FileChangedWhileReading as the JS serialiser', async () => {
    requireNarDump();
    const dir = '/sys/kernel/mm/transparent_hugepage';
    if (!existsSync(dir)) throw new Error(`cannot run on this host: ${dir} is missing (its files claim 4096 bytes and hold fewer)`);
    const js = await jsError(dir);
    assert.ok(js instanceof FileChangedWhileReading, `JS: ${js.message}`);
    assert.match(js.message, /^file '\/sys\/kernel\/mm\/transparent_hugepage\/[^']+' changed while being read: expected 4096 bytes, got \d+$/);
    for (const ahead of MODES) {
      const { out } = await nativeBytes(dir, ahead);
      assert.ok(!out.ok && 'failure' in out, JSON.stringify(out));
      assert.equal(out.failure.code, 'E_FILE_CHANGED');
      assert.equal(out.failure.message, js.message, modeName(ahead));
    }
    await assert.rejects(hashPath(dir), (e: unknown) => {
      assert.ok(e instanceof FileChangedWhileReading);
      assert.deepEqual(e.toJSON(), (js as FileChangedWhileReading).toJSON());
      return true;
    });
    // the same for a top-level file
    const first = join(dir, readdirSync(dir).sort()[0]!);
    const jsFile = await jsError(first);
    for (const ahead of MODES) {
      const native = await nativeBytes(first, ahead);
      assert.ok(!native.out.ok && 'failure' in native.out);
      assert.equal(native.out.failure.message, jsFile.message);
    }
  });

  test('a path that does not exist: the program reports a system error; hashPath throws the JS error', async (t) => {
    requireNarDump();
    const d = tempDir(t);
    const missing = join(d, 'missing');
    const { out, bytes } = await nativeBytes(missing);
    assert.equal(bytes.length, 0);
    assert.ok(!out.ok && 'unavailable' in out);
    assert.match(out.unavailable, /exited with 1: E_SYSTEM errno=2 lstat .*\/missing: No such file or directory$/);
    const js = await jsError(missing);
    await assert.rejects(hashPath(missing), (e: unknown) => {
      assert.equal((e as NodeJS.ErrnoException).code, 'ENOENT');
      assert.equal((e as Error).message, js.message);
      return true;
    });
  });

  test('a reader that goes away: the program exits without a word', async (t) => {
    requireNarDump();
    const d = tempDir(t);
    const root = join(d, 'tree');
    makeFixedTree(root);
    const r = spawnSync('sh', ['-c', '"$0" "$1" | head -c 100 >/dev/null', NAR_DUMP_PATH, root], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    assert.equal(r.stderr, '');
  });

  test('usage: a path, optionally after --hash ALGO', () => {
    requireNarDump();
    for (const args of [[], ['--hash', 'sha256'], ['a', 'b'], ['--hash']]) {
      const r = spawnSync(NAR_DUMP_PATH, args, { encoding: 'utf8' });
      assert.equal(r.status, 2, args.join(' '));
      assert.equal(r.stderr, 'usage: drvbox-nar-dump [--hash md5|sha1|sha256|sha512] PATH\n');
    }
  });

  test('--hash ALGO: the digest and NAR size, as nix-hash and the NAR itself give; an unknown algorithm exits 3', async (t) => {
    requireNarDump();
    requireTool('nix-hash', 'Nix 2.8');
    const d = tempDir(t);
    const root = join(d, 'tree');
    makeFixedTree(root);
    const want = await jsBytes(root);
    for (const algo of ['md5', 'sha1', 'sha256', 'sha512']) {
      const r = spawnSync(NAR_DUMP_PATH, ['--hash', algo, root], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const nix = spawnSync('nix-hash', ['--type', algo, root], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: d, NIX_CONF_DIR: d } });
      assert.equal(nix.status, 0, nix.stderr);
      assert.equal(r.stdout, `${nix.stdout.trim()} ${want.length}\n`, algo);
      assert.equal(r.stdout.split(' ')[0], createHash(algo).update(want).digest('hex'));
    }
    const bad = spawnSync(NAR_DUMP_PATH, ['--hash', 'sha3-999', root], { encoding: 'utf8' });
    assert.equal(bad.status, 3);
    assert.equal(bad.stdout, '');
    assert.equal(bad.stderr, 'E_NO_CRYPTO no usable sha3-999 in libcrypto\n');
    // The serialiser's own failures keep their form in --hash mode.
    const fifo = join(d, 'fifo-tree');
    mkdirSync(fifo);
    spawnSync('mkfifo', [join(fifo, 'p')]);
    const f = spawnSync(NAR_DUMP_PATH, ['--hash', 'sha256', fifo], { encoding: 'utf8' });
    assert.equal(f.status, 1);
    assert.equal(f.stderr, `E_UNSUPPORTED_FILE_TYPE cannot serialise '${fifo}/p': unsupported file type (not a file, directory or symlink)\n`);
  });
});

describe('parseFailure', () => {
  test('typed failures, whatever the path holds; anything else is not one', () => {
    const odd = "/t/it's: a\nname";
    assert.deepEqual(parseFailure(`E_UNSUPPORTED_FILE_TYPE cannot serialise '${odd}': unsupported file type (not a file, directory or symlink)\n`), {
      code: 'E_UNSUPPORTED_FILE_TYPE',
      message: `cannot serialise '${odd}': unsupported file type (not a file, directory or symlink)`,
      path: odd,
    });
    assert.deepEqual(parseFailure(`E_FILE_CHANGED file '${odd}' changed while being read: expected 4096 bytes, got 12\n`), {
      code: 'E_FILE_CHANGED',
      message: `file '${odd}' changed while being read: expected 4096 bytes, got 12`,
      path: odd,
      expected: 4096,
      got: 12,
    });
    assert.equal(parseFailure('E_SYSTEM errno=13 scandir /x: Permission denied\n'), null);
    assert.equal(parseFailure(''), null);
    assert.equal(parseFailure("E_FILE_CHANGED file '/x' changed while being read: expected 1 bytes, got 0"), null); // no newline: cut short
  });
});
