// registerOutputs in a temp store, scratch outputs written by hand: paths,
// NAR hashes, references, canonical metadata, hash rewriting from fallback
// paths, repair, check mode (every differing output, CA non-determinism),
// auto-optimise, and one test per rejection.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashBytes, hashEquals, type Hash } from '../../src/format/hash.js';
import { makeFixedOutputPath, parseStorePath } from '../../src/format/store-path.js';
import { makeFallbackPathFor, planOutputs } from '../../src/build/output-plan.js';
import { sortOutputs } from '../../src/build/register.js';
import { hashPath } from '../../src/store/nar-fs.js';
import { tempDir } from '../helpers/tmp.js';
import { tempStore } from '../store/util.js';
import { addPath, buildAndRegister, makeDrv, writeTree } from './register-util.js';

const SD = '/nix/store';
const DRV = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-thing.drv';
const OUT = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-thing';
const DEV = '/nix/store/cccccccccccccccccccccccccccccccc-thing-dev';
const INPUT = '/nix/store/dddddddddddddddddddddddddddddddd-input';
const OTHER = '/nix/store/ffffffffffffffffffffffffffffffff-unrelated';

const ia = (path: string) => ({ kind: 'inputAddressed' as const, path });
const twoOutputs = (env: Record<string, string> = {}) =>
  makeDrv('thing', new Map([['out', ia(OUT)], ['dev', ia(DEV)]]), env);
const oneOutput = (env: Record<string, string> = {}) => makeDrv('thing', new Map([['out', ia(OUT)]]), env);
const hp = (p: string) => parseStorePath(SD, p).hashPart;

async function narOf(real: string): Promise<Hash> {
  return (await hashPath(real)).hash;
}

