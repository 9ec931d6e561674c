// The real Nix 2.8 client inside a drvbox sandbox, as in the recursive-nix
// design note: the builder runs nix-build of an inner expression, nix-store
// -qR, nix path-info --json and nix-store --add through NIX_REMOTE (the
// build's own daemon), and its $out symlinks the inner output. Afterwards
// drvbox and Nix 2.8 reading the same store agree that the inner output is
// in the outer output's closure; the inner output is the path Nix computes.
// Forbidden operations fail with the seed's messages. As root and as the
// unprivileged test user. Nix always runs with an isolated NIX_CONF_DIR.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { CLI, HostPreconditionError, requireLinux, requireRoot, requireTool } from '../helpers/host.js';
import { nixOracle } from '../helpers/nix.js';
import { formatHash, hashBytes } from '../../src/format/hash.js';
import { tempDir } from '../helpers/tmp.js';
import { ensureTestUser, TEST_USER, type Who } from '../build/recursive-fixture.js';

const strip = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');
/** What the Nix client needs of the host: /usr/bin (sh, nix) and its libraries. */
const SANDBOX_PATHS = '/bin=/usr/bin /usr/bin /usr/lib /lib=/usr/lib /lib64=/usr/lib64';
const INNER_EXPR = 'derivation { name = "inner"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo inner > $out" ]; }';
const FOD_EXPR =
  'derivation { name = "fod"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo x > $out" ]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "0000000000000000000000000000000000000000000000000000"; }';

/** The same fixed-output derivation with its right hash (sha256 of "x\\n"). */
const FOD_OK_EXPR = FOD_EXPR.replace('0000000000000000000000000000000000000000000000000000', formatHash(hashBytes('sha256', 'x\n'), 'nix32'));
const ALLOWED_SCRIPT = `export PATH=/usr/bin HOME=$TMPDIR
set -e
cd $TMPDIR
fod=$(nix-build --no-out-link $tools/fod-ok.nix)
cat "$fod" > $out
`;

const MAIN_SCRIPT = `set -e
export PATH=/usr/bin HOME=$TMPDIR
cd $TMPDIR
mkdir $out
echo "hello from inside" > note.txt
nix-store --add note.txt > $out/added
cat "$(cat $out/added)" > $out/added-contents
inner=$(nix-build --no-out-link $tools/inner.nix)
echo "$inner" > $out/inner-path
cat "$inner" > $out/inner-contents
nix-store -qR "$inner" > $out/inner-qR
nix path-info --json "$inner" > $out/path-info.json
ln -s "$inner" $out/inner
`;

const FORBIDDEN_SCRIPT = `export PATH=/usr/bin HOME=$TMPDIR
cd $TMPDIR
mkdir $out
try() { name=$1; shift; "$@" > $out/$name.out 2> $out/$name.err; echo $? > $out/$name.rc; }
try query nix-store -q --references $outside
try path-info nix path-info $outside
try dump nix store dump-path $outside
try build-outside nix-store -r $outsideDrv
try realise-unknown nix-store -r /nix/store/00000000000000000000000000000000-nope
try fixed-output nix-build --no-out-link $tools/fod.nix
try gc nix-store --gc
exit 0
`;

interface Env {
  dir: string;
  root: string;
  who: Who;
  run(cmd: string, args: string[], env?: Record<string, string>): { status: number | null; stdout: string; stderr: string };
  drvbox(args: string[]): { status: number | null; stdout: string; stderr: string };
  nixConf: string;
  /** Options for every build of this environment. */
  extraOptions: string[];
}

function setup(t: TestContext, who: Who): Env {
  requireLinux('the Linux sandbox');
  requireTool('nix-build', 'apt-get install -y nix-bin');
  if (who === 'rootless') ensureTestUser();
  const dir = tempDir(t, 'drvbox-recursive-nix-');
  chmodSync(dir, 0o755);
  const root = join(dir, 'root');
  const nixConf = join(dir, 'nix-conf');
  mkdirSync(nixConf);
  writeFileSync(join(nixConf, 'nix.conf'), 'substituters =\nexperimental-features = nix-command\n');
  if (who === 'rootless') spawnSync('chown', ['-R', TEST_USER, dir]);
  const baseEnv: Record<string, string> = {
    PATH: '/usr/bin:/bin',
    HOME: dir,
    TMPDIR: '/tmp',
    DRVBOX_CONFIG: '',
    XDG_CONFIG_HOME: join(dir, 'xdg'),
    NIX_CONF_DIR: nixConf,
    XDG_CACHE_HOME: join(dir, 'cache'),
  };
  const run: Env['run'] = (cmd, args, env = {}) => {
    const full = { ...baseEnv, ...env };
    const r =
      who === 'rootless'
        ? spawnSync('runuser', ['-u', TEST_USER, '--', 'env', '-i', ...Object.entries(full).map(([k, v]) => `${k}=${v}`), cmd, ...args], { encoding: 'utf8', cwd: dir })
        : spawnSync(cmd, args, { encoding: 'utf8', cwd: dir, env: full });
    return { status: r.status, stdout: r.stdout, stderr: strip(r.stderr) };
  };
  return {
    dir,
    root,
    who,
    run,
    nixConf,
    extraOptions: [],
    drvbox: (args) => run(process.execPath, [CLI, '--store', root, ...args]),
  };
}

