// Differential test of the derivation formats against Nix 2.8: every
// derivation of test/fixtures/derivations/interop.nix (one nix-instantiate
// call) must give drvbox the same .drv path, byte-identical ATerm, the same
// output paths when recomputed from an output-less form, and the same JSON
// as `nix show-derivation`, both ways.
//
// The unit-test fixtures beside interop.nix are Nix's own files for these
// derivations; DRVBOX_ACCEPT_FIXTURES=1 rewrites them from Nix.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { REPO_ROOT } from '../helpers/host.js';
import { removeTree, tempDir } from '../helpers/tmp.js';
import { parseDerivation, printDerivation } from '../../src/format/aterm.js';
import { derivationNameFromPath, outputPaths, type Derivation } from '../../src/format/derivation.js';
import {
  derivationsToJson,
  draftFromDerivation,
  parseDerivationInput,
  parseDerivationsJson,
  printDerivationsJson,
  type DerivationJson,
} from '../../src/format/derivation-json.js';
import { completeDerivation, derivationPath, type DrvHash } from '../../src/format/hash-modulo.js';
import { DEFAULT_STORE_DIR, downstreamPlaceholder } from '../../src/format/store-path.js';

const SD = DEFAULT_STORE_DIR;
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'derivations');
const EXPR_FILE = join(FIXTURES, 'interop.nix');
const ACCEPT = process.env.DRVBOX_ACCEPT_FIXTURES === '1';
/** Left out of the unit-test fixtures for their size. */
const NOT_FIXTURES = new Set(['big', 'chain-50']);

interface World {
  dir: string;
  nix: NixOracle;
  /** attribute -> .drv path */
  attrs: Map<string, string>;
  /** every .drv in the closure, sorted */
  all: string[];
  bytes: Map<string, Buffer>;
  showText: string;
  showJson: Record<string, DerivationJson>;
  read: (p: string) => Derivation;
}

let world: World | undefined;
function w(): World {
  if (!world) throw new Error('setup failed (see the error of the before hook)');
  return world;
}

function setup(): World {
  const dir = tempDir(null, 'drvbox-interop-drv-');
  const nix = nixOracle(dir, 'extra-experimental-features = impure-derivations');
  const expr = `builtins.mapAttrs (n: d: d.drvPath) (import ${EXPR_FILE})`;
  const out = nix.run('nix-instantiate', ['--eval', '--strict', '--json', '--read-write-mode', '-E', expr]);
  const attrs = new Map(Object.entries(JSON.parse(out.stdout.toString()) as Record<string, string>));
  const closure = nix.run('nix-store', ['-qR', ...new Set(attrs.values())]).stdout.toString().trim().split('\n');
  const all = closure.filter((p) => p.endsWith('.drv')).sort();
  const bytes = new Map(all.map((p) => [p, readFileSync(join(nix.root, p))]));
  const showText = nix.run('nix', ['show-derivation', ...all]).stdout.toString();
  const parsed = new Map<string, Derivation>();
  const read = (p: string): Derivation => {
    let d = parsed.get(p);
    if (!d) {
      const b = bytes.get(p) ?? readFileSync(join(nix.root, p));
      parsed.set(p, (d = parseDerivation(b, derivationNameFromPath(SD, p))));
    }
    return d;
  };
  return { dir, nix, attrs, all, bytes, showText, showJson: JSON.parse(showText), read };
}

/** Runs `check` for every attribute as a subtest, so each failure names its derivation. */
async function eachAttr(t: import('node:test').TestContext, check: (attr: string, drvPath: string) => void): Promise<void> {
  for (const [attr, p] of w().attrs) await t.test(attr, () => check(attr, p));
}

function complete(draft: Parameters<typeof completeDerivation>[0]) {
  const cache = new Map<string, DrvHash>(); // fresh: every input is hashed from its .drv again
  return completeDerivation(draft, { resolve: w().read, cache });
}

function stripOutputs(json: DerivationJson, outputsToo: boolean): Record<string, unknown> {
  const j = JSON.parse(JSON.stringify(json)) as DerivationJson;
  for (const [o, spec] of Object.entries(j.outputs)) {
    delete spec.path;
    delete j.env[o];
  }
  const res: Record<string, unknown> = { ...j };
  if (outputsToo) {
    // Nix consumes __contentAddressed / __impure; the input form reads them from env.
    const kinds = new Set(Object.values(json.outputs).map((o) => (o.impure ? 'impure' : o.hashAlgo && !o.hash ? 'ca' : '')));
    if (kinds.has('ca')) j.env.__contentAddressed = '1';
    if (kinds.has('impure')) j.env.__impure = '1';
    delete res.outputs;
  }
  return res;
}