describe('register: input-addressed', () => {
  test('an output with references to an input, itself and a sibling; canonical metadata; registered with deriver', async (t) => {
    const { store } = await tempStore(t);
    await addPath(store, INPUT, 'input\n');
    const res = await buildAndRegister(
      store,
      DRV,
      twoOutputs(),
      (s) => ({
        out: { bin: { tool: `#!${INPUT}/bin/sh\n${s.out}/share ${s.dev}\n` }, link: { link: `${s.out}/bin/tool` } },
        dev: { h: `no refs here ${OTHER}\n` },
      }),
      { inputs: [INPUT] },
    );
    const out = res.get('out')!;
    assert.equal(out.path, OUT);
    assert.deepEqual(out.info.references, [OUT, DEV, INPUT].sort());
    assert.equal(out.info.deriver, DRV);
    assert.equal(out.info.ultimate, true);
    assert.equal(out.info.ca, null);
    assert.ok(hashEquals(out.info.narHash, await narOf(store.toRealPath(OUT))));
    assert.deepEqual(res.get('dev')!.info.references, []); // OTHER is not a candidate
    const real = store.toRealPath(OUT);
    assert.equal(lstatSync(join(real, 'bin', 'tool')).mode & 0o7777, 0o444);
    assert.equal(lstatSync(real).mode & 0o7777, 0o555);
    assert.equal(lstatSync(join(real, 'bin', 'tool')).mtimeMs, 1000);
    assert.equal(readlinkSync(join(real, 'link')), `${OUT}/bin/tool`);
  });

  test('paths added during the build are reference candidates', async (t) => {
    const { store } = await tempStore(t);
    await addPath(store, OTHER, 'added\n');
    const res = await buildAndRegister(store, DRV, oneOutput(), () => ({ out: `${OTHER}\n` }), { addedPaths: [OTHER] });
    assert.deepEqual(res.get('out')!.info.references, [OTHER]);
  });

  test('a valid sibling output: the build went to fallback paths, hashes are rewritten, the valid path is untouched (and output checks can name it, Nix issue 16485)', async (t) => {
    const { store } = await tempStore(t);
    await addPath(store, OUT, 'the valid out\n');
    const before = await narOf(store.toRealPath(OUT));
    const drv = twoOutputs({ allowedReferences: 'out dev' });
    const plan = planOutputs({ storeDir: SD, drvPath: DRV, drv, needsHashRewrite: true, mode: 'normal', pathExists: (p) => store.isValidPath(p) });
    const outScratch = plan.outputs.get('out')!.scratchPath;
    assert.equal(outScratch, makeFallbackPathFor(SD, DRV, OUT));
    assert.equal(plan.outputs.get('dev')!.scratchPath, DEV);
    const res = await buildAndRegister(store, DRV, drv, (s) => ({ out: 'rebuilt out\n', dev: `uses ${s.out}/lib and ${s.dev}\n` }), { plan });
    const dev = res.get('dev')!;
    assert.equal(readFileSync(store.toRealPath(DEV), 'utf8'), `uses ${OUT}/lib and ${DEV}\n`);
    assert.deepEqual(dev.info.references, [DEV, OUT].sort());
    assert.ok(hashEquals(dev.info.narHash, await narOf(store.toRealPath(DEV))));
    assert.equal(res.get('out')!.built, false);
    assert.ok(hashEquals(await narOf(store.toRealPath(OUT)), before));
    assert.equal(existsSync(store.toRealPath(outScratch)), false, 'the redirected scratch output is removed');
  });

  test('unsafeDiscardReferences (structured attrs) registers no references', async (t) => {
    const { store } = await tempStore(t);
    await addPath(store, INPUT, 'input\n');
    const res = await buildAndRegister(store, DRV, oneOutput(), (s) => ({ out: `${INPUT} ${s.out}\n` }), {
      inputs: [INPUT],
      structuredAttrs: { unsafeDiscardReferences: { out: true } },
    });
    assert.deepEqual(res.get('out')!.info.references, []);
  });

  test('unsafeDiscardReferences must be a Boolean', async (t) => {
    const { store } = await tempStore(t);
    await assert.rejects(
      buildAndRegister(store, DRV, oneOutput(), () => ({ out: 'x' }), { structuredAttrs: { unsafeDiscardReferences: { out: 'yes' } } }),
      { message: `attribute 'unsafeDiscardReferences."out"' of derivation 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-thing.drv' must be a Boolean` },
    );
  });

  test('auto-optimise-store hard-links identical files', async (t) => {
    const { store } = await tempStore(t);
    await buildAndRegister(store, DRV, oneOutput(), () => ({ out: { a: 'same contents\n', b: 'same contents\n' } }), {
      settings: { autoOptimise: true },
    });
    const a = lstatSync(join(store.toRealPath(OUT), 'a'));
    const b = lstatSync(join(store.toRealPath(OUT), 'b'));
    assert.equal(a.ino, b.ino);
  });

  test('a hard link to an input file is not modified', async (t) => {
    const { store } = await tempStore(t);
    await addPath(store, INPUT, { f: 'input file\n' });
    const inputFile = join(store.toRealPath(INPUT), 'f');
    const plan = planOutputs({ storeDir: SD, drvPath: DRV, drv: oneOutput(), needsHashRewrite: true, mode: 'normal', pathExists: () => false });
    writeTree(store.toRealPath(OUT), { g: `${OUT}\n` });
    const { linkSync } = await import('node:fs');
    linkSync(inputFile, join(store.toRealPath(OUT), 'f'));
    const before = lstatSync(inputFile);
    await buildAndRegister(store, DRV, oneOutput(), () => ({}), { plan, inputs: [INPUT] });
    const after = lstatSync(inputFile);
    assert.equal(readFileSync(inputFile, 'utf8'), 'input file\n');
    assert.equal(after.mode, before.mode);
    assert.equal(after.mtimeMs, before.mtimeMs);
  });
});

