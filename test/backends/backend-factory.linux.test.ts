// backendFor on Linux, with the real probe of the namespace backend.
import { before, test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { backendFor } from '../../backends/backend.js';
import { requireLinux } from '../helpers/host.js';
import { requireSandbox } from '../helpers/sandbox.js';

before(() => requireSandbox('backendFor choosing the namespace backend'));

describe('backendFor on Linux', () => {
  test('sandbox = true: the namespace backend when the probe passes', async () => {
    requireLinux('the Linux probe');
    const c = await backendFor({
      drvPath: '/nix/store/0000000000000000000000000000000a-x.drv',
      sandboxMode: 'true',
      noChroot: false,
      sandboxedDerivation: true,
      storeDir: '/nix/store',
      realStoreDir: '/tmp/root/nix/store',
      sandboxFallback: false,
    });
    assert.equal(c.backend.name, 'linux');
    assert.equal(c.warning, null);
    assert.equal(c.planHost.platform, 'linux');
  });

  test('sandbox = false with a diverted store: built in the sandbox anyway (as Nix), and said so every time', async () => {
    requireLinux('the Linux probe');
    const c = await backendFor({
      drvPath: '/nix/store/0000000000000000000000000000000a-x.drv',
      sandboxMode: 'false',
      noChroot: false,
      sandboxedDerivation: true,
      storeDir: '/nix/store',
      realStoreDir: '/tmp/root/nix/store',
      sandboxFallback: true,
    });
    assert.equal(c.backend.name, 'linux');
    assert.equal(
      c.warning,
      "warning: building '/nix/store/0000000000000000000000000000000a-x.drv' in the sandbox although 'sandbox' is 'false': the store's physical directory '/tmp/root/nix/store' differs from '/nix/store', and only the sandbox can show its paths there",
    );
  });
});
