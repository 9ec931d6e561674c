// warmUp(): the launcher server (and, when builds may be sandboxed, the
// probe) start before the first build asks for them; nothing is started
// where it could not be used, and nothing keeps the process alive. Each case
// runs in its own process: both are per-process singletons.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/host.js';

interface Seen {
  server: boolean;
  probes: number;
  ms: number;
}

function warmUpIn(opts: { sandboxMode: 'true' | 'false' | 'relaxed'; diverted?: boolean }, env: Record<string, string> = {}): Seen {
  const dist = (p: string) => JSON.stringify(join(REPO_ROOT, 'dist', p));
  const script = `
    import { warmUp } from ${dist('backends/backend.js')};
    import { linuxBackend } from ${dist('backends/linux/index.js')};
    import { runningLauncherServer } from ${dist('backends/linux/server.js')};
    let probes = 0;
    const probe = linuxBackend.probe.bind(linuxBackend);
    linuxBackend.probe = () => (probes++, probe());
    const t0 = performance.now();
    warmUp({ sandboxMode: ${JSON.stringify(opts.sandboxMode)}, storeDir: '/nix/store', realStoreDir: ${JSON.stringify(opts.diverted ? '/tmp/x/nix/store' : '/nix/store')} });
    const ms = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 300));
    console.log(JSON.stringify({ server: runningLauncherServer() !== null, probes, ms }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Seen;
}

describe('warmUp on Linux', () => {
  test('sandbox = false: the launcher server starts, the sandbox is not probed; warmUp itself returns at once', () => {
    const seen = warmUpIn({ sandboxMode: 'false' });
    assert.deepEqual({ server: seen.server, probes: seen.probes }, { server: true, probes: 0 });
    assert.ok(seen.ms < 5, `warmUp took ${seen.ms} ms before returning`);
  });

  test('sandbox = true, or false with a diverted store (built in the sandbox anyway): the server and the probe', () => {
    assert.deepEqual(
      (({ server, probes }) => ({ server, probes }))(warmUpIn({ sandboxMode: 'true' })),
      { server: true, probes: 1 },
    );
    assert.deepEqual(
      (({ server, probes }) => ({ server, probes }))(warmUpIn({ sandboxMode: 'false', diverted: true })),
      { server: true, probes: 1 },
    );
  });

  test('one-shot launcher (DRVBOX_LAUNCHER_ONESHOT=1): no server', () => {
    assert.equal(warmUpIn({ sandboxMode: 'false' }, { DRVBOX_LAUNCHER_ONESHOT: '1' }).server, false);
  });

  test('no launcher: nothing started, nothing thrown, the process ends', () => {
    const seen = warmUpIn({ sandboxMode: 'true' }, { DRVBOX_LAUNCHER: '/nonexistent/drvbox-launcher' });
    assert.deepEqual({ server: seen.server, probes: seen.probes }, { server: false, probes: 0 });
  });
});