describe('derivations vs Nix 2.8 (nix-instantiate, nix show-derivation)', () => {
  before(() => {
    world = setup();
  });
  after(() => {
    if (world) removeTree(world.dir);
  });

  test('instantiates at least 30 derivations covering every kind', () => {
    const { attrs, read } = w();
    assert.ok(attrs.size >= 30, `only ${attrs.size} derivations`);
    const kinds = new Map<string, string[]>();
    for (const [a, p] of attrs) {
      for (const o of read(p).outputs.values()) {
        const k = o.kind === 'caFixed' ? `caFixed:${o.method}:${o.hash.algo}` : o.kind;
        kinds.set(k, [...(kinds.get(k) ?? []), a]);
      }
    }
    for (const k of ['inputAddressed', 'deferred', 'caFloating', 'impure', 'caFixed:flat:sha1', 'caFixed:flat:sha256', 'caFixed:flat:sha512', 'caFixed:recursive:sha1', 'caFixed:recursive:sha256', 'caFixed:recursive:sha512']) {
      assert.ok(kinds.has(k), `no derivation with a ${k} output`);
    }
    assert.ok(read(attrs.get('structured')!).env.has('__json'));
    assert.equal(read(attrs.get('pass-as-file')!).env.get('passAsFile'), 'foo bar');
    assert.equal(read(attrs.get('big')!).env.get('big')!.length, 1 << 20);
    assert.ok(read(attrs.get('multi')!).outputs.size === 4);
    assert.ok(read(attrs.get('tofile-refs')!).inputSrcs.size === 2);
    // chain-50 has 50 input derivations below it.
    let depth = 0;
    for (let d = read(attrs.get('chain-50')!); d.inputDrvs.size > 0; depth++) d = read([...d.inputDrvs.keys()][0]!);
    assert.equal(depth, 50);
  });

  test('parses every .drv and prints it back byte for byte, with the same .drv path', async (t) => {
    await eachAttr(t, (_a, p) => {
      const d = w().read(p);
      assert.ok(Buffer.from(printDerivation(d), 'utf8').equals(w().bytes.get(p)!), 'ATerm differs');
      assert.equal(derivationPath(d), p);
    });
  });

  test('recomputes output paths and env from the output-less derivation', async (t) => {
    await eachAttr(t, (_a, p) => {
      const d = w().read(p);
      const c = complete(draftFromDerivation(d, { dropPaths: true }));
      assert.deepEqual(outputPaths(SD, c.drv), outputPaths(SD, d));
      assert.equal(c.drvPath, p);
      assert.equal(printDerivation(c.drv), w().bytes.get(p)!.toString('utf8'));
    });
  });

  test('from the JSON of nix show-derivation: byte-identical ATerm; our JSON deep-equals Nix', async (t) => {
    const fromJson = parseDerivationsJson(w().showText);
    await eachAttr(t, (_a, p) => {
      const d = fromJson.get(p)!;
      assert.equal(printDerivation(d), w().bytes.get(p)!.toString('utf8'));
      assert.equal(derivationPath(d), p);
      assert.deepEqual(derivationsToJson([[p, w().read(p)]]), { [p]: w().showJson[p] });
    });
  });

  test('the output-less JSON input (keyed, bare with name, attributes only) completes to the same derivation', async (t) => {
    await eachAttr(t, (_a, p) => {
      const json = w().showJson[p]!;
      const keyed = parseDerivationInput({ [p]: stripOutputs(json, false) });
      assert.equal(keyed.claimedPath, p);
      const bare = parseDerivationInput({ name: derivationNameFromPath(SD, p), ...stripOutputs(json, false) });
      const attrsOnly = parseDerivationInput({ [p]: stripOutputs(json, true) });
      for (const input of [keyed, bare, attrsOnly]) {
        const c = complete(input.draft);
        assert.equal(c.drvPath, p);
        assert.equal(printDerivation(c.drv), w().bytes.get(p)!.toString('utf8'));
      }
    });
  });

  test('nix show-derivation text is byte-identical to ours', () => {
    const { all, read, showText } = w();
    assert.equal(printDerivationsJson(all.map((p) => [p, read(p)])), showText);
  });

  test('dependents of CA derivations use Nix 2.8 downstream placeholders', () => {
    const { attrs, read } = w();
    const user = read(attrs.get('ca-user')!);
    const script = user.args[1]!;
    assert.ok(script.includes(downstreamPlaceholder(SD, attrs.get('ca')!, 'out')), script);
    assert.ok(script.includes(downstreamPlaceholder(SD, attrs.get('ca-multi')!, 'dev')), script);
    const userUser = read(attrs.get('ca-user-user')!);
    assert.ok(userUser.args[1]!.includes(downstreamPlaceholder(SD, attrs.get('ca-user')!, 'out')));
    assert.deepEqual([...user.outputs.values()], [{ kind: 'deferred' }]);
    assert.equal(user.env.get('out'), '');
  });

  test('the unit-test fixtures are the files Nix 2.8 writes', () => {
    const { attrs, nix, bytes, showJson } = w();
    const wanted = nix.run('nix-store', ['-qR', ...[...attrs].filter(([a]) => !NOT_FIXTURES.has(a)).map(([, p]) => p)])
      .stdout.toString().trim().split('\n').filter((p) => p.endsWith('.drv')).sort();
    const names = new Set(wanted.map((p) => basename(p)));
    if (ACCEPT) {
      for (const f of readdirSync(FIXTURES)) {
        if (f.endsWith('.drv') || f.endsWith('.drv.json')) rmSync(join(FIXTURES, f));
      }
      for (const p of wanted) {
        writeFileSync(join(FIXTURES, basename(p)), bytes.get(p)!);
        writeFileSync(join(FIXTURES, basename(p) + '.json'), nix.run('nix', ['show-derivation', p]).stdout);
      }
    }
    const present = readdirSync(FIXTURES).filter((f) => f.endsWith('.drv')).sort();
    assert.deepEqual(present, [...names].sort(), 'fixture set differs from Nix (DRVBOX_ACCEPT_FIXTURES=1 rewrites it)');
    for (const p of wanted) {
      const f = join(FIXTURES, basename(p));
      assert.ok(readFileSync(f).equals(bytes.get(p)!), `${f} differs from Nix's .drv`);
      assert.deepEqual(JSON.parse(readFileSync(f + '.json', 'utf8')), { [p]: showJson[p] }, `${f}.json differs from Nix`);
    }
  });
});