describe('register: rejections (one test each)', () => {
  test('missing output names the output', async (t) => {
    const { store } = await tempStore(t);
    await assert.rejects(buildAndRegister(store, DRV, twoOutputs(), () => ({ out: 'x', dev: null })), {
      name: 'OutputMissing',
      message: `builder for '${DRV}' failed to produce output path for output 'dev' at '${store.toRealPath(DEV)}'`,
    });
    assert.equal(store.isValidPath(OUT), false);
  });

  test('group-writable output', async (t) => {
    const { store } = await tempStore(t);
    writeTree(store.toRealPath(OUT), 'x');
    chmodSync(store.toRealPath(OUT), 0o664);
    await assert.rejects(buildAndRegister(store, DRV, oneOutput(), () => ({})), {
      name: 'OutputBadPermissions',
      message: `suspicious ownership or permission on '${store.toRealPath(OUT)}' for output 'out'; rejecting this build output`,
    });
  });

  test('an output not owned by the build user', async (t) => {
    const { store } = await tempStore(t);
    await assert.rejects(buildAndRegister(store, DRV, oneOutput(), () => ({ out: 'x' }), { fromUid: 54321 }), { name: 'OutputBadPermissions' });
  });

  test('cycle between outputs', async (t) => {
    const { store } = await tempStore(t);
    await assert.rejects(buildAndRegister(store, DRV, twoOutputs(), (s) => ({ out: s.dev!, dev: s.out! })), {
      name: 'ReferenceCycleInOutputs',
      message: `cycle detected in build of '${DRV}' in the references of output 'dev' from output 'out'`,
    });
  });

  test('fixed output with references', async (t) => {
    const { store } = await tempStore(t);
    await addPath(store, INPUT, 'input\n');
    const content = `${INPUT}\n`;
    const hash = hashBytes('sha256', content);
    const drv = makeDrv('fod', new Map([['out', { kind: 'caFixed', method: 'flat', hash }]]));
    await assert.rejects(buildAndRegister(store, DRV, drv, () => ({ out: content }), { inputs: [INPUT] }), {
      name: 'FixedOutputHasReferences',
      message: `illegal path references in fixed-output derivation '${DRV}'`,
    });
    assert.equal(store.isValidPath(makeFixedOutputPath(SD, 'flat', hash, 'fod')), false);
  });

  test('CA flat output that is executable', async (t) => {
    const { store } = await tempStore(t);
    const drv = makeDrv('caf', new Map([['out', { kind: 'caFloating', method: 'flat', hashAlgo: 'sha256' }]]));
    await assert.rejects(
      buildAndRegister(store, DRV, drv, (s) => {
        writeTree(store.toRealPath(s.out!), '#!x');
        chmodSync(store.toRealPath(s.out!), 0o755);
        return {};
      }),
      { name: 'CaOutputNotRegularFile' },
    );
  });

  test('CA text output with a self-reference', async (t) => {
    const { store } = await tempStore(t);
    const drv = makeDrv('cat', new Map([['out', { kind: 'caFloating', method: 'text', hashAlgo: 'sha256' }]]));
    await assert.rejects(buildAndRegister(store, DRV, drv, (s) => ({ out: `${s.out}\n` })), { name: 'CaOutputIllegalReferences' });
  });

  test('deferred output: the derivation must be resolved first', async (t) => {
    const { store } = await tempStore(t);
    const drv = makeDrv('d', new Map([['out', { kind: 'deferred' }]]));
    await assert.rejects(buildAndRegister(store, DRV, drv, () => ({ out: 'x' })), { name: 'RegisterInternalError' });
  });
});

