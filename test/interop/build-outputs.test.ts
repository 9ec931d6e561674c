// Differential: derivations instantiated by Nix 2.8, built unsandboxed by Nix
// and by drvbox in the same store directory: identical output paths, NAR
// hashes, sizes, references and content addresses; builders that copy their
// environment, .attrs.json/.attrs.sh, passAsFile and exportReferencesGraph
// files into $out produce identical bytes.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Twin } from './build-twin.js';

const BUILDS = [
  'simple', 'leaf', 'chain1', 'chain2', 'multi', 'devOnly', 'tree', 'selfRef', 'inputSrc', 'envCopy', 'args', 'cores',
  'passAsFile', 'structured', 'structuredGraph', 'graph', 'fixedFlat', 'fixedRec', 'fixedSha1', 'usesFixed', 'checks',
  'big', 'withFeature', 'ca', 'caUser', 'fetchNar', 'fetchNarXz',
] as const;

interface Info {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  ca?: string;
}

describe('build differential against Nix 2.8: outputs', () => {
  let twin: Twin;
  let drvs: Map<string, string>;
  /** attribute -> output name -> path */
  const nixOut = new Map<string, Record<string, string>>();
  const dxOut = new Map<string, Record<string, string>>();
  let nixInfo: Map<string, Info>;
  let dxInfo: Map<string, Info>;
  let dxStderr = '';

  before(() => {
    twin = new Twin();
    drvs = twin.instantiate(BUILDS);
    const exported = twin.exportClosure(drvs.values());
    const nb = twin.nix('nix', ['build', '--json', '--no-link', '--keep-going', ...drvs.values()]);
    if (nb.status !== 0) throw new Error(`nix build failed: ${nb.stderr}`);
    const byDrv = new Map((JSON.parse(nb.stdout.toString()) as Array<{ drvPath: string; outputs: Record<string, string> }>).map((x) => [x.drvPath, x.outputs]));
    for (const [a, d] of drvs) nixOut.set(a, byDrv.get(d)!);
    const allNix = [...nixOut.values()].flatMap((o) => Object.values(o));
    nixInfo = new Map((JSON.parse(twin.nix('nix', ['path-info', '--json', ...allNix]).stdout.toString()) as Info[]).map((i) => [i.path, i]));

    twin.switchToDrvbox(exported);
    const db = twin.drvboxBuild(['--json', ...drvs.values()]);
    dxStderr = db.stderr;
    if (db.status !== 0) throw new Error(`drvbox build failed (${db.status}): ${db.stderr}`);
    const dxByDrv = new Map((JSON.parse(db.stdout) as Array<{ drvPath: string; outputs: Record<string, string> }>).map((x) => [x.drvPath, x.outputs]));
    for (const [a, d] of drvs) dxOut.set(a, dxByDrv.get(d)!);
    const allDx = [...dxOut.values()].flatMap((o) => Object.values(o));
    dxInfo = new Map((JSON.parse(twin.drvbox(['path-info', '--json', ...allDx]).stdout) as Info[]).map((i) => [i.path, i]));
  });

  after(() => twin?.remove());

  test('the corpus: 27 derivations, all built by both', () => {
    assert.equal(drvs.size, 27);
    assert.equal(nixOut.size, 27);
    assert.ok([...dxOut.values()].every((o) => o && Object.keys(o).length > 0), dxStderr);
  });

  test('identical output paths', () => {
    for (const a of BUILDS) assert.deepEqual(dxOut.get(a), nixOut.get(a), `outputs of ${a}`);
  });

  test('identical NAR hashes, NAR sizes, references and content addresses', () => {
    for (const a of BUILDS) {
      for (const p of Object.values(nixOut.get(a)!)) {
        const n = nixInfo.get(p)!;
        const d = dxInfo.get(p);
        assert.ok(d, `drvbox has no path info for ${p} (${a})`);
        assert.equal(d.narHash, n.narHash, `narHash of ${p} (${a})`);
        assert.equal(d.narSize, n.narSize, `narSize of ${p} (${a})`);
        assert.deepEqual(d.references, n.references, `references of ${p} (${a})`);
        assert.equal(d.ca, n.ca, `ca of ${p} (${a})`);
      }
    }
  });

  const bytes = (where: 'nix' | 'drvbox', path: string) => readFileSync(where === 'nix' ? twin.nixReal(path) : path);

  test('the environment, argv and build dir variables the builder saw are byte-identical', () => {
    for (const a of ['envCopy', 'args', 'cores'] as const) {
      const out = nixOut.get(a)!.out!;
      assert.deepEqual(bytes('drvbox', out).toString(), bytes('nix', out).toString(), a);
    }
    const env = bytes('drvbox', nixOut.get('envCopy')!.out!).toString();
    assert.match(env, new RegExp(`export NIX_BUILD_TOP='${twin.tmp}/nix-build-env-copy\\.drv-0'`));
    assert.match(env, /export multiline='one\ntwo'/);
  });

  test('.attrs.json, .attrs.sh, passAsFile and exportReferencesGraph files are byte-identical', () => {
    const s = nixOut.get('structured')!.out!;
    for (const f of ['.attrs.json', '.attrs.sh', 'vars']) assert.equal(bytes('drvbox', join(s, f)).toString(), bytes('nix', join(s, f)).toString(), f);
    const g = nixOut.get('structuredGraph')!.out!;
    assert.equal(bytes('drvbox', join(g, '.attrs.json')).toString(), bytes('nix', join(g, '.attrs.json')).toString());
    assert.match(bytes('drvbox', join(g, '.attrs.json')).toString(), /"closure":\[/);
    const p = nixOut.get('passAsFile')!.out!;
    assert.equal(bytes('drvbox', p).toString(), bytes('nix', p).toString());
    const r = nixOut.get('graph')!.out!;
    for (const f of ['refs', 'refs2']) assert.equal(bytes('drvbox', join(r, f)).toString(), bytes('nix', join(r, f)).toString(), f);
    assert.ok(bytes('drvbox', join(r, 'refs')).toString().includes(nixOut.get('leaf')!.out!));
  });

  test('builtin:fetchurl with unpack: a NAR and an xz-compressed NAR restore the same tree as Nix', () => {
    for (const a of ['fetchNar', 'fetchNarXz'] as const) {
      const out = nixOut.get(a)!.out!;
      assert.equal(dxInfo.get(out)?.narHash, 'sha256-Er6qK2U4HgETyUHeDTYCNjLrHPoy1ljWnMtpELJ5HZQ=', a);
      assert.equal(bytes('drvbox', join(out, 'bin', 'hello')).toString(), '#!/bin/sh\necho fetched\n');
      assert.equal(statSync(join(out, 'bin', 'hello')).mode & 0o777, 0o555);
      assert.equal(readlinkSync(join(out, 'link')), 'bin/hello');
    }
  });

  test('content-addressed: the floating output and the resolved dependent have Nix\'s paths', () => {
    assert.match(nixOut.get('ca')!.out!, /-ca-floating$/);
    assert.equal(dxOut.get('caUser')!.out, nixOut.get('caUser')!.out);
    assert.match(dxStderr, /resolved derivation: '.*-ca-user\.drv' -> '.*-ca-user\.drv'/);
  });
});