/** Adds the builder's tools (nix.conf for the client inside, the inner expressions) as one store path. */
function addTools(e: Env): string {
  const src = join(e.dir, 'tools');
  mkdirSync(src);
  writeFileSync(join(src, 'nix.conf'), 'substituters =\nexperimental-features = nix-command\n');
  writeFileSync(join(src, 'inner.nix'), INNER_EXPR + '\n');
  writeFileSync(join(src, 'fod.nix'), FOD_EXPR + '\n');
  writeFileSync(join(src, 'fod-ok.nix'), FOD_OK_EXPR + '\n');
  writeFileSync(join(src, 'allowed.sh'), ALLOWED_SCRIPT);
  writeFileSync(join(src, 'main.sh'), MAIN_SCRIPT);
  writeFileSync(join(src, 'forbidden.sh'), FORBIDDEN_SCRIPT);
  if (e.who === 'rootless') spawnSync('chown', ['-R', TEST_USER, src]);
  const r = e.drvbox(['store', 'add', src, '--name', 'tools']);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

function outerJson(e: Env, name: string, tools: string, script: string, env: Record<string, string> = {}): string {
  const file = join(e.dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      name,
      system: 'x86_64-linux',
      builder: '/bin/sh',
      args: [`${tools}/${script}`],
      inputSrcs: [tools],
      env: { tools, NIX_CONF_DIR: tools, requiredSystemFeatures: 'recursive-nix', ...env },
    }),
  );
  return file;
}

