// Differential tests of NAR dumping, hashing and restoring, and of the
// export stream, against Nix 2.8. `nix-hash` and `nix-store --dump` touch no
// store and run directly (with an isolated NIX_CONF_DIR all the same);
// everything that needs a store goes through the isolated oracle.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExportParser, exportStream, type ExportEvent } from '../../src/format/export-stream.js';
import { formatHash, parseHash } from '../../src/format/hash.js';
import type { NarEvent } from '../../src/format/nar.js';
import { NarWriter } from '../../src/format/nar-writer.js';
import { nix32Encode } from '../../src/format/nix32.js';
import { HashModuloSink } from '../../src/format/rewrite.js';
import { makeFixedOutputPath, parseStorePath } from '../../src/format/store-path.js';
import { dumpPath, hashFile, hashPath, NarRestorer, restoreNar } from '../../src/store/nar-fs.js';
import { requireTool } from '../helpers/host.js';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { tempDir, dropTempDir } from '../helpers/tmp.js';

async function collect(gen: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

function tool(env: NodeJS.ProcessEnv, cmd: string, args: string[], input?: Buffer): Buffer {
  const r = spawnSync(cmd, args, { env, input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${String(r.stderr).slice(-2000)}`);
  return r.stdout;
}

/** The tree the issue asks for: symlinks, executables, empty dirs, unicode names, 10,000 files. */
function makeBigTree(root: string): void {
  mkdirSync(root);
  mkdirSync(join(root, 'bin'));
  writeFileSync(join(root, 'bin', 'run'), '#!/bin/sh\nexec true\n');
  chmodSync(join(root, 'bin', 'run'), 0o755);
  writeFileSync(join(root, 'bin', 'not-exec'), 'data');
  chmodSync(join(root, 'bin', 'not-exec'), 0o644);
  mkdirSync(join(root, 'empty'));
  mkdirSync(join(root, 'nested', 'empty', 'deeper'), { recursive: true });
  mkdirSync(join(root, 'ünïcødé ✓ 日本語'));
  writeFileSync(join(root, 'ünïcødé ✓ 日本語', 'файл.txt'), 'unicode\n');
  writeFileSync(join(root, '\u{10000}'), 'astral');
  writeFileSync(join(root, '\ufffd'), 'replacement char');
  writeFileSync(Buffer.from([...Buffer.from(root + '/'), 0x6e, 0xff, 0xfe, 0x6f]), 'not utf-8 name');
  symlinkSync('bin/run', join(root, 'rel-link'));
  symlinkSync('/nonexistent/abs', join(root, 'dangling'));
  symlinkSync('ünïcødé ✓ 日本語', join(root, 'dir-link'));
  writeFileSync(join(root, 'big'), randomBytes(3 * 1024 * 1024 + 13));
  writeFileSync(join(root, 'empty-file'), '');
  for (let d = 0; d < 100; d++) {
    const sub = join(root, 'many', `d${d}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(join(sub, `f${f}`), `file ${d}/${f}\n`.repeat(f % 5));
  }
}

describe('NAR against nix-hash and nix-store --dump', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let tree: string;
  after(() => dropTempDir(dir));
  before(() => {
    requireTool('nix-hash', 'apt-get install -y nix-bin');
    dir = tempDir(null);
    env = nixOracle(dir).env;
    tree = join(dir, 'tree');
    makeBigTree(tree);
  });

  test('hashPath equals nix-hash --type sha256 --base32 (10,000 files, symlinks, executables, empty dirs, unicode and non-UTF-8 names)', async () => {
    const want = tool(env, 'nix-hash', ['--type', 'sha256', '--base32', tree]).toString().trim();
    const got = await hashPath(tree);
    assert.equal(nix32Encode(got.hash.digest), want);
    for (const algo of ['sha1', 'sha512', 'md5'] as const) {
      const w = tool(env, 'nix-hash', ['--type', algo, '--base32', join(tree, 'bin')]).toString().trim();
      assert.equal(nix32Encode((await hashPath(join(tree, 'bin'), algo)).hash.digest), w, algo);
    }
  });

  test('dumpPath is byte-identical to nix-store --dump', async () => {
    const want = tool(env, 'nix-store', ['--dump', tree]);
    const got = await collect(dumpPath(tree));
    assert.equal(got.length, want.length);
    assert.ok(got.equals(want), 'NAR bytes differ');
    assert.equal((await hashPath(tree)).narSize, want.length);
  });

  test('hashFile equals nix-hash --flat', async () => {
    for (const algo of ['sha256', 'sha1', 'md5', 'sha512'] as const) {
      const want = tool(env, 'nix-hash', ['--flat', '--type', algo, '--base32', join(tree, 'big')]).toString().trim();
      assert.equal(nix32Encode((await hashFile(join(tree, 'big'), algo)).digest), want, algo);
    }
  });

  test('restoreNar of Nix’s dump gives a tree Nix dumps identically', async () => {
    const nar = tool(env, 'nix-store', ['--dump', tree]);
    const out = join(dir, 'restored');
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < nar.length; i += 65536 + 7) pieces.push(nar.subarray(i, i + 65536 + 7));
    await restoreNar(out, pieces);
    assert.ok(tool(env, 'nix-store', ['--dump', out]).equals(nar));
  });

  test('Nix restores our dump (nix-store --restore) to a tree with the same hash', async () => {
    const nar = await collect(dumpPath(join(tree, 'ünïcødé ✓ 日本語')));
    const out = join(dir, 'nix-restored');
    tool(env, 'nix-store', ['--restore', out], nar);
    assert.equal(
      tool(env, 'nix-hash', ['--type', 'sha256', '--base32', out]).toString().trim(),
      nix32Encode((await hashPath(join(tree, 'ünïcødé ✓ 日本語'))).hash.digest),
    );
  });
});