describe('register: fixed and content-addressed', () => {
  test('fixed-output hash mismatch: registered under the actual path, then exit 102 with Nix message', async (t) => {
    const { store } = await tempStore(t);
    const wanted = hashBytes('sha256', 'wanted\n');
    const drv = makeDrv('fod', new Map([['out', { kind: 'caFixed', method: 'recursive', hash: wanted }]]));
    await assert.rejects(buildAndRegister(store, DRV, drv, () => ({ out: 'got\n' })), (e: Error & { exitCode: number }) => {
      assert.equal(e.exitCode, 102);
      assert.match(e.message, /^hash mismatch in fixed-output derivation '[^']+':\n {2}specified: sha256-\S+\n {5}got: {4}sha256-\S+$/);
      return true;
    });
    const actual = store.queryAllValidPaths().filter((p) => p.endsWith('-fod'));
    assert.equal(actual.length, 1);
    assert.notEqual(actual[0], makeFixedOutputPath(SD, 'recursive', wanted, 'fod'));
  });

  test('CA floating: the same content gives the same path wherever it was built (scratch hash zeroed), realisation recorded', async (t) => {
    const { store } = await tempStore(t);
    const drv = makeDrv('ca', new Map([['out', { kind: 'caFloating', method: 'recursive', hashAlgo: 'sha256' }]]));
    const drvHash = hashBytes('sha256', 'drv hash');
    const a = await buildAndRegister(store, DRV, drv, (s) => ({ out: { f: `me: ${s.out}/f\n` } }), { drvHashes: new Map([['out', drvHash]]) });
    const path = a.get('out')!.path;
    assert.deepEqual(a.get('out')!.info.references, [path]);
    assert.equal(readFileSync(join(store.toRealPath(path), 'f'), 'utf8'), `me: ${path}/f\n`);
    assert.equal(store.queryRealisation({ drvHash, outputName: 'out' })!.outPath, path);
    // Another derivation (another scratch path), the same content: same path.
    const { store: store2 } = await tempStore(t);
    const b = await buildAndRegister(store2, '/nix/store/99999999999999999999999999999999-other.drv', drv, (s) => ({ out: { f: `me: ${s.out}/f\n` } }));
    assert.equal(b.get('out')!.path, path);
    assert.ok(hashEquals(b.get('out')!.info.narHash, a.get('out')!.info.narHash));
  });

  test('impure outputs register like CA floating ones, without a realisation', async (t) => {
    const { store } = await tempStore(t);
    const drv = makeDrv('imp', new Map([['out', { kind: 'impure', method: 'recursive', hashAlgo: 'sha256' }]]));
    const drvHash = hashBytes('sha256', 'impure');
    const r = await buildAndRegister(store, DRV, drv, () => ({ out: 'x\n' }), { drvHashes: new Map([['out', drvHash]]) });
    assert.ok(store.isValidPath(r.get('out')!.path));
    assert.match(r.get('out')!.info.ca!, /^fixed:r:sha256:/);
    assert.equal(store.queryRealisation({ drvHash, outputName: 'out' }), null);
  });

  test('sha1 recursive fixed output (not a source path)', async (t) => {
    const { store } = await tempStore(t);
    const dir = tempDir(t);
    writeTree(join(dir, 'x'), { a: 'b' });
    const { hash } = await hashPath(join(dir, 'x'), 'sha1');
    const drv = makeDrv('sha1', new Map([['out', { kind: 'caFixed', method: 'recursive', hash }]]));
    const r = await buildAndRegister(store, DRV, drv, () => ({ out: { a: 'b' } }));
    assert.equal(r.get('out')!.path, makeFixedOutputPath(SD, 'recursive', hash, 'sha1'));
  });
});

describe('register: repair', () => {
  test('a corrupted valid path is replaced by the rebuilt one', async (t) => {
    const { store } = await tempStore(t);
    await buildAndRegister(store, DRV, oneOutput(), (s) => ({ out: { f: `good ${s.out}\n` } }));
    const good = store.queryPathInfo(OUT)!.narHash;
    const f = join(store.toRealPath(OUT), 'f');
    chmodSync(f, 0o644);
    writeFileSync(f, 'corrupt');
    const plan = planOutputs({ storeDir: SD, drvPath: DRV, drv: oneOutput(), needsHashRewrite: true, mode: 'repair', pathExists: () => true });
    assert.notEqual(plan.outputs.get('out')!.scratchPath, OUT);
    await buildAndRegister(store, DRV, oneOutput(), (s) => ({ out: { f: `good ${s.out}\n` } }), { plan, mode: 'repair' });
    assert.equal(readFileSync(f, 'utf8'), `good ${OUT}\n`);
    assert.ok(hashEquals(await narOf(store.toRealPath(OUT)), good));
    assert.ok(hashEquals(store.queryPathInfo(OUT)!.narHash, good));
  });
});