function build(e: Env, file: string, options: string[] = []): string {
  options = [...e.extraOptions, ...options];
  const r = e.drvbox(['build', file, '--option', 'sandbox', 'true', '--option', 'sandbox-fallback', 'false', '--option', 'sandbox-paths', SANDBOX_PATHS, ...options]);
  assert.equal(r.status, 0, `drvbox build failed (${r.status}):\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /warning/, 'built in the sandbox, without a fallback');
  const out = r.stdout.trim();
  assert.match(out, /^\/nix\/store\/[a-z0-9]{32}-/);
  return out;
}

const real = (e: Env, p: string) => join(e.root, p);
const read = (e: Env, p: string) => readFileSync(real(e, p), 'utf8');

for (const who of ['current', 'rootless'] as const) {
  describe(`Nix 2.8 inside a drvbox sandbox with recursive-nix (${who})`, () => {
    test('nix-build, nix-store -qR, nix path-info --json and nix-store --add from the builder; $out refers to the inner output; drvbox and Nix agree on the closure', (t) => {
      const e = setup(t, who);
      const o = nixOracle(join(e.dir, 'oracle'));
      const tools = addTools(e);
      const out = build(e, outerJson(e, 'outer', tools, 'main.sh'));

      // The inner output is the path Nix computes for the same expression.
      const [innerDrv] = o.instantiate(INNER_EXPR);
      const inner = o.run('nix-store', ['-q', '--outputs', innerDrv!]).stdout.toString().trim();
      assert.equal(read(e, `${out}/inner-path`), `${inner}\n`);
      assert.equal(read(e, `${out}/inner-contents`), 'inner\n');
      assert.equal(readlinkSync(real(e, `${out}/inner`)), inner);
      assert.equal(read(e, `${out}/inner-qR`), `${inner}\n`);

      // nix path-info --json inside: the censored info of the inner output, hashed as Nix hashes it.
      const [info] = JSON.parse(read(e, `${out}/path-info.json`)) as Array<Record<string, unknown>>;
      const narHash = spawnSync('nix', ['hash', 'path', '--type', 'sha256', real(e, inner)], { encoding: 'utf8', env: { ...o.env } }).stdout.trim();
      assert.match(narHash, /^sha256-[A-Za-z0-9+/]{43}=$/);
      assert.deepEqual(info, { path: inner, narHash, narSize: 120, references: [] });

      // nix-store --add inside: the path Nix computes for the same file.
      const note = join(e.dir, 'note.txt');
      writeFileSync(note, 'hello from inside\n');
      const added = o.run('nix-store', ['--add', note]).stdout.toString().trim();
      assert.equal(read(e, `${out}/added`), `${added}\n`);
      assert.equal(read(e, `${out}/added-contents`), 'hello from inside\n');

      // The reference to the inner output was found after the build: it is in $out's closure.
      const q = e.drvbox(['store', 'query', '--requisites', out]);
      assert.equal(q.status, 0, q.stderr);
      assert.deepEqual(q.stdout.trim().split('\n').sort(), [added, inner, out].sort());
      const refs = e.drvbox(['store', 'query', '--references', out]);
      assert.deepEqual(refs.stdout.trim().split('\n').sort(), [added, inner].sort());
      // Nix 2.8 reading the drvbox store (its own isolated conf dir) agrees.
      const nix = e.run('nix-store', ['--store', e.root, '-qR', out]);
      assert.equal(nix.status, 0, nix.stderr);
      assert.deepEqual(nix.stdout.trim().split('\n').sort(), [added, inner, out].sort());
    });

    test('forbidden operations fail with clear messages: query, dump and build outside the closure, nix-store -r of an unknown path, a fixed-output inner build', (t) => {
      const e = setup(t, who);
      const tools = addTools(e);
      const secret = join(e.dir, 'secret');
      writeFileSync(secret, 'not an input\n');
      if (who === 'rootless') spawnSync('chown', [TEST_USER, secret]);
      const outside = e.drvbox(['store', 'add', secret]).stdout.trim();
      const otherJson = join(e.dir, 'other.json');
      writeFileSync(otherJson, JSON.stringify({ name: 'other', system: 'x86_64-linux', builder: '/bin/sh', args: ['-c', 'echo > $out'] }));
      const outsideDrv = e.drvbox(['derivation', 'add', otherJson]).stdout.trim();
      assert.match(outsideDrv, /-other\.drv$/);
      const out = build(e, outerJson(e, 'forbidden', tools, 'forbidden.sh', { outside, outsideDrv }));

      const result = (name: string) => ({
        rc: Number(read(e, `${out}/${name}.rc`)),
        err: strip(read(e, `${out}/${name}.err`))
          .split('\n')
          .filter((l) => l !== '' && !l.startsWith("warning: you don't have Internet access"))
          .join('\n'),
      });
      assert.deepEqual(result('query'), { rc: 1, err: `error: path '${outside}' is not valid` });
      assert.deepEqual(result('path-info'), { rc: 1, err: `don't know how to build these paths:\n  ${outside}\nerror: path '${outside}' is not valid` });
      assert.deepEqual(result('dump'), { rc: 1, err: `don't know how to build these paths:\n  ${outside}\nerror: path '${outside}' is not valid` });
      assert.deepEqual(result('build-outside'), {
        rc: 1,
        err: `don't know how to build these paths:\n  ${outsideDrv}\nerror: cannot build '${outsideDrv}!*' in recursive Nix because path is unknown`,
      });
      const nope = '/nix/store/00000000000000000000000000000000-nope';
      assert.deepEqual(result('realise-unknown'), {
        rc: 1,
        err: `don't know how to build these paths:\n  ${nope}\nerror: cannot build '${nope}' in recursive Nix because path is unknown`,
      });
      const fod = result('fixed-output');
      assert.equal(fod.rc, 1);
      const fodDrv = /\/nix\/store\/[a-z0-9]{32}-fod\.drv/.exec(fod.err)?.[0] ?? '';
      assert.match(
        fod.err,
        /^this derivation will be built:\n {2}\/nix\/store\/[a-z0-9]{32}-fod\.drv\nerror: cannot build fixed-output derivation '\/nix\/store\/[a-z0-9]{32}-fod\.drv' in recursive Nix: it could reach the network from inside the sandbox \(set 'recursive-nix-allow-fixed-output = true' to allow it\)$/,
      );
      assert.deepEqual(result('gc'), { rc: 0, err: '' });
      assert.equal(read(e, `${out}/gc.out`), '0 store paths deleted, 0.00 MiB freed\n');
      // The outputs name the .drv the client added (a reference, as in Nix);
      // nothing the builder was denied became one.
      const refs = e.drvbox(['store', 'query', '--references', out]);
      assert.equal(refs.stdout, `${fodDrv}\n`);
    });

    test('recursive-nix-allow-fixed-output = true lets the fixed-output inner build run', (t) => {
      const e = setup(t, who);
      const tools = addTools(e);
      const out = build(e, outerJson(e, 'allowed', tools, 'allowed.sh'), ['--option', 'recursive-nix-allow-fixed-output', 'true']);
      assert.equal(read(e, out), 'x\n');
    });
  });
}

describe('Nix 2.8 inside a drvbox sandbox with recursive-nix, as a build user (root, build-users-group)', () => {
  test('the daemon socket belongs to the build user the builder runs as: nix-build inside works, $out refers to the inner output', (t) => {
    requireRoot('build users need root');
    if (spawnSync('getent', ['group', 'nixbld']).status !== 0) {
      throw new HostPreconditionError("cannot run on this host: no 'nixbld' group with build users (apt-get install -y nix-bin creates it)");
    }
    const e = setup(t, 'current');
    e.extraOptions.push('--option', 'build-users-group', 'nixbld');
    const tools = addTools(e);
    const out = build(e, outerJson(e, 'outer', tools, 'main.sh'));
    const inner = read(e, `${out}/inner-path`).trim();
    assert.equal(read(e, `${out}/inner-contents`), 'inner\n');
    const q = e.drvbox(['store', 'query', '--requisites', out]);
    assert.ok(q.stdout.trim().split('\n').includes(inner), q.stdout);
  });
});
