// desugar against what Nix 2.8 gave its builders (test/fixtures/build/prepare):
// the exact envp, every file of the build dir (passAsFile, .attrs.json,
// .attrs.sh, exportReferencesGraph files), the rewritten argv. Plus the
// errors Nix reports for a bad exportReferencesGraph, and unit cases.
// DRVBOX_ACCEPT_FIXTURES=1 rebuilds the fixtures from Nix first.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { parseDerivation } from '../../src/format/aterm.js';
import type { Derivation } from '../../src/format/derivation.js';
import { hashBytes } from '../../src/format/hash.js';
import { hashPlaceholder } from '../../src/format/store-path.js';
import { desugar, passAsFileName, type DesugarInput } from '../../src/build/desugar.js';
import { closureInfosFromStore, type PathInfoLike } from '../../src/build/export-references-graph.js';
import { planOutputs } from '../../src/build/output-plan.js';
import {
  captured,
  capturedFiles,
  drvFile,
  ensureFixtures,
  loadFailures,
  loadMeta,
  type PrepareMeta,
} from './nix-fixtures.js';
import { fixtureStore, inputClosure, readDrv } from './fixture-store.js';

const SD = '/nix/store';

let meta: PrepareMeta;
before(() => {
  ensureFixtures();
  meta = loadMeta();
});

function environ(buf: Buffer): Array<[string, string]> {
  const parts = buf.toString('utf8').split('\0');
  assert.equal(parts.pop(), '', 'environ ends with NUL');
  return parts.map((kv) => {
    const eq = kv.indexOf('=');
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  });
}

function base(drv: Derivation, drvPath: string, closureInfos: DesugarInput['closureInfos']): DesugarInput {
  return {
    storeDir: SD,
    drvPath,
    drv,
    plan: planOutputs({ storeDir: SD, drvPath, drv, needsHashRewrite: false, mode: 'normal', pathExists: () => false }),
    buildDirSandbox: '/build',
    cores: meta.cores,
    callerEnv: meta.callerEnv,
    closureInfos,
  };
}

describe('desugar: identical to Nix 2.8 (golden, from the oracle)', () => {
  for (const attr of ['env-basic', 'structured', 'legacy-graph'] as const) {
    test(`${attr}: envp, build-dir files and argv`, async (t) => {
      const store = await fixtureStore(t, meta);
      const drvPath = meta.attrs[attr]!;
      const drv = readDrv(drvPath);
      const d = desugar(base(drv, drvPath, closureInfosFromStore(store, inputClosure(store, drv))));

      // Nix 2.8 names the host build dir in NIX_ATTRS_*_FILE even in its
      // sandbox (a bug); drvbox names the build dir as the builder sees it.
      const expected = environ(captured(attr, 'environ')).map(([k, v]): [string, string] =>
        k === 'NIX_ATTRS_JSON_FILE' ? [k, '/build/.attrs.json'] : k === 'NIX_ATTRS_SH_FILE' ? [k, '/build/.attrs.sh'] : [k, v],
      );
      assert.deepEqual(d.env, expected);

      const names = d.files.map((f) => f.name).sort();
      assert.deepEqual(names, capturedFiles(attr));
      for (const f of d.files) {
        assert.equal(Buffer.from(f.contents).toString('utf8'), captured(attr, `files/${f.name}`).toString('utf8'), `file ${f.name}`);
      }
      assert.equal(d.builder, '/bin/sh');
    });
  }

  test('env-basic: args get the placeholders rewritten', async (t) => {
    const store = await fixtureStore(t, meta);
    const drvPath = meta.attrs['env-basic']!;
    const drv = readDrv(drvPath);
    const d = desugar(base(drv, drvPath, closureInfosFromStore(store, inputClosure(store, drv))));
    assert.equal(d.args[2] + '\n', captured('env-basic', 'arg0').toString('utf8'));
    assert.equal(d.args[0], '-c');
  });

  test('fixed-output: NIX_OUTPUT_CHECKED and impureEnvVars from the caller', () => {
    const drvPath = meta.attrs['fixed-capture']!;
    const drv = readDrv(drvPath);
    const d = desugar(base(drv, drvPath, () => []));
    assert.deepEqual(d.env, environ(Buffer.from(meta.fixedEnviron, 'base64')));
    assert.ok(d.env.some(([k, v]) => k === 'UNSET_PROXY' && v === ''));
    assert.ok(d.env.some(([k, v]) => k === 'FOO_PROXY' && v === 'proxy-value'));
  });
});