describe('register: check mode', () => {
  async function built(t: Parameters<typeof tempStore>[0]) {
    const { store } = await tempStore(t);
    await buildAndRegister(store, DRV, twoOutputs(), (s) => ({ out: `out ${s.out}\n`, dev: 'dev 1\n' }));
    return store;
  }

  test('identical rebuild: passes, nothing changes, the scratch copies are gone', async (t) => {
    const store = await built(t);
    const before = store.queryPathInfo(OUT)!;
    const res = await buildAndRegister(store, DRV, twoOutputs(), (s) => ({ out: `out ${s.out}\n`, dev: 'dev 1\n' }), { mode: 'check' });
    assert.equal(res.get('out')!.path, OUT);
    assert.ok(hashEquals(store.queryPathInfo(OUT)!.narHash, before.narHash));
    const fb = makeFallbackPathFor(SD, DRV, OUT);
    assert.equal(existsSync(store.toRealPath(fb)), false);
    assert.equal(existsSync(store.toRealPath(OUT) + '.check'), false);
  });

  test('differing outputs: "may not be deterministic" (104), kept at <path>.check, diff hook run for EVERY differing output', async (t) => {
    const store = await built(t);
    const dir = tempDir(t);
    const hook = join(dir, 'hook.sh');
    writeFileSync(hook, '#!/bin/sh\necho "diff $1 $2 $3"\n', { mode: 0o755 });
    const log: string[] = [];
    await assert.rejects(
      buildAndRegister(store, DRV, twoOutputs(), (s) => ({ out: `OUT ${s.out}\n`, dev: 'dev 2\n' }), {
        mode: 'check',
        settings: { keepFailed: true, runDiffHook: true, diffHook: hook },
        log,
      }),
      (e: Error & { exitCode: number; code: string }) => {
        assert.equal(e.exitCode, 104);
        assert.equal(e.code, 'E_NOT_DETERMINISTIC');
        assert.equal(
          e.message,
          `derivation '${DRV}' may not be deterministic: output '${store.toRealPath(DEV)}' differs from '${store.toRealPath(DEV)}.check'; ` +
            `output '${store.toRealPath(OUT)}' differs from '${store.toRealPath(OUT)}.check'`,
        );
        return true;
      },
    );
    assert.deepEqual(log, [
      `diff ${store.toRealPath(DEV)} ${store.toRealPath(DEV)}.check ${DRV}`,
      `diff ${store.toRealPath(OUT)} ${store.toRealPath(OUT)}.check ${DRV}`,
    ]);
    assert.equal(readFileSync(store.toRealPath(OUT) + '.check', 'utf8'), `OUT ${OUT}\n`, 'kept, with final hash parts');
    assert.equal(readFileSync(store.toRealPath(OUT), 'utf8'), `out ${OUT}\n`, 'the valid output is untouched');
  });

  test('differing output without keep-failed: Nix short message, nothing kept', async (t) => {
    const store = await built(t);
    await assert.rejects(buildAndRegister(store, DRV, twoOutputs(), (s) => ({ out: `out ${s.out}\n`, dev: 'dev 3\n' }), { mode: 'check' }), {
      message: `derivation '${DRV}' may not be deterministic: output '${store.toRealPath(DEV)}' differs`,
    });
    assert.equal(existsSync(store.toRealPath(DEV) + '.check'), false);
  });

  test('CA floating non-determinism is caught (Nix issue 5336)', async (t) => {
    const { store } = await tempStore(t);
    const drv = makeDrv('ca', new Map([['out', { kind: 'caFloating', method: 'recursive', hashAlgo: 'sha256' }]]));
    const drvHashes = new Map([['out', hashBytes('sha256', 'ca drv')]]);
    const first = await buildAndRegister(store, DRV, drv, (s) => ({ out: { f: `${s.out} 1\n` } }), { drvHashes });
    const old = first.get('out')!.path;
    // Same content again: fine.
    await buildAndRegister(store, DRV, drv, (s) => ({ out: { f: `${s.out} 1\n` } }), { drvHashes, mode: 'check' });
    await assert.rejects(
      buildAndRegister(store, DRV, drv, (s) => ({ out: { f: `${s.out} 2\n` } }), { drvHashes, mode: 'check', settings: { keepFailed: true } }),
      { message: `derivation '${DRV}' may not be deterministic: output '${store.toRealPath(old)}' differs from '${store.toRealPath(old)}.check'` },
    );
    // The kept copy refers to itself by the old path's hash part, so a diff shows only the real change.
    assert.equal(readFileSync(join(store.toRealPath(old) + '.check', 'f'), 'utf8'), `${old} 2\n`);
    assert.equal(store.queryAllValidPaths().filter((p) => p.endsWith('-ca')).length, 1);
  });
});

