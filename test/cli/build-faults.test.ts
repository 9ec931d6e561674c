// Faults: drvbox killed with SIGKILL mid-build, two drvbox processes building
// the same derivation, a builder flooding a gigabyte of log.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI } from '../helpers/host.js';
import { buildEnv, drvJson, run, sh, spawnDrvbox } from './build-cli-util.js';

function buildProcesses(tmp: string): number[] {
  const res: number[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
      const env = readFileSync(`/proc/${n}/environ`);
      if (env.includes(Buffer.from(`NIX_BUILD_TOP=${tmp}/`))) res.push(Number(n));
    } catch {
      // gone, or another user's
    }
  }
  return res;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('build faults', () => {
  test('kill -9 of drvbox mid-build: nothing registered, nothing left running; a rerun builds it again', async (t) => {
    const e = buildEnv(t);
    const gate = join(e.dir, 'gate');
    const d = drvJson(
      e,
      'interrupted',
      sh(
        'interrupted',
        `echo partial > $out; /usr/bin/busybox setsid /usr/bin/busybox sleep 300 </dev/null >/dev/null 2>&1 & ` +
          `while [ ! -e ${gate} ]; do /usr/bin/busybox sleep 0.05; done; echo complete > $out`,
      ),
    );
    const out = d.outputs.get('out')!;
    const p = spawnDrvbox(e, ['build', '--sandbox', 'false', d.file]);
    await until(() => existsSync(out), 10_000, 'the partial output');
    await until(() => buildProcesses(e.tmp).length >= 2, 5000, 'the builder and its daemon');
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));
    await until(() => buildProcesses(e.tmp).length === 0, 5000, 'the build processes to die');
    const info = run(e, ['path-info', out]);
    assert.equal(info.status, 1);
    assert.equal(info.stderr, `error: path '${out}' is not valid\n`);
    writeFileSync(gate, '');
    const again = run(e, ['build', '--sandbox', 'false', d.drvPath]);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(again.stdout, out + '\n');
    assert.match(again.stderr, /building '.*-interrupted\.drv'\.\.\./);
    assert.equal(readFileSync(out, 'utf8'), 'complete\n');
    assert.deepEqual(buildProcesses(e.tmp), []);
  });

  test('two drvbox processes building the same derivation at once: built once, both print it', async (t) => {
    const e = buildEnv(t);
    const counter = join(e.dir, 'counter');
    const d = drvJson(e, 'once', sh('once', `echo run >> ${counter}; /usr/bin/busybox sleep 1; echo once > $out`));
    assert.equal(run(e, ['derivation', 'add', d.file]).status, 0);
    const procs = [0, 1].map(() => spawnDrvbox(e, ['build', '--sandbox', 'false', d.drvPath]));
    const results = await Promise.all(
      procs.map(
        (p) =>
          new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
            let out = '';
            let err = '';
            p.stdout!.on('data', (c: Buffer) => (out += c.toString()));
            p.stderr!.on('data', (c: Buffer) => (err += c.toString()));
            p.once('close', (code) => resolve({ code, out, err }));
          }),
      ),
    );
    for (const r of results) {
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, d.outputs.get('out') + '\n');
    }
    assert.equal(readFileSync(counter, 'utf8'), 'run\n');
    assert.equal(results.filter((r) => r.err.includes('waiting for lock on')).length, 1);
  });

  test('a builder flooding 1 GiB of log: the log file gets it all, drvbox\'s memory stays flat', (t) => {
    for (const tool of ['/usr/bin/yes', '/usr/bin/head', '/usr/bin/time']) {
      if (!existsSync(tool)) throw new Error(`cannot run on this host: '${tool}' not found (apt-get install coreutils time)`);
    }
    const e = buildEnv(t);
    const size = 1 << 30;
    const d = drvJson(e, 'flood', sh('flood', `/usr/bin/yes 'a line of build output, as a compiler would print it' | /usr/bin/head -c ${size}; echo done > $out`));
    const rss = join(e.dir, 'rss');
    const r = spawnSync('/usr/bin/time', ['-f', '%M', '-o', rss, process.execPath, CLI, '--store-dir', e.storeDir, 'build', '--sandbox', 'false', '--quiet', d.file], {
      env: e.env,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    const base = d.drvPath.split('/').pop()!;
    const log = join(e.dir, 'var', 'log', 'nix', 'drvs', base.slice(0, 2), base.slice(2));
    assert.equal(statSync(log).size, size);
    const peakKiB = Number(readFileSync(rss, 'utf8').trim().split('\n').pop());
    // Node and the store alone take ~90 MiB here; a gigabyte buffered anywhere would show.
    assert.ok(peakKiB < 150 * 1024, `peak RSS ${Math.round(peakKiB / 1024)} MiB while streaming 1 GiB of log`);
  });
});
