// backendFor: which backend a build gets, as Nix's tryLocalBuild decides it.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { backendFor, backendNamed, type BackendForInput } from '../../backends/backend.js';

const DRV = '/s/store/0000000000000000000000000000000a-x.drv';

function input(over: Partial<BackendForInput> = {}): BackendForInput {
  return {
    drvPath: DRV,
    sandboxMode: 'false',
    noChroot: false,
    sandboxedDerivation: true,
    storeDir: '/s/store',
    realStoreDir: '/s/store',
    sandboxFallback: true,
    ...over,
  };
}

describe('backendFor', () => {
  test('sandbox = false: the unsandboxed backend, no warning', async () => {
    const c = await backendFor(input());
    assert.equal(c.backend.name, 'none');
    assert.equal(c.warning, null);
    assert.equal(c.backend.caps.needsHashRewrite, true);
  });

  test('relaxed: fixed-output derivations and __noChroot run unsandboxed', async () => {
    for (const over of [{ sandboxedDerivation: false }, { noChroot: true }]) {
      const c = await backendFor(input({ sandboxMode: 'relaxed', hostPlatform: 'freebsd', sandboxFallback: false, ...over }));
      assert.equal(c.backend.name, 'none');
      assert.equal(c.warning, null);
    }
  });

  test("sandbox = true with __noChroot: Nix's error", async () => {
    await assert.rejects(backendFor(input({ sandboxMode: 'true', noChroot: true })), {
      message: `derivation '${DRV}' has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'`,
    });
  });

  test('a host without a sandbox: sandbox-fallback builds unsandboxed with a warning every time; without it, an error', async () => {
    const a = await backendFor(input({ sandboxMode: 'true', hostPlatform: 'freebsd' }));
    assert.equal(a.backend.name, 'none');
    assert.match(a.warning ?? '', new RegExp(`^warning: building '${DRV}' WITHOUT a sandbox`));
    const b = await backendFor(input({ sandboxMode: 'true', hostPlatform: 'freebsd' }));
    assert.equal(b.warning, a.warning);
    await assert.rejects(backendFor(input({ sandboxMode: 'true', hostPlatform: 'freebsd', sandboxFallback: false })), /required for sandboxing/);
  });

  test('a diverted store is never built unsandboxed: refused where there is no sandbox (Nix issue 16291)', async () => {
    await assert.rejects(
      backendFor(input({ sandboxMode: 'true', hostPlatform: 'freebsd', realStoreDir: '/root/s/store' })),
      /the store's physical directory '\/root\/s\/store' differs from '\/s\/store'.*sandboxing is unavailable/,
    );
  });

  test('backendNamed: each backend can explain a plan without building', async () => {
    const none = await backendNamed('none');
    assert.equal(none.backend.name, 'none');
    const darwin = await backendNamed('darwin');
    assert.equal(darwin.backend.name, 'darwin');
    assert.equal(darwin.backend.caps.needsHashRewrite, true);
  });
});