describe('register: streaming hash rewriting', () => {
  test('a large output with many self-references is rewritten in constant memory (peak RSS measured)', async (t) => {
    const { spawnSync } = await import('node:child_process');
    const { REPO_ROOT } = await import('../helpers/host.js');
    const dir = tempDir(t);
    const script = join(dir, 'child.mjs');
    const dist = join(REPO_ROOT, 'dist');
    writeFileSync(
      script,
      `
import { closeSync, openSync, writeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
const { LocalStore, storeSettingsFrom } = await import(${JSON.stringify(join(dist, 'src/store/local-store.js'))});
const { chrootLocation } = await import(${JSON.stringify(join(dist, 'src/config/store-location.js'))});
const { planOutputs } = await import(${JSON.stringify(join(dist, 'src/build/output-plan.js'))});
const { registerOutputs } = await import(${JSON.stringify(join(dist, 'src/build/register.js'))});
const { RefScanner } = await import(${JSON.stringify(join(dist, 'src/format/refscan.js'))});
const { streamNar } = await import(${JSON.stringify(join(dist, 'src/store/nar-fs.js'))});
const store = await LocalStore.open(chrootLocation(${JSON.stringify(join(dir, 'root'))}, '/nix/store', 't'), storeSettingsFrom(null));
const DRV = ${JSON.stringify(DRV)}, OUT = ${JSON.stringify(OUT)};
const drv = { name: 'thing', outputs: new Map([['out', { kind: 'inputAddressed', path: OUT }]]), inputDrvs: new Map(), inputSrcs: new Set(), platform: 'x', builder: 'b', args: [], env: new Map() };
// Check mode on a valid path: the build went to a fallback path, whose hash part must become OUT's.
store.registerValidPaths([{ path: OUT, narHash: { algo: 'sha256', digest: new Uint8Array(32) }, narSize: 0, references: [] }]);
const plan = planOutputs({ storeDir: '/nix/store', drvPath: DRV, drv, needsHashRewrite: true, mode: 'repair', pathExists: () => true });
const scratch = plan.outputs.get('out').scratchPath;
const real = store.toRealPath(scratch);
const { mkdirSync } = await import('node:fs');
mkdirSync(real);
const SIZE = ${160 << 20};
const fd = openSync(join(real, 'big'), 'w');
const chunk = Buffer.alloc(1 << 20);
let refs = 0;
for (let off = 0; off < SIZE; off += chunk.length) {
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE(((off + i) * 2654435761) >>> 0, i);
  // A self-reference every 64 KiB, one straddling the chunk boundary.
  for (let i = 1000; i + 60 < chunk.length; i += 65536) { chunk.write(scratch, i, 'latin1'); refs++; }
  chunk.write(scratch.slice(0, 20), chunk.length - 20, 'latin1');
  writeSync(fd, chunk);
  if (off + chunk.length < SIZE) { writeSync(fd, Buffer.from(scratch.slice(20), 'latin1')); refs++; }
}
closeSync(fd);
const t0 = Date.now();
const res = await registerOutputs({ store, drvPath: DRV, drv, plan, mode: 'repair', realPathOf: (p) => store.toRealPath(p), inputClosure: new Set(), addedPaths: new Set(), structuredAttrs: null, settings: { autoOptimise: false, keepFailed: false, diffHook: '', runDiffHook: false }, log() {} });
const ms = Date.now() - t0;
const s = new RefScanner([scratch.slice(11, 43), OUT.slice(11, 43)]);
let count = 0;
const needle = Buffer.from(OUT.slice(11, 43));
let carry = Buffer.alloc(0);
await streamNar(store.toRealPath(OUT), (c) => { s.update(c); const b = Buffer.concat([carry, c]); let i = -1; while ((i = b.indexOf(needle, i + 1)) >= 0) if (i + 32 > carry.length) count++; carry = b.subarray(Math.max(0, b.length - 31)); });
const status = readFileSync('/proc/self/status', 'utf8');
const hwm = Number(/VmHWM:\\s+(\\d+)/.exec(status)[1]) * 1024;
console.log(JSON.stringify({ ms, hwm, refs, count, found: [...s.found()], references: res.get('out').info.references, narSize: res.get('out').info.narSize }));
`,
    );
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      ms: number;
      hwm: number;
      refs: number;
      count: number;
      found: string[];
      references: string[];
      narSize: number;
    };
    t.diagnostic(`160 MiB output, ${m.refs} self-references rewritten in ${m.ms} ms, peak RSS ${(m.hwm / 2 ** 20).toFixed(1)} MiB`);
    assert.deepEqual(m.found, [hp(OUT)], 'no scratch hash part left, the final one present');
    assert.equal(m.count, m.refs);
    assert.deepEqual(m.references, [OUT]);
    assert.ok(m.narSize > 160 << 20);
    assert.ok(m.hwm < 150 * 2 ** 20, `peak RSS ${m.hwm} bytes`);
  });
});