describe('desugar: exportReferencesGraph errors as Nix reports them', () => {
  const failures = () => loadFailures();
  for (const c of ['erg-odd', 'erg-bad-name', 'erg-non-store', 'erg-not-input'] as const) {
    test(c, async (t) => {
      const f = failures()[c]!;
      const store = await fixtureStore(t, meta);
      const drv = parseDerivation(drvFile(f.drvPath), c);
      // The failure store built dep and dep2 too: register them from the prepare store (same paths).
      const inputs = inputClosure(store, drv);
      assert.throws(
        () => desugar(base(drv, f.drvPath, closureInfosFromStore(store, inputs))),
        (e: Error & { exitCode?: number }) => {
          assert.equal('error: ' + e.message, f.error);
          assert.equal(e.exitCode, f.status);
          return true;
        },
      );
    });
  }
});

describe('desugar: units', () => {
  const drvPath = '/nix/store/00000000000000000000000000000000-unit.drv';
  const out = '/nix/store/11111111111111111111111111111111-unit';
  function unitDrv(env: Record<string, string>, outputs?: Derivation['outputs']): Derivation {
    return {
      name: 'unit',
      outputs: outputs ?? new Map([['out', { kind: 'inputAddressed', path: out }]]),
      inputDrvs: new Map(),
      inputSrcs: new Set(),
      platform: 'x86_64-linux',
      builder: '/bin/sh',
      args: ['-c', `echo ${hashPlaceholder('out')}`],
      env: new Map(Object.entries({ out, ...env })),
    };
  }
  const noClosure = () => {
    throw new Error('no closure expected');
  };
  const input = (drv: Derivation, over: Partial<DesugarInput> = {}): DesugarInput => ({
    storeDir: SD,
    drvPath,
    drv,
    plan: planOutputs({ storeDir: SD, drvPath, drv, needsHashRewrite: true, mode: 'normal', pathExists: () => false }),
    buildDirSandbox: '/tmp/b',
    cores: 7,
    callerEnv: { FOO: 'bar' },
    closureInfos: noClosure,
    ...over,
  });

  test('the fixed variables, in byte order, after the derivation variables they override', () => {
    const d = desugar(input(unitDrv({ HOME: '/h', NIX_BUILD_TOP: '/x', TERM: 'dumb', Ä: 'umlaut', a: '1' })));
    assert.deepEqual(d.env, [
      ['HOME', '/h'],
      ['NIX_BUILD_CORES', '7'],
      ['NIX_BUILD_TOP', '/tmp/b'],
      ['NIX_LOG_FD', '2'],
      ['NIX_STORE', '/nix/store'],
      ['PATH', '/path-not-set'],
      ['PWD', '/tmp/b'],
      ['TEMP', '/tmp/b'],
      ['TEMPDIR', '/tmp/b'],
      ['TERM', 'xterm-256color'],
      ['TMP', '/tmp/b'],
      ['TMPDIR', '/tmp/b'],
      ['a', '1'],
      ['out', out],
      ['Ä', 'umlaut'],
    ]);
    assert.deepEqual(d.args, ['-c', `echo ${out}`]);
    assert.equal(d.structuredAttrs, null);
  });

  test('a valid output redirected to a fallback path: env, args and passAsFile see the scratch path', () => {
    const drv = unitDrv({ passAsFile: 'text', text: `at ${out}/bin and ${hashPlaceholder('out')}` });
    const plan = planOutputs({ storeDir: SD, drvPath, drv, needsHashRewrite: true, mode: 'check', pathExists: (p) => p === out });
    const scratch = plan.outputs.get('out')!.scratchPath;
    assert.notEqual(scratch, out);
    const d = desugar(input(drv, { plan }));
    assert.equal(new Map(d.env).get('out'), scratch);
    assert.deepEqual(d.args, ['-c', `echo ${scratch}`]);
    assert.deepEqual(d.files, [{ name: passAsFileName('text'), contents: `at ${scratch}/bin and ${scratch}` }]);
    assert.equal(new Map(d.env).get('textPath'), `/tmp/b/${passAsFileName('text')}`);
    assert.equal(new Map(d.env).has('text'), false);
  });

  test('passAsFile file name is .attr- + nix32(sha256(name))', () => {
    assert.equal(passAsFileName('big2'), '.attr-1w7dv048i2j9v1ldjb3k7a3fpg7n4h20p13k4crwng0x72xv077p');
    assert.equal(hashBytes('sha256', 'big2').digest.length, 32);
  });

  test('impureEnvVars are ignored for input-addressed derivations', () => {
    const d = desugar(input(unitDrv({ impureEnvVars: 'FOO' })));
    assert.equal(new Map(d.env).has('FOO'), false);
    assert.equal(new Map(d.env).has('NIX_OUTPUT_CHECKED'), false);
  });

  test('impure derivations get impureEnvVars but not NIX_OUTPUT_CHECKED', () => {
    const drv = unitDrv({ impureEnvVars: 'FOO MISSING' }, new Map([['out', { kind: 'impure', method: 'recursive', hashAlgo: 'sha256' }]]));
    const d = desugar(input(drv, { plan: planOutputs({ storeDir: SD, drvPath, drv, needsHashRewrite: true, mode: 'normal', pathExists: () => false }) }));
    const env = new Map(d.env);
    assert.equal(env.get('FOO'), 'bar');
    assert.equal(env.get('MISSING'), '');
    assert.equal(env.has('NIX_OUTPUT_CHECKED'), false);
  });

  test('bad __json: Nix message, exit 1', () => {
    assert.throws(
      () => desugar(input(unitDrv({ __json: '{"a":' }))),
      (e: Error & { code: string; exitCode: number }) => {
        assert.match(e.message, /^cannot process __json attribute of '00000000000000000000000000000000-unit\.drv': /);
        assert.equal(e.code, 'E_BAD_STRUCTURED_ATTRS');
        assert.equal(e.exitCode, 1);
        return true;
      },
    );
  });

  test('structured impureEnvVars must be a list of strings', () => {
    const drv = unitDrv({ __json: '{"impureEnvVars":"FOO"}' }, new Map([['out', { kind: 'impure', method: 'recursive', hashAlgo: 'sha256' }]]));
    assert.throws(
      () => desugar(input(drv, { plan: planOutputs({ storeDir: SD, drvPath, drv, needsHashRewrite: true, mode: 'normal', pathExists: () => false }) })),
      /^BadDerivationAttr: attribute 'impureEnvVars' of derivation '00000000000000000000000000000000-unit\.drv' must be a list of strings$/,
    );
  });

  test('structured exportReferencesGraph with a non-store path is an error (exit 1)', () => {
    assert.throws(
      () => desugar(input(unitDrv({ __json: '{"exportReferencesGraph":{"g":"/etc/passwd"}}' }))),
      (e: Error & { exitCode: number }) => e.message === "path '/etc/passwd' is not in the Nix store" && e.exitCode === 1,
    );
  });

  test('structured exportReferencesGraph: a single path, a list, duplicates, null', () => {
    const dep = '/nix/store/22222222222222222222222222222222-dep';
    const seen: string[][] = [];
    const closureInfos = (roots: string[]): PathInfoLike[] => {
      seen.push(roots);
      if (roots.length === 0) return [];
      return [{ path: dep, narHash: hashBytes('sha256', 'x'), narSize: 8, references: [dep] }];
    };
    const d = desugar(input(unitDrv({ __json: `{"exportReferencesGraph":{"a":"${dep}","b":["${dep}","${dep}"],"c":null}}` }), { closureInfos }));
    assert.deepEqual(seen, [[dep], [dep], []]);
    const json = Buffer.from(d.files.find((f) => f.name === '.attrs.json')!.contents).toString();
    assert.match(json, /"a":\[\{"closureSize":8,"narHash":"sha256:[0-9a-z]{52}","narSize":8,"path":"[^"]+-dep","references":\["[^"]+-dep"\]\}\]/);
    assert.match(json, /"c":\[\]/);
  });
});
