// Our worker-protocol client against the real Nix 2.8 daemon
// (`nix-daemon --store ROOT --stdio`, isolated config), compared with what the
// Nix CLI reports for the same store.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { tempDir } from '../helpers/tmp.js';
import { connectDaemon, DaemonError, narOfFile, type LogEvent, type WorkerClient, type WorkerClientOptions } from '../../src/daemon/client.js';
import { BuildStatus, ActivityType } from '../../src/daemon/protocol.js';
import { formatHash, hashBytes } from '../../src/format/hash.js';

const strip = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');

async function daemon(t: TestContext, opts: WorkerClientOptions = {}): Promise<{ o: NixOracle; c: WorkerClient; dir: string }> {
  const dir = tempDir(t, 'drvbox-interop-');
  const o = nixOracle(dir);
  const c = await connectDaemon({ command: 'nix-daemon', args: ['--store', o.root, '--stdio'], env: o.env }, opts);
  t.after(() => c.close());
  return { o, c, dir };
}

function pathInfoJson(o: NixOracle, p: string): Record<string, unknown> {
  return JSON.parse(o.run('nix', ['path-info', '--json', p]).stdout.toString())[0];
}

describe('drvbox client -> Nix 2.8 daemon', () => {
  test('handshake negotiates 1.34 and reads the daemon version', async (t) => {
    const { c } = await daemon(t);
    assert.equal(c.daemonVersion, 0x122);
    assert.equal(c.version, 0x122);
    assert.equal(c.daemonNixVersion, '2.8.0');
  });

  test('AddTextToStore, AddToStore (text, flat, NAR) give the paths and infos Nix reports', async (t) => {
    const { o, c, dir } = await daemon(t);
    const text = await c.addTextToStore('t.txt', 'hello\n');
    assert.equal(o.run('nix-instantiate', ['--eval', '--json', '-E', 'builtins.toFile "t.txt" "hello\\n"']).stdout.toString(), JSON.stringify(text));
    assert.equal(await c.isValidPath(text), true);

    const file = join(dir, 'hello.txt');
    writeFileSync(file, 'hello\n');
    const viaNar = await c.addToStore({ name: 'hello.txt', method: { kind: 'fixed', recursive: true, algo: 'sha256' } }, narOfFile(Buffer.from('hello\n')));
    assert.equal(viaNar.path, o.run('nix-store', ['--add', file]).stdout.toString().trim());
    const j = pathInfoJson(o, viaNar.path);
    assert.equal(j.narHash, formatHash(viaNar.narHash, 'sri'));
    assert.equal(j.narSize, viaNar.narSize);
    assert.equal(j.ca, viaNar.ca);

    const flat = await c.addToStore({ name: 'hello.txt', method: { kind: 'fixed', recursive: false, algo: 'sha256' } }, Buffer.from('hello\n'));
    assert.equal(flat.path, o.run('nix-store', ['--add-fixed', 'sha256', file]).stdout.toString().trim());
    assert.equal(flat.ca, `fixed:${formatHash(hashBytes('sha256', 'hello\n'))}`);

    const withRef = await c.addToStore({ name: 'r', method: { kind: 'text' }, references: [text] }, Buffer.from(`see ${text}`));
    assert.deepEqual(pathInfoJson(o, withRef.path).references, [text]);
    assert.deepEqual(await c.queryReferrers(text), [withRef.path]);
  });

  test('QueryPathInfo matches nix path-info; unknown paths are null / clean errors', async (t) => {
    const { o, c } = await daemon(t);
    const p = await c.addTextToStore('q', 'query me');
    const info = (await c.queryPathInfo(p))!;
    const j = pathInfoJson(o, p);
    assert.equal(j.narHash, formatHash(info.narHash, 'sri'));
    assert.equal(j.narSize, info.narSize);
    assert.equal(j.registrationTime, info.registrationTime);
    assert.deepEqual(j.references ?? [], info.references);
    const none = '/nix/store/00000000000000000000000000000000-x';
    assert.equal(await c.queryPathInfo(none), null);
    await assert.rejects(c.ensurePath(none), (e: unknown) => e instanceof DaemonError && /path '\/nix\/store\/0{32}-x' does not exist and cannot be created/.test(strip((e as Error).message)));
    assert.equal(await c.isValidPath(p), true, 'still usable after an error');
    assert.deepEqual(await c.queryValidPaths([p, none]), [p]);
  });

  test('NarFromPath streams the same bytes as nix store dump-path', async (t) => {
    const { o, c, dir } = await daemon(t);
    const file = join(dir, 'big');
    writeFileSync(file, Buffer.alloc(200_000, 'b'));
    const p = o.run('nix-store', ['--add', file]).stdout.toString().trim();
    const parts: Buffer[] = [];
    await c.narFromPath(p, (b) => void parts.push(b));
    const ours = Buffer.concat(parts);
    const theirs = o.run('nix', ['store', 'dump-path', p]).stdout;
    assert.equal(createHash('sha256').update(ours).digest('hex'), createHash('sha256').update(theirs).digest('hex'));
    assert.equal(ours.length, theirs.length);
    assert.equal(await c.isValidPath(p), true, 'in sync after the NAR');
  });

  test('AddToStoreNar and AddMultipleToStore import paths Nix then reports', async (t) => {
    const { o, c } = await daemon(t);
    const mk = (i: number) => {
      const nar = narOfFile(Buffer.from(`imported ${i}\n`));
      return {
        info: {
          path: `/nix/store/${String(i).repeat(32).slice(0, 32)}-imp${i}`,
          deriver: null,
          narHash: hashBytes('sha256', nar),
          references: [],
          registrationTime: 0,
          narSize: nar.length,
          ultimate: false,
          sigs: [],
          ca: null,
        },
        nar,
      };
    };
    const one = mk(1);
    await c.addToStoreNar(one.info, one.nar, { checkSigs: false });
    assert.equal(pathInfoJson(o, one.info.path).narHash, formatHash(one.info.narHash, 'sri'));
    const more = [mk(2), mk(3)];
    await c.addMultipleToStore(more, more.length, { checkSigs: false });
    for (const m of more) assert.equal(pathInfoJson(o, m.info.path).narSize, m.nar.length);
    // a wrong hash is refused by Nix; the connection survives
    const bad = { ...mk(4), info: { ...mk(4).info, narHash: hashBytes('sha256', 'nope') } };
    await assert.rejects(c.addToStoreNar(bad.info, bad.nar, { checkSigs: false }), (e: unknown) => e instanceof DaemonError && /hash mismatch/.test(strip((e as Error).message)));
    assert.equal(await c.isValidPath(bad.info.path), false);
  });

  test('BuildPaths / BuildPathsWithResults of a tiny derivation, with activity logs', async (t) => {
    const logs: LogEvent[] = [];
    const { o, c } = await daemon(t, { onLog: (e) => logs.push(e), options: { verbosity: 3 } });
    const expr = 'derivation { name = "tiny"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo hi > $out"]; }';
    const [drv] = o.instantiate(expr);
    const out = o.run('nix-store', ['-q', '--outputs', drv!]).stdout.toString().trim();
    assert.deepEqual(await c.queryDerivationOutputMap(drv!), new Map([['out', out]]));
    assert.deepEqual((await c.queryMissing([{ kind: 'built', drvPath: drv!, outputs: ['out'] }])).willBuild, [drv]);
    const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath: drv!, outputs: ['out'] }]);
    assert.equal(r!.status, BuildStatus.Built, r!.errorMsg);
    assert.equal(r!.builtOutputs[0]!.outPath, out);
    assert.match(r!.builtOutputs[0]!.id, /^sha256:[0-9a-f]{64}!out$/);
    assert.equal(readFileSync(join(o.root, out), 'utf8'), 'hi\n');
    assert.ok(logs.some((l) => l.type === 'startActivity' && l.activityType === ActivityType.Build && l.text.includes(drv!)));
    // already valid now; BuildPaths answers plainly
    await c.buildPaths([{ kind: 'built', drvPath: drv!, outputs: [] }]);
    await assert.rejects(c.buildPaths([{ kind: 'opaque', path: '/nix/store/00000000000000000000000000000000-x' }]), DaemonError);
  });

  test('an older announced version (1.24) makes both sides use the old AddToStore framing', async (t) => {
    const { o, c, dir } = await daemon(t, { clientVersion: 0x118 });
    assert.equal(c.version, 0x118);
    assert.equal(c.daemonNixVersion, null);
    const file = join(dir, 'old');
    writeFileSync(file, 'abc');
    const flat = await c.addToStore({ name: 'old', method: { kind: 'fixed', recursive: false, algo: 'sha1' } }, Buffer.from('abc'));
    assert.equal(flat.path, o.run('nix-store', ['--add-fixed', 'sha1', file]).stdout.toString().trim());
    const rec = await c.addToStore({ name: 'old', method: { kind: 'fixed', recursive: true, algo: 'sha256' } }, narOfFile(Buffer.from('abc')));
    assert.equal(rec.path, o.run('nix-store', ['--add', file]).stdout.toString().trim());
    await assert.rejects(c.ensurePath('/nix/store/00000000000000000000000000000000-x'), DaemonError);
  });
});