describe('register: outputs announced once placed (onPlaced, for held dependents)', () => {
  test('normal mode: once, with the final paths and references, after the move and the checks and before the registration', async (t) => {
    const { store } = await tempStore(t);
    await addPath(store, INPUT, 'input\n');
    const seen: Array<{ name: string; path: string; references: string[]; onDisk: boolean; valid: boolean }> = [];
    await buildAndRegister(store, DRV, twoOutputs({ allowedReferences: 'out dev ' + INPUT }), (s) => ({ out: `${INPUT} ${s.dev} ${s.out}\n`, dev: 'dev\n' }), {
      inputs: [INPUT],
      onPlaced: (outs) => {
        for (const o of outs) seen.push({ name: o.name, path: o.path, references: [...o.references].sort(), onDisk: existsSync(store.toRealPath(o.path)), valid: store.isValidPath(o.path) });
      },
    });
    assert.deepEqual(
      seen.sort((a, b) => a.name.localeCompare(b.name)),
      [
        { name: 'dev', path: DEV, references: [], onDisk: true, valid: false },
        { name: 'out', path: OUT, references: [OUT, DEV, INPUT].sort(), onDisk: true, valid: false },
      ],
    );
    assert.ok(store.isValidPath(OUT) && store.isValidPath(DEV));
  });

  test('what the listener throws does not fail the registration', async (t) => {
    const { store } = await tempStore(t);
    const res = await buildAndRegister(store, DRV, oneOutput(), () => ({ out: 'x\n' }), {
      onPlaced: () => {
        throw new Error('listener bug');
      },
    });
    assert.equal(res.get('out')!.path, OUT);
    assert.ok(store.isValidPath(OUT));
  });

  test('not when an output check fails, nor in check mode', async (t) => {
    const { store } = await tempStore(t);
    await addPath(store, INPUT, 'input\n');
    let calls = 0;
    const onPlaced = () => void calls++;
    await assert.rejects(
      buildAndRegister(store, DRV, oneOutput({ disallowedReferences: INPUT }), () => ({ out: `${INPUT}\n` }), { inputs: [INPUT], onPlaced }),
      /is not allowed to refer to the following paths:\n  \/nix\/store\/d{32}-input$/,
    );
    assert.equal(calls, 0);
    await buildAndRegister(store, DRV, oneOutput(), () => ({ out: 'same\n' }), {});
    await buildAndRegister(store, DRV, oneOutput(), () => ({ out: 'same\n' }), { mode: 'check', onPlaced });
    assert.equal(calls, 0);
  });
});

