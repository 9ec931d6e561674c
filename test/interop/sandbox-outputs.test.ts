// Differential: the build-engine corpus built SANDBOXED by Nix 2.8 and by
// drvbox (same sandbox-paths, same TMPDIR, logical /nix/store on both
// sides): identical output paths, NAR hashes, sizes, references and content
// addresses; failing builds end with the same exit status and message.
//
// Intended differences: the host path of a missing output (each side has its
// own root; drvbox's chroot keeps the store dir at <chroot>/store), and Nix
// 2.8's bug: in a sandboxed structured-attrs
// build it sets NIX_ATTRS_JSON_FILE / NIX_ATTRS_SH_FILE to the HOST build dir
// (which the builder cannot see) instead of the sandbox's; drvbox uses the
// sandbox path, as later Nix does (the seed's tmpDirInSandbox). Only the
// `structured` output records those variables, so only its NAR differs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CORPUS, errorBlock } from './build-twin.js';
import { SandboxTwin, type Ran } from './sandbox-twin.js';

const BUILDS = [
  'simple', 'leaf', 'chain1', 'chain2', 'multi', 'devOnly', 'tree', 'selfRef', 'inputSrc', 'envCopy', 'args', 'cores',
  'passAsFile', 'structured', 'structuredGraph', 'graph', 'fixedFlat', 'fixedRec', 'fixedSha1', 'usesFixed', 'checks',
  'big', 'withFeature', 'ca', 'caUser', 'selfKill',
] as const;
/** Outputs that differ only by Nix 2.8's NIX_ATTRS_*_FILE bug (see the header). */
const NIX_ATTRS_BUG = new Set<string>(['structured']);

const FAILURES = ['failExit', 'failSignal', 'missingOutput', 'missingDev', 'cycle', 'hashMismatch', 'allowedRefs', 'disallowedReqs', 'noBuilder'] as const;

interface Info {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  ca?: string;
}

