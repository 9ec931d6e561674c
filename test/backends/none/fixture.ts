// A BuildRequest for the unsandboxed backend's tests, and a build's log.
import type { BuildRequest, RunningBuild } from '../../../backends/backend.js';

/** The whole log of a build, once it ends. */
export async function collect(r: RunningBuild): Promise<string> {
  const chunks: Buffer[] = [];
  r.log.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((res) => {
    r.log.once('end', res);
    r.log.once('close', res);
  });
  return Buffer.concat(chunks).toString('utf8');
}

export function request(over: Partial<BuildRequest> = {}): BuildRequest {
  return {
    drvPath: '/s/store/0000000000000000000000000000000a-x.drv',
    drvName: 'x',
    system: 'x86_64-linux',
    builder: '/bin/sh',
    args: ['-c', 'echo hi'],
    env: { PATH: '/path-not-set', HOME: '/homeless-shelter', Zed: 'z', a: 'lower', 'é': 'e-acute', B: 'b' },
    storeDir: '/s/store',
    realStoreDir: '/s/store',
    buildDirHost: '/tmp/nix-build-x.drv-0',
    buildDirSandbox: '/tmp/nix-build-x.drv-0',
    inputPaths: [],
    scratchOutputs: { out: '/s/store/0000000000000000000000000000000b-x' },
    fixedOutput: false,
    sandboxPaths: [],
    impureHostDeps: [],
    allowedImpureHostDeps: [],
    requiredSystemFeatures: [],
    additionalSandboxProfile: '',
    allowLocalNetworking: false,
    sandboxMode: 'false',
    settings: {
      sandboxBuildDir: '/build',
      sandboxDevShmSize: '50%',
      filterSyscalls: true,
      allowNewPrivileges: false,
      useCgroups: false,
      darwinLogSandboxViolations: false,
      sandboxFallback: true,
    },
    buildUser: null,
    daemonSocketHost: null,
    ...over,
  };
}