describe('export stream against nix-store --export / --import', () => {
  let dir: string;
  let nix: NixOracle;
  after(() => dropTempDir(dir));
  before(() => {
    dir = tempDir(null);
    nix = nixOracle(dir);
  });

  function exportEntries(events: ExportEvent[]): Array<{ path: string; references: string[]; deriver: string | null; nar: NarEvent[] }> {
    const out: Array<{ path: string; references: string[]; deriver: string | null; nar: NarEvent[] }> = [];
    let nar: NarEvent[] = [];
    for (const e of events) {
      if (e.type === 'nar') nar.push(e.type === 'nar' && e.event.type === 'contents' ? { type: 'contents', data: new Uint8Array(e.event.data) } : e.event);
      if (e.type === 'pathEnd') {
        out.push({ path: e.path, references: e.references, deriver: e.deriver, nar });
        nar = [];
      }
    }
    return out;
  }

  test('parses what nix-store --export writes: a closure with references', async () => {
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'a'), 'a\n');
    symlinkSync('a', join(src, 'l'));
    const added = nix.run('nix-store', ['--add', src]).stdout.toString().trim();
    const [drv] = nix.instantiate(
      // \${<path literal>} copies the directory into the store, as nix-store --add did.
      `derivation { name = "export-me"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "cat \${${src}}/a \${builtins.toFile "note.txt" "hello"} > $out" ]; }`,
    );
    assert.ok(drv);
    const closure = nix.run('nix-store', ['-qR', drv!]).stdout.toString().trim().split('\n');
    const stream = nix.run('nix-store', ['--export', ...closure]).stdout;
    const p = new ExportParser('/nix/store');
    const events: ExportEvent[] = [];
    for (let i = 0; i < stream.length; i += 1000) events.push(...p.push(stream.subarray(i, i + 1000)));
    p.finish();
    const entries = exportEntries(events);
    assert.deepEqual(entries.map((e) => e.path), closure);
    for (const e of entries) {
      const refs = nix.run('nix-store', ['-q', '--references', e.path]).stdout.toString().trim().split('\n').filter(Boolean);
      assert.deepEqual([...e.references].sort(), refs.sort(), e.path);
      const narHash = nix.run('nix-store', ['-q', '--hash', e.path]).stdout.toString().trim();
      const bytes = NarWriter.encodeAll(e.nar);
      assert.equal(formatHash({ algo: 'sha256', digest: createHash('sha256').update(bytes).digest() }), narHash, e.path);
    }
    // The added tree's NAR is exactly what we dump from the source.
    const addedEntry = entries.find((e) => e.path === added)!;
    assert.ok(Buffer.from(NarWriter.encodeAll(addedEntry.nar)).equals(await collect(dumpPath(src))));
    // And NarRestorer materialises it.
    const out = join(dir, 'from-export');
    const r = new NarRestorer(out);
    for (const ev of addedEntry.nar) r.handle(ev);
    r.finish();
    assert.equal(formatHash((await hashPath(out)).hash), nix.run('nix-store', ['-q', '--hash', added]).stdout.toString().trim());
  });

  test('nix-store --import accepts what exportStream writes (references, self-reference, deriver)', async () => {
    const a = join(dir, 'imp-a');
    mkdirSync(a);
    writeFileSync(join(a, 'x'), 'x\n');
    const b = join(dir, 'imp-b');
    writeFileSync(b, 'refers to itself\n');
    chmodSync(b, 0o755);
    const hp = (): string => nix32Encode(randomBytes(20));
    const pa = `/nix/store/${hp()}-drvbox-import-a`;
    const pb = `/nix/store/${hp()}-drvbox-import-b`;
    const deriver = `/nix/store/${hp()}-drvbox-import-b.drv`;
    const stream = await collect(
      exportStream([
        { info: { path: pa, references: [], deriver: null }, nar: dumpPath(a) },
        { info: { path: pb, references: [pb, pa], deriver }, nar: dumpPath(b) },
      ]),
    );
    const imported = nix.run('nix-store', ['--import'], { input: stream }).stdout.toString().trim().split('\n');
    assert.deepEqual(imported, [pa, pb]);
    const q = (...args: string[]): string[] => nix.run('nix-store', ['-q', ...args]).stdout.toString().trim().split('\n').filter(Boolean);
    assert.deepEqual(q('--references', pb).sort(), [pa, pb].sort());
    assert.deepEqual(q('--deriver', pb), [deriver]);
    assert.deepEqual(q('--deriver', pa), ['unknown-deriver']);
    assert.deepEqual(q('--hash', pb), [formatHash((await hashPath(b)).hash)]);
    nix.run('nix-store', ['--verify-path', pa, pb]);
    // Round trip: Nix's export of what it imported is the stream we wrote.
    assert.ok(nix.run('nix-store', ['--export', pa, pb]).stdout.equals(stream));
  });

  test('nix-store --import rejects what ExportParser rejects (a truncated stream)', async () => {
    const a = join(dir, 'trunc');
    writeFileSync(a, 'x');
    const pa = `/nix/store/${nix32Encode(randomBytes(20))}-drvbox-trunc`;
    const stream = await collect(exportStream([{ info: { path: pa, references: [], deriver: null }, nar: dumpPath(a) }]));
    const cut = stream.subarray(0, stream.length - 12);
    assert.notEqual(nix.run('nix-store', ['--import'], { input: cut, allowFail: true }).status, 0);
    const p = new ExportParser();
    p.push(cut);
    assert.throws(() => p.finish(), /truncated/);
  });
});