describe('sandboxed build differential against Nix 2.8', () => {
  let twin: SandboxTwin;
  let drvs: Map<string, string>;
  const nixOut = new Map<string, Record<string, string>>();
  const dxOut = new Map<string, Record<string, string>>();
  let nixInfo: Map<string, Info>;
  let dxInfo: Map<string, Info>;
  let dxStderr = '';
  const nixFail = new Map<string, Ran>();
  const dxFail = new Map<string, Ran>();

  before(async () => {
    twin = await SandboxTwin.create();
    drvs = twin.instantiate(CORPUS, [...BUILDS, ...FAILURES]);
    twin.share(drvs.values());
    const wanted = BUILDS.map((a) => drvs.get(a)!);
    const nb = twin.nixRun('nix', ['build', '--json', '--no-link', '--keep-going', ...wanted]);
    if (nb.status !== 0) throw new Error(`nix build failed: ${nb.stderr}`);
    const byDrv = new Map((JSON.parse(nb.stdout.toString()) as Array<{ drvPath: string; outputs: Record<string, string> }>).map((x) => [x.drvPath, x.outputs]));
    for (const a of BUILDS) nixOut.set(a, byDrv.get(drvs.get(a)!)!);
    const allNix = [...nixOut.values()].flatMap((o) => Object.values(o));
    nixInfo = new Map((JSON.parse(twin.nixRun('nix', ['path-info', '--json', ...allNix]).stdout.toString()) as Info[]).map((i) => [i.path, i]));

    const db = twin.drvboxBuild(['--json', ...wanted]);
    dxStderr = db.stderr;
    if (db.status !== 0) throw new Error(`drvbox build failed (${db.status}): ${db.stderr}`);
    const dxByDrv = new Map((JSON.parse(db.stdout) as Array<{ drvPath: string; outputs: Record<string, string> }>).map((x) => [x.drvPath, x.outputs]));
    for (const a of BUILDS) dxOut.set(a, dxByDrv.get(drvs.get(a)!)!);
    const allDx = [...dxOut.values()].flatMap((o) => Object.values(o));
    dxInfo = new Map((JSON.parse(twin.drvbox(['path-info', '--json', ...allDx]).stdout) as Info[]).map((i) => [i.path, i]));

    for (const a of FAILURES) {
      nixFail.set(a, twin.nixBuild([drvs.get(a)!]));
      dxFail.set(a, twin.drvboxBuild([drvs.get(a)!]));
    }
  });

  after(() => twin?.remove());

  test('the corpus: every derivation built by both, sandboxed', () => {
    assert.equal(nixOut.size, BUILDS.length);
    assert.ok([...dxOut.values()].every((o) => o && Object.keys(o).length > 0), dxStderr);
    assert.doesNotMatch(dxStderr, /WITHOUT a sandbox|warning/);
  });

  test('identical output paths', () => {
    for (const a of BUILDS) assert.deepEqual(dxOut.get(a), nixOut.get(a), `outputs of ${a}`);
  });

  test('identical NAR hashes, sizes, references and content addresses (but for Nix 2.8\'s NIX_ATTRS bug)', () => {
    for (const a of BUILDS) {
      for (const p of Object.values(nixOut.get(a)!)) {
        const n = nixInfo.get(p)!;
        const d = dxInfo.get(p);
        assert.ok(d, `drvbox has no path info for ${p} (${a})`);
        assert.deepEqual(d.references, n.references, `references of ${p} (${a})`);
        assert.equal(d.ca, n.ca, `ca of ${p} (${a})`);
        if (NIX_ATTRS_BUG.has(a)) {
          assert.notEqual(d.narHash, n.narHash, `${a} was expected to differ by Nix 2.8's NIX_ATTRS bug`);
          continue;
        }
        assert.equal(d.narHash, n.narHash, `narHash of ${p} (${a})`);
        assert.equal(d.narSize, n.narSize, `narSize of ${p} (${a})`);
      }
    }
  });

  test('structured attrs: .attrs.json and .attrs.sh identical; NIX_ATTRS_*_FILE name the sandbox build dir (Nix 2.8: the host one)', () => {
    const out = nixOut.get('structured')!.out!;
    for (const f of ['.attrs.json', '.attrs.sh']) {
      assert.equal(readFileSync(twin.dxReal(join(out, f)), 'utf8'), readFileSync(twin.nixReal(join(out, f)), 'utf8'), f);
    }
    assert.equal(readFileSync(twin.dxReal(join(out, 'vars')), 'utf8'), '/build/.attrs.json /build/.attrs.sh structured 42\n');
    const hostDir = join(twin.tmp, 'nix-build-structured.drv-0');
    assert.equal(readFileSync(twin.nixReal(join(out, 'vars')), 'utf8'), `${hostDir}/.attrs.json ${hostDir}/.attrs.sh structured 42\n`);
  });

  test('the environment and the build dir variables the builder saw are byte-identical', () => {
    for (const a of ['envCopy', 'args', 'cores'] as const) {
      const out = nixOut.get(a)!.out!;
      assert.equal(readFileSync(twin.dxReal(out), 'utf8'), readFileSync(twin.nixReal(out), 'utf8'), a);
    }
    assert.equal(
      readFileSync(twin.dxReal(nixOut.get('cores')!.out!), 'utf8'),
      '1 /nix/store /homeless-shelter /path-not-set xterm-256color 2 /build /build /build\n',
    );
  });

  test('kill -9 $$ in the sandbox: the builder is the namespace\'s init in both and survives', () => {
    assert.equal(readFileSync(twin.dxReal(nixOut.get('selfKill')!.out!), 'utf8'), 'survived\n');
  });

  for (const a of FAILURES) {
    test(`${a}: same exit status and message`, () => {
      const n = nixFail.get(a)!;
      const d = dxFail.get(a)!;
      assert.notEqual(n.status, 0, `Nix built ${a}`);
      assert.equal(d.status, n.status, `exit status of ${a}\nNix: ${n.stderr}\ndrvbox: ${d.stderr}`);
      // Host paths differ by design: each has its own root, and drvbox's chroot
      // keeps the store dir at <chroot>/store (Nix: <chroot>/nix/store).
      const host = (lines: string[]) =>
        lines.map((l) => l.replaceAll(twin.nix.root, 'ROOT').replaceAll(twin.dxRoot, 'ROOT').replace(/\.chroot\/nix\/store\//g, '.chroot/store/'));
      assert.deepEqual(host(errorBlock(d.stderr)), host(errorBlock(n.stderr)), `message of ${a}`);
    });
  }

  test('a builder that cannot be executed: a build failure (100) with the errno in the log, in both', () => {
    const d = dxFail.get('noBuilder')!;
    assert.equal(d.status, 100);
    assert.match(d.stderr, /executing '\/nonexistent\/builder': No such file or directory/);
    assert.match(nixFail.get('noBuilder')!.stderr, /error: builder for '.*-no-builder\.drv' failed with exit code 1/);
  });
});
