// `drvbox doctor` (text and --json): the sandbox section of this host and
// what builds will do; a missing launcher is reported with its fix.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { buildsWill } from '../../src/cli/doctor.js';
import { doctorSections } from '../../backends/backend.js';
import { drvbox } from '../helpers/host.js';
import { tempDir } from '../helpers/tmp.js';

describe('doctor', () => {
  test('what builds will do, from the settings and the sandbox', () => {
    const base = { sandbox: 'true', usable: true, fallback: true, diverted: false, platform: 'linux' as const };
    assert.equal(buildsWill(base), 'builds run in the sandbox');
    assert.equal(buildsWill({ ...base, sandbox: 'false' }), 'builds run without a sandbox (sandbox = false)');
    assert.equal(buildsWill({ ...base, sandbox: 'false', diverted: true }), "builds run in the sandbox (sandbox = false, but the diverted store needs it)");
    assert.equal(buildsWill({ ...base, usable: false }), 'builds run WITHOUT a sandbox, with a warning on each (sandbox-fallback = true); fix the sandbox (above) to sandbox them');
    assert.equal(buildsWill({ ...base, usable: false, fallback: false }), "builds fail: the sandbox is unavailable and sandbox-fallback is false; fix it (above) or build with '--sandbox false'");
    assert.match(buildsWill({ ...base, usable: false, diverted: true }), /^builds fail: the store's physical directory differs/);
    assert.equal(buildsWill({ ...base, diverted: true, platform: 'darwin' }), 'builds fail: the store is diverted, which only the Linux sandbox supports');
  });

  test('--json: the sandbox section with every check, the store, what builds do (Linux)', (t) => {
    if (process.platform !== 'linux') throw new Error('cannot run on this host: needs Linux (the Linux sandbox section)');
    const dir = tempDir(t);
    const r = drvbox(['--store-dir', join(dir, 'store'), 'doctor', '--json'], { env: { XDG_CONFIG_HOME: dir, DRVBOX_CONFIG: '', DRVBOX_STORE: '' } });
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as {
      sections: Array<{ title: string; usable: boolean; checks: Array<{ name: string; ok: boolean }>; data: { defaultSandboxPaths: { paths: string[] } } }>;
      builds: string;
      store: { storeDir: string };
    };
    assert.equal(j.sections[0]!.title, 'Linux namespace sandbox');
    assert.deepEqual(j.sections[0]!.checks.map((c) => c.name), ['launcher', 'sysctl', 'libseccomp', 'namespaces', 'apparmor', 'cgroups', '/bin/sh']);
    assert.equal(j.store.storeDir, join(dir, 'store'));
    assert.equal(j.builds, j.sections[0]!.usable ? 'builds run in the sandbox' : 'builds run WITHOUT a sandbox, with a warning on each (sandbox-fallback = true); fix the sandbox (above) to sandbox them');
    assert.ok(j.sections[0]!.data.defaultSandboxPaths.paths[0]!.startsWith('/bin/sh='));
  });

  test('without the launcher: FAIL with the fix, and builds fall back (text)', (t) => {
    if (process.platform !== 'linux') throw new Error('cannot run on this host: needs Linux (the Linux sandbox section)');
    const dir = tempDir(t);
    const r = drvbox(['--store-dir', join(dir, 'store'), 'doctor'], {
      env: { XDG_CONFIG_HOME: dir, DRVBOX_CONFIG: '', DRVBOX_STORE: '', DRVBOX_LAUNCHER: '/nonexistent/drvbox-launcher' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Linux namespace sandbox: UNAVAILABLE$/m);
    assert.match(r.stdout, /^ {2}FAIL launcher: the sandbox launcher is not built: '\/nonexistent\/drvbox-launcher' does not exist \(/m);
    assert.match(r.stdout, /^ {7}fix: install a C compiler \(e\.g\. 'apt-get install gcc'\) and run 'npm run build'; until then build with '--sandbox false'$/m);
    assert.match(r.stdout, /^builds run WITHOUT a sandbox, with a warning on each \(sandbox-fallback = true\); fix the sandbox \(above\) to sandbox them$/m);
    const diverted = drvbox(['--store', join(dir, 'root'), 'doctor'], {
      env: { XDG_CONFIG_HOME: dir, DRVBOX_CONFIG: '', DRVBOX_STORE: '', DRVBOX_LAUNCHER: '/nonexistent/drvbox-launcher' },
    });
    assert.match(diverted.stdout, /^builds fail: the store's physical directory differs from its logical one/m);
  });

  test('the darwin section comes from darwinDoctorFacts; other platforms have none', async () => {
    const [d] = await doctorSections('darwin');
    assert.equal(d!.title, 'macOS sandbox (sandbox-exec)');
    if (process.platform !== 'darwin') {
      assert.equal(d!.usable, false);
      assert.deepEqual(d!.checks.map((c) => [c.name, c.ok]), [['macOS', false]]);
      assert.equal(d!.data.onDarwin, false);
    }
    const [f] = await doctorSections('freebsd');
    assert.deepEqual(f, { title: 'sandbox', usable: false, checks: [{ name: 'platform', ok: false, detail: "no sandbox backend for 'freebsd'" }], notes: [], data: {} });
  });
});