describe('CA hashing modulo self-references against outputs Nix 2.8 built', () => {
  test('recursive sha256 with self-references and a reference; flat sha512', async (t) => {
    const dir = tempDir(t);
    const nix = nixOracle(dir);
    const note = '${builtins.toFile "ref.txt" "referenced"}';
    const rec =
      'derivation { name = "ca-rec"; system = builtins.currentSystem; builder = "/bin/sh"; ' +
      `args = [ "-c" "mkdir $out; echo $out > $out/self; echo ${note} $out $out > $out/both; ln -s $out/self $out/link; i=0; while [ $i -lt 300 ]; do echo \\"$i $out\\" >> $out/many; i=$((i+1)); done" ]; ` +
      '__contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; }';
    const flat =
      'derivation { name = "ca-flat"; system = builtins.currentSystem; builder = "/bin/sh"; ' +
      'args = [ "-c" "echo flat content > $out" ]; __contentAddressed = true; outputHashMode = "flat"; outputHashAlgo = "sha512"; }';
    const build = (e: string): string => {
      const r = nix.run('nix-build', ['-E', e, '--no-out-link'], { allowFail: true });
      if (r.status !== 0) throw new Error(`nix-build failed (${r.status}): ${r.stderr.slice(-1500)}`);
      return r.stdout.toString().trim();
    };
    const real = (p: string): string => join(nix.root, p);

    const out = build(rec);
    const { hashPart, name } = parseStorePath('/nix/store', out);
    const refs = nix.run('nix-store', ['-q', '--references', out]).stdout.toString().trim().split('\n').filter((r) => r !== out);
    assert.equal(refs.length, 1);
    const sink = new HashModuloSink('sha256', hashPart);
    for await (const c of dumpPath(real(out))) sink.update(c);
    const r = sink.finish();
    assert.equal(r.selfReferences, 1 + 2 + 1 + 300);
    assert.equal(makeFixedOutputPath('/nix/store', 'recursive', r.hash, name, refs, true), out);

    const outFlat = build(flat);
    const f = parseStorePath('/nix/store', outFlat);
    const fs = new HashModuloSink('sha512', f.hashPart);
    fs.update(Buffer.from('flat content\n'));
    const fr = fs.finish();
    assert.equal(fr.selfReferences, 0);
    assert.equal(makeFixedOutputPath('/nix/store', 'flat', fr.hash, f.name), outFlat);
    assert.equal(formatHash(await hashFile(real(outFlat), 'sha512')), formatHash(fr.hash));
    assert.ok(parseHash(formatHash(fr.hash)).digest.length === 64);
  });
});
