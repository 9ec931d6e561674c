// doctor facts: SystemVersion.plist through `plist`, sandbox-exec, Rosetta,
// and which darwin systems can be built.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { build as buildPlist, buildBinary } from 'plist';
import { darwinDoctorFacts, parseSystemVersion, ROSETTA_RUNTIME, SYSTEM_VERSION_PLIST, type DarwinHostFacts } from '../../../backends/darwin/doctor.js';

const SYSTEM_VERSION = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>BuildID</key>
	<string>7A1E5C2E-1E9E-11EF-A4A4-AE0AA30A7C0B</string>
	<key>ProductBuildVersion</key>
	<string>23F79</string>
	<key>ProductCopyright</key>
	<string>1983-2024 Apple Inc.</string>
	<key>ProductName</key>
	<string>macOS</string>
	<key>ProductUserVisibleVersion</key>
	<string>14.5</string>
	<key>ProductVersion</key>
	<string>14.5</string>
</dict>
</plist>
`;

function host(over: Partial<DarwinHostFacts> & { sysctls?: Record<string, number>; files?: string[] } = {}): DarwinHostFacts {
  const files = new Set(over.files ?? [SYSTEM_VERSION_PLIST, '/usr/bin/sandbox-exec']);
  return {
    platform: 'darwin',
    arch: 'arm64',
    readFile: (p) => (p === SYSTEM_VERSION_PLIST && files.has(p) ? Buffer.from(SYSTEM_VERSION) : null),
    exists: (p) => files.has(p),
    executable: (p) => files.has(p),
    sysctlInt: (n) => over.sysctls?.[n] ?? null,
    ...over,
  };
}

describe('darwin doctor facts', () => {
  test('SystemVersion.plist, XML or binary', () => {
    assert.deepEqual(parseSystemVersion(SYSTEM_VERSION), { productName: 'macOS', productVersion: '14.5', buildVersion: '23F79' });
    const bin = buildBinary({ ProductName: 'macOS', ProductVersion: '15.1', ProductBuildVersion: '24B83' });
    assert.equal(Buffer.from(bin.subarray(0, 8)).toString('latin1'), 'bplist00');
    assert.deepEqual(parseSystemVersion(bin), { productName: 'macOS', productVersion: '15.1', buildVersion: '24B83' });
    assert.throws(() => parseSystemVersion(buildPlist({ ProductName: 'macOS' })), /no ProductVersion/);
  });

  test('Apple silicon with Rosetta builds both systems', () => {
    const f = darwinDoctorFacts(host({ sysctls: { 'hw.optional.arm64': 1 }, files: [SYSTEM_VERSION_PLIST, '/usr/bin/sandbox-exec', ROSETTA_RUNTIME] }));
    assert.deepEqual(f.macos, { productName: 'macOS', productVersion: '14.5', buildVersion: '23F79' });
    assert.equal(f.hardware, 'arm64');
    assert.equal(f.rosettaInstalled, true);
    assert.deepEqual(f.systems, ['aarch64-darwin', 'x86_64-darwin']);
    assert.deepEqual(
      f.checks.map((c) => [c.name, c.ok, c.detail]),
      [
        ['macOS', true, 'macOS 14.5 (23F79)'],
        ['sandbox-exec', true, '/usr/bin/sandbox-exec'],
        ['CPU', true, 'arm64'],
        ['Rosetta 2', true, 'installed: x86_64-darwin can be built'],
        ['systems', true, 'aarch64-darwin, x86_64-darwin'],
      ],
    );
  });

  test('Apple silicon without Rosetta, drvbox itself translated', () => {
    const f = darwinDoctorFacts(host({ arch: 'x64', sysctls: { 'hw.optional.arm64': 1, 'sysctl.proc_translated': 1 } }));
    assert.equal(f.translated, true);
    assert.deepEqual(f.systems, ['aarch64-darwin']);
    const r = f.checks.find((c) => c.name === 'Rosetta 2')!;
    assert.equal(r.ok, false);
    assert.equal(r.fix, 'softwareupdate --install-rosetta --agree-to-license');
  });

  test('Intel Mac; missing sandbox-exec; not macOS at all', () => {
    const intel = darwinDoctorFacts(host({ arch: 'x64', files: [SYSTEM_VERSION_PLIST] }));
    assert.deepEqual(intel.systems, ['x86_64-darwin']);
    assert.equal(intel.sandboxExec, false);
    assert.ok(!intel.checks.some((c) => c.name === 'Rosetta 2'));
    const linux = darwinDoctorFacts(host({ platform: 'linux' }));
    assert.equal(linux.onDarwin, false);
    assert.deepEqual(linux.systems, []);
    assert.equal(linux.checks[0]!.ok, false);
  });
});
