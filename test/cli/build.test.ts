// `drvbox build`, `log`, `derivation add|show`, `sandbox explain` through the CLI.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildEnv, drvJson, run, sh } from './build-cli-util.js';

describe('drvbox build (CLI, unsandboxed)', () => {
  test('a .json target: added, built, output path printed; a rebuild is a quiet no-op', (t) => {
    const e = buildEnv(t);
    const d = drvJson(e, 'hello', sh('hello', 'echo "Hello, world!" > $out; echo building hello'));
    const r = run(e, ['build', '--sandbox', 'false', d.file]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, d.outputs.get('out') + '\n');
    assert.equal(r.stderr, `this derivation will be built:\n  ${d.drvPath}\nbuilding '${d.drvPath}'...\n`);
    assert.equal(readFileSync(d.outputs.get('out')!, 'utf8'), 'Hello, world!\n');
    const again = run(e, ['build', '--sandbox', 'false', d.drvPath]);
    assert.equal(again.status, 0);
    assert.equal(again.stdout, d.outputs.get('out') + '\n');
    assert.equal(again.stderr, '');
    assert.deepEqual(readdirSync(e.tmp), []);
    // The log, by derivation and by output.
    assert.equal(run(e, ['log', d.drvPath]).stdout, 'building hello\n');
    assert.equal(run(e, ['log', d.outputs.get('out')!]).stdout, 'building hello\n');
  });

  test('selections (^dev, ^*), out-links as nix-build names them (GC roots), --json results', (t) => {
    const e = buildEnv(t);
    const m = drvJson(e, 'multi', sh('multi', 'echo o > $out; echo d > $dev', { outputs: ['out', 'dev'], env: { outputs: 'out dev' } }));
    const h = drvJson(e, 'h', sh('h', 'echo h > $out'));
    const r = run(e, ['build', '--sandbox', 'false', `${m.file}^*`, h.file, '--out-link', 'res']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, [m.outputs.get('out'), m.outputs.get('dev'), h.outputs.get('out')].join('\n') + '\n');
    assert.equal(readlinkSync(join(e.dir, 'res')), m.outputs.get('out'));
    assert.equal(readlinkSync(join(e.dir, 'res-dev')), m.outputs.get('dev'));
    assert.equal(readlinkSync(join(e.dir, 'res-2')), h.outputs.get('out'));
    const roots = readdirSync(join(e.dir, 'var', 'nix', 'gcroots', 'auto')).map((f) => readlinkSync(join(e.dir, 'var', 'nix', 'gcroots', 'auto', f)));
    assert.deepEqual(roots.sort(), ['res', 'res-2', 'res-dev'].map((n) => join(e.dir, n)).sort());
    const dev = run(e, ['build', '--sandbox', 'false', `${m.drvPath}^dev`]);
    assert.equal(dev.stdout, m.outputs.get('dev') + '\n');
    const j = run(e, ['build', '--sandbox', 'false', '--json', `${m.drvPath}^dev`]);
    assert.deepEqual(JSON.parse(j.stdout), [{ drvPath: m.drvPath, outputs: { dev: m.outputs.get('dev') }, status: 'valid' }]);
    const bad = run(e, ['build', '--sandbox', 'false', `${m.drvPath}^lib`]);
    assert.equal(bad.status, 1);
    assert.equal(bad.stderr, `error: derivation '${m.drvPath}' does not have wanted outputs 'lib'\n`);
  });

  test('--json of a fresh build: status, times, log path', (t) => {
    const e = buildEnv(t);
    const d = drvJson(e, 'j', sh('j', 'echo j > $out'));
    const before = Date.now() / 1000;
    const r = run(e, ['build', '--sandbox', 'false', '--json', d.file]);
    assert.equal(r.status, 0, r.stderr);
    const [res] = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    assert.equal(res!.drvPath, d.drvPath);
    assert.deepEqual(res!.outputs, { out: d.outputs.get('out') });
    assert.equal(res!.status, 'built');
    assert.ok((res!.startTime as number) >= before - 1 && (res!.stopTime as number) >= (res!.startTime as number));
    assert.equal(res!.logPath, join(e.dir, 'var', 'log', 'nix', 'drvs', d.drvPath.split('/').pop()!.slice(0, 2), d.drvPath.split('/').pop()!.slice(2)));
  });

  test('failures: exit 100 with the last log lines and where the log is; timeout 101; bad target 1', (t) => {
    const e = buildEnv(t);
    const d = drvJson(e, 'fail', sh('fail', 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; exit 3'));
    const r = run(e, ['build', '--sandbox', 'false', d.file]);
    assert.equal(r.status, 100);
    assert.equal(r.stdout, '');
    const logPath = join(e.dir, 'var', 'log', 'nix', 'drvs', d.drvPath.split('/').pop()!.slice(0, 2), d.drvPath.split('/').pop()!.slice(2));
    assert.ok(
      r.stderr.endsWith(
        [
          `error: builder for '${d.drvPath}' failed with exit code 3;`,
          '       last 10 log lines:',
          ...Array.from({ length: 10 }, (_, i) => `       > line ${i + 3}`),
          `       For full logs, run 'drvbox log ${d.drvPath}' (${logPath}).`,
          '',
        ].join('\n'),
      ),
      r.stderr,
    );
    assert.equal(run(e, ['log', d.drvPath]).stdout.split('\n').length, 13);
    const slow = drvJson(e, 'slow', sh('slow', '/usr/bin/busybox sleep 20'));
    const s = run(e, ['build', '--sandbox', 'false', '--timeout', '1', slow.file]);
    assert.equal(s.status, 101);
    assert.match(s.stderr, /timed out after 1 seconds/);
    const nope = run(e, ['build', join(e.dir, 'nope.json')]);
    assert.equal(nope.status, 1);
    assert.equal(nope.stderr, `error: '${join(e.dir, 'nope.json')}' is neither a store derivation nor a .drv or .json file\n`);
    const empty = run(e, ['build']);
    assert.equal(empty.status, 1);
    assert.match(empty.stderr, /^error: 'build' needs at least one target/);
    // The output is not valid, but the store knows which derivation was to build it.
    assert.equal(run(e, ['log', d.outputs.get('out')!]).stdout, run(e, ['log', d.drvPath]).stdout);
    assert.equal(run(e, ['log', join(e.storeDir, '00000000000000000000000000000000-x')]).stderr, `error: build log of '${join(e.storeDir, '00000000000000000000000000000000-x')}' is not available: no derivation is known to have built it\n`);
  });

  test('derivation add (.json and .drv) prints the .drv path; derivation show prints Nix\'s JSON', (t) => {
    const e = buildEnv(t);
    const d = drvJson(e, 'shown', sh('shown', 'echo "quote \\" tab\t" > $out'));
    const add = run(e, ['derivation', 'add', d.file]);
    assert.equal(add.status, 0, add.stderr);
    assert.equal(add.stdout, d.drvPath + '\n');
    const show = run(e, ['derivation', 'show', d.drvPath]);
    assert.equal(show.status, 0, show.stderr);
    const j = JSON.parse(show.stdout) as Record<string, { outputs: Record<string, { path: string }>; env: Record<string, string> }>;
    assert.deepEqual(Object.keys(j), [d.drvPath]);
    assert.equal(j[d.drvPath]!.outputs.out!.path, d.outputs.get('out'));
    assert.equal(j[d.drvPath]!.env.out, d.outputs.get('out'));
    assert.ok(show.stdout.startsWith(`{\n  "${d.drvPath}": {\n    "outputs": {\n      "out": {\n        "path": "${d.outputs.get('out')}"\n      }\n    },\n`));
    // The .drv file itself, copied out of the store and added again: same path.
    const copy = join(e.dir, 'copy.drv');
    writeFileSync(copy, readFileSync(d.drvPath));
    assert.equal(run(e, ['derivation', 'add', copy]).stdout, d.drvPath + '\n');
    // An output path shows its deriver once built.
    assert.equal(run(e, ['build', '--sandbox', 'false', d.drvPath]).status, 0);
    assert.equal(run(e, ['derivation', 'show', d.outputs.get('out')!]).stdout, show.stdout);
  });

  test('sandbox explain: none, darwin (on any OS) and linux plans, without building', (t) => {
    const e = buildEnv(t);
    const d = drvJson(e, 'ex', sh('ex', 'echo ex > $out'));
    const none = run(e, ['sandbox', 'explain', '--platform', 'none', d.file]);
    assert.equal(none.status, 0, none.stderr);
    assert.match(none.stdout, new RegExp(`^no sandbox for ${d.drvPath.replace(/\./g, '\\.')} \\(`));
    assert.match(none.stdout, /\n {2}NIX_BUILD_TOP=.*\/nix-build-ex\.drv-0\n/);
    const darwin = run(e, ['sandbox', 'explain', '--platform', 'darwin', d.drvPath]);
    assert.equal(darwin.status, 0, darwin.stderr);
    assert.match(darwin.stdout, /\(version 1\)/);
    const dflt = run(e, ['sandbox', 'explain', '--sandbox', 'false', d.drvPath]);
    assert.equal(dflt.stdout, none.stdout);
    assert.equal(existsSync(d.outputs.get('out')!), false);
    assert.deepEqual(readdirSync(e.tmp), []);
    const bad = run(e, ['sandbox', 'explain', '--platform', 'bsd', d.drvPath]);
    assert.equal(bad.status, 1);
    assert.equal(bad.stderr, "error: invalid --platform 'bsd' (expected linux, darwin or none)\n");
  });

  test('--help tells the flags and the exit codes', (t) => {
    const e = buildEnv(t);
    const h = run(e, ['build', '--help']);
    assert.equal(h.status, 0);
    for (const f of ['--max-jobs', '--cores', '--sandbox', '--check', '--repair', '--keep-failed', '--keep-going', '--timeout', '--max-silent-time', '--out-link', '--no-out-link', '--json']) {
      assert.ok(h.stdout.includes(f), `${f} missing from --help`);
    }
    assert.match(h.stdout, /100 a build failed \(\+1 timeout, \+2 fixed-output hash mismatch, \+4 not deterministic\)/);
  });
});
