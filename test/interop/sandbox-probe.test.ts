// Differential: what a builder sees of its sandbox under Nix 2.8 and under
// drvbox, both sandboxed as root (test/fixtures/build-interop/sandbox-probe.nix
// records ls /, /etc/passwd, /etc/group, /etc/hosts, hostname and domain
// name, id, its environment, the capability / no_new_privs / seccomp lines of
// /proc/self/status, the id maps, /dev, modes of /tmp, /build and the store,
// its pid, umask and network interfaces). Identical, section by section; the
// fixed-output variant (host network and name resolution) is compared by the
// hash both report for it (its specified hash is deliberately wrong).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/host.js';
import { errorBlock } from './build-twin.js';
import { SandboxTwin, type Ran } from './sandbox-twin.js';

const PROBE = join(REPO_ROOT, 'test', 'fixtures', 'build-interop', 'sandbox-probe.nix');

function sections(text: string): Map<string, string> {
  const res = new Map<string, string>();
  for (const part of text.split(/^== /m).slice(1)) {
    const nl = part.indexOf('\n');
    res.set(part.slice(0, nl), part.slice(nl + 1));
  }
  return res;
}

describe('sandbox probe: Nix 2.8 and drvbox, sandboxed, as root', () => {
  let twin: SandboxTwin;
  let drvs: Map<string, string>;
  let nix: Ran;
  let dx: Ran;
  let nixFixed: Ran;
  let dxFixed: Ran;
  let nixText = '';
  let dxText = '';

  before(async () => {
    twin = await SandboxTwin.create();
    drvs = twin.instantiate(PROBE, ['probe', 'fixedProbe']);
    twin.share(drvs.values());
    nix = twin.nixBuild([drvs.get('probe')!]);
    dx = twin.drvboxBuild([drvs.get('probe')!]);
    if (nix.status === 0) nixText = readFileSync(twin.nixReal(nix.stdout.trim()), 'utf8');
    if (dx.status === 0) dxText = readFileSync(twin.dxReal(dx.stdout.trim()), 'utf8');
    nixFixed = twin.nixBuild([drvs.get('fixedProbe')!]);
    dxFixed = twin.drvboxBuild([drvs.get('fixedProbe')!]);
  });

  after(() => twin?.remove());

  test('both build the probe, at the same output path', () => {
    assert.equal(nix.status, 0, nix.stderr);
    assert.equal(dx.status, 0, dx.stderr);
    assert.equal(dx.stdout, nix.stdout);
  });

  test('identical, section by section', () => {
    const n = sections(nixText);
    const d = sections(dxText);
    assert.deepEqual([...d.keys()], [...n.keys()]);
    assert.deepEqual(
      [...n.keys()],
      ['ls /', 'passwd', 'group', 'hosts', 'etc', 'hostname', 'id', 'env', 'status', 'uid_map', 'dev', 'tmp', 'cwd', 'pid', 'umask', 'net'],
    );
    for (const [k, v] of n) assert.equal(d.get(k), v, `section '${k}'`);
    assert.equal(dxText, nixText);
  });

  test('what both show, pinned: identity, host name, capabilities, seccomp, no_new_privs', () => {
    const d = sections(dxText);
    assert.equal(d.get('id'), 'uid=1000(nixbld) gid=100(nixbld)\n');
    assert.equal(d.get('hostname'), 'localhost\n(none)\n');
    assert.equal(
      d.get('passwd'),
      'root:x:0:0:Nix build user:/build:/noshell\nnixbld:x:1000:100:Nix build user:/build:/noshell\nnobody:x:65534:65534:Nobody:/:/noshell\n',
    );
    assert.equal(d.get('group'), 'root:x:0:\nnixbld:!:100:\nnogroup:x:65534:\n');
    assert.match(d.get('status')!, /^CapInh:\t0{16}\nCapPrm:\t0{16}\nCapEff:\t0{16}\nCapBnd:\t[0-9a-f]{16}\nCapAmb:\t0{16}\nNoNewPrivs:\t1\nSeccomp:\t2\n$/);
    assert.equal(d.get('uid_map')!.replace(/ +/g, ' '), ' 1000 0 1\n 100 0 1\n');
    assert.equal(d.get('pid'), '1\n');
    assert.equal(d.get('net')!.trim(), 'lo');
    assert.equal(d.get('tmp'), '/tmp 1777\n/build 700\n/nix/store 1775\n');
  });

  test('the fixed-output probe (host network, resolv.conf, nsswitch.conf): the same content, by the hash both report', () => {
    assert.equal(nixFixed.status, 102, nixFixed.stderr);
    assert.equal(dxFixed.status, 102, dxFixed.stderr);
    const got = (r: Ran) => /got: +(sha256-\S+)/.exec(r.stderr)?.[1];
    assert.ok(got(nixFixed), nixFixed.stderr);
    assert.equal(got(dxFixed), got(nixFixed), `drvbox's fixed-output probe differs from Nix's:\n${dxFixed.stderr}`);
    assert.deepEqual(errorBlock(dxFixed.stderr), errorBlock(nixFixed.stderr));
  });
});
