// A drvbox store is a Nix store: same schema, same layout; Nix 2.8 verifies
// it, and Nix and drvbox answer queries on it identically. A Nix-built
// closure (with .drv files, derivers, text and fixed-output paths) is
// exported by Nix and imported by drvbox; drvbox also adds paths itself.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, mkdirSync, chmodSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { tempDir, dropTempDir } from '../helpers/tmp.js';
import { dx, lines } from '../cli/store-cli-util.js';

const EXPR = `
let
  dep = derivation { name = "dep"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo dep > $out"]; };
  multi = derivation { name = "multi"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = ["out" "dev"];
    args = ["-c" "echo \${dep} > $out; echo $out > $dev"]; };
  fixed = derivation { name = "fixed"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "printf fixed > $out"];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "sha256-mSqTRVxx/t02rJu8Q5lSwEHPYURZWEcq9Hkmm42HNRM="; };
in derivation { name = "top"; system = "x86_64-linux"; builder = "/bin/sh";
  args = ["-c" "echo \${multi} \${multi.dev} \${fixed} > $out; echo \${builtins.toFile "note" "a note"} >> $out"]; }
`;

function sqliteMaster(dbPath: string): unknown[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db.prepare('select type, name, tbl_name, sql from sqlite_master order by type, name').all();
  } finally {
    db.close();
  }
}

function tree(rel: string): string[] {
  const out: string[] = [];
  const walk = (d: string, prefix: string) => {
    for (const n of readdirSync(d, { withFileTypes: true })) {
      const p = prefix ? `${prefix}/${n.name}` : n.name;
      out.push(p + (n.isDirectory() ? '/' : n.isSymbolicLink() ? '@' : ''));
      if (n.isDirectory()) walk(join(d, n.name), p);
    }
  };
  walk(rel, '');
  return out.sort();
}