describe('sortOutputs', () => {
  test('references first; Nix cycle message names the first back edge', () => {
    assert.deepEqual(
      sortOutputs(['out', 'dev', 'lib'], (n) => (n === 'out' ? ['dev', 'lib'] : n === 'dev' ? ['lib'] : []), DRV),
      ['lib', 'dev', 'out'],
    );
    assert.throws(() => sortOutputs(['a', 'b', 'c'], (n) => (n === 'a' ? ['b'] : n === 'b' ? ['c'] : ['a']), DRV), {
      message: `cycle detected in build of '${DRV}' in the references of output 'a' from output 'c'`,
    });
  });
});

describe('in-place streaming rewriter and modulo hasher (same results as src/format/rewrite.ts, any chunking)', () => {
  const A = 'abcdfghijklmnpqrsvwxyz0123456789';
  const B = '0123456789abcdfghijklmnpqrsvwxyz';
  const C = 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz';
  function sample(): Buffer {
    const parts: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const r = Math.random();
      if (r < 0.3) parts.push(Buffer.from([A, B, C][i % 3]!));
      else if (r < 0.4) parts.push(Buffer.from(A.slice(0, 1 + Math.floor(Math.random() * 31)))); // a partial needle
      else if (r < 0.6) parts.push(Buffer.from('zzzzzzzz'.repeat(1 + Math.floor(Math.random() * 8)))); // nix32 filler
      else parts.push(randomBytes(1 + Math.floor(Math.random() * 100)));
    }
    return Buffer.concat(parts);
  }
  function chunked(data: Buffer): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < data.length; ) {
      const n = 1 + Math.floor(Math.random() * 128);
      out.push(Buffer.from(data.subarray(i, i + n)));
      i += n;
    }
    return out;
  }

  test('rewriting', async () => {
    const { InPlaceRewriter } = await import('../../src/build/register.js');
    const { rewriteBytes } = await import('../../src/format/rewrite.js');
    const rewrites = new Map([
      [A, B],
      [C, A],
    ]);
    for (let round = 0; round < 300; round++) {
      const data = sample();
      const expected = Buffer.from(rewriteBytes(data, rewrites));
      const got: Buffer[] = [];
      const rw = new InPlaceRewriter(rewrites);
      for (const c of chunked(data)) rw.update(c, (b) => got.push(Buffer.from(b)));
      rw.flush((b) => got.push(Buffer.from(b)));
      assert.deepEqual(Buffer.concat(got), expected);
      assert.equal(rw.offset, data.length);
    }
  });

  test('hash modulo', async () => {
    const { InPlaceModuloHasher } = await import('../../src/build/register.js');
    const { HashModuloSink } = await import('../../src/format/rewrite.js');
    for (let round = 0; round < 300; round++) {
      const data = sample();
      const ref = new HashModuloSink('sha256', C);
      ref.update(data);
      const want = ref.finish();
      const m = new InPlaceModuloHasher('sha256', C);
      for (const c of chunked(data)) m.update(c);
      const got = m.finish();
      assert.ok(hashEquals(got.hash, want.hash));
      assert.equal(got.selfReferences, want.selfReferences);
    }
  });
});