describe('Nix 2.8 reads and verifies a drvbox store', () => {
  let dir: string;
  let nix: NixOracle;
  let top: string;
  let drv: string;
  let drvboxRoot: string;
  let nixOnDrvbox: NixOracle;

  after(() => dropTempDir(dir));
  before(() => {
    dir = tempDir(null);
    nix = nixOracle(join(dir, 'oracle'));
    writeFileSync(join(dir, 't.nix'), EXPR);
    drv = nix.run('nix-instantiate', [join(dir, 't.nix')]).stdout.toString().trim();
    top = nix.run('nix-build', ['--no-out-link', join(dir, 't.nix')]).stdout.toString().trim();
    // Nix's export of the closure of the output and of its .drv.
    const closure = lines(nix.run('nix-store', ['-qR', '--include-outputs', drv]).stdout.toString());
    const stream = nix.run('nix-store', ['--export', ...closure]).stdout;
    drvboxRoot = join(dir, 'drvbox-root');
    const imp = dx(drvboxRoot, ['store', 'import'], stream);
    if (imp.status !== 0) throw new Error(`drvbox store import failed: ${imp.stderr}`);
    // Nix pointed at the drvbox store (its own config dir, --store the drvbox root).
    nixOnDrvbox = { ...nixOracle(join(dir, 'nix-on-drvbox')), root: drvboxRoot };
    nixOnDrvbox.run = (cmd, args, opts) => nix.run(cmd, ['--store', drvboxRoot, ...args], opts);
  });

  test('sqlite_master, schema files and layout are those of a store Nix creates', () => {
    const fresh = join(dir, 'fresh');
    assert.equal(dx(fresh, ['store', 'verify']).status, 0);
    const nixDb = join(nix.root, 'nix/var/nix/db');
    const ourDb = join(fresh, 'nix/var/nix/db');
    assert.deepEqual(sqliteMaster(join(ourDb, 'db.sqlite')), sqliteMaster(join(nixDb, 'db.sqlite')));
    for (const f of ['schema', 'ca-schema']) assert.equal(readFileSync(join(ourDb, f), 'utf8'), readFileSync(join(nixDb, f), 'utf8'), f);
    const nixTree = tree(join(nix.root, 'nix/var/nix')).filter((p) => !/^(gcroots\/auto\/|temproots\/|db\/(reserved|db\.sqlite-))/.test(p) && !p.startsWith('gcroots/per-user/') && !p.startsWith('profiles/per-user/'));
    const ourTree = tree(join(fresh, 'nix/var/nix')).filter((p) => !/^(gcroots\/auto\/|temproots\/|db\/db\.sqlite-)/.test(p));
    for (const p of nixTree) assert.ok(ourTree.includes(p), `missing ${p} (drvbox has ${ourTree.join(' ')})`);
  });

  test('nix-store --verify --check-contents passes on the drvbox store', () => {
    // Add paths with drvbox itself too: nar, flat and text with references.
    const src = join(dir, 'src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'sub', 'x'), 'x');
    chmodSync(join(src, 'sub', 'x'), 0o755);
    symlinkSync('sub/x', join(src, 'l'));
    const a = lines(dx(drvboxRoot, ['store', 'add', src]).out)[0]!;
    writeFileSync(join(dir, 'txt'), `refers to ${a} and ${top}`);
    const b = lines(dx(drvboxRoot, ['store', 'add', '--mode', 'text', '--reference', a, '--reference', top, join(dir, 'txt')]).out)[0]!;
    const c = lines(dx(drvboxRoot, ['store', 'add', '--mode', 'flat', '--type', 'sha512', join(dir, 'txt')]).out)[0]!;
    const r = nixOnDrvbox.run('nix-store', ['--verify', '--check-contents'], { allowFail: true });
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /modified|disappeared|error/);
    const info = JSON.parse(nixOnDrvbox.run('nix', ['path-info', '--json', b, c]).stdout.toString());
    assert.deepEqual(info, JSON.parse(dx(drvboxRoot, ['path-info', '--json', b, c]).out));
  });

  test('nix-store -qR, --references, --referrers, --outputs, --deriver agree (same order)', () => {
    for (const args of [
      ['-qR', top],
      ['-qR', drv],
      ['-qR', '--include-outputs', drv],
      ['-q', '--references', top],
      ['-q', '--referrers', lines(nix.run('nix-store', ['-q', '--references', top]).stdout.toString())[0]!],
      ['-q', '--outputs', drv],
      ['-q', '--deriver', top],
    ]) {
      const theirs = nixOnDrvbox.run('nix-store', args).stdout.toString();
      const flag = args.includes('-qR') ? '--requisites' : args[1]!;
      const ours = dx(drvboxRoot, ['store', 'query', flag, ...(args.includes('--include-outputs') ? ['--include-outputs'] : []), args[args.length - 1]!]);
      assert.equal(ours.out, theirs, `${args.join(' ')}: ${ours.stderr}`);
    }
  });

  test('nix path-info --json (-r, --closure-size) equals drvbox path-info --json', () => {
    for (const flags of [['-r'], ['-r', '--closure-size'], ['--closure-size']]) {
      for (const [paths, nixFlags] of [[[top], []], [[drv], ['--derivation']]] as const) {
        const theirs = JSON.parse(nixOnDrvbox.run('nix', ['path-info', '--json', ...nixFlags, ...flags, ...paths]).stdout.toString());
        const ours = dx(drvboxRoot, ['path-info', '--json', ...flags, ...paths]);
        assert.equal(ours.status, 0, ours.stderr);
        assert.deepEqual(JSON.parse(ours.out), theirs, `${flags.join(' ')} ${paths.join(' ')}`);
      }
    }
    // And the metadata drvbox imported is what Nix registered in its own store (less registration time).
    const strip = (l: Array<Record<string, unknown>>) => l.map(({ registrationTime, ultimate, ...rest }) => (void registrationTime, void ultimate, rest));
    const inNix = JSON.parse(nix.run('nix', ['path-info', '--json', '-r', top]).stdout.toString());
    const inDrvbox = JSON.parse(dx(drvboxRoot, ['path-info', '--json', '-r', top]).out);
    // Imports carry no content address (nix-store --import drops it too).
    assert.deepEqual(strip(inDrvbox), strip(inNix).map(({ ca, ...rest }) => (void ca, rest)));
  });

  test('drvbox opens a store Nix created and Nix verifies it afterwards', () => {
    const add = dx(nix.root, ['store', 'add', '--mode', 'text', join(dir, 't.nix')]);
    assert.equal(add.status, 0, add.stderr);
    assert.deepEqual(JSON.parse(dx(nix.root, ['path-info', '--json', '-r', top]).out), JSON.parse(nix.run('nix', ['path-info', '--json', '-r', top]).stdout.toString()));
    const r = nix.run('nix-store', ['--verify', '--check-contents'], { allowFail: true });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(dx(nix.root, ['store', 'verify', '--check-contents']).status, 0);
  });
});
