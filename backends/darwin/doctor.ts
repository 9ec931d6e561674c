// Host facts for `drvbox doctor` and probe(): the macOS version (from
// SystemVersion.plist, read with `plist`), sandbox-exec, the CPU, Rosetta 2,
// and which darwin systems can therefore be built here. The decisions are a
// pure function of injected facts; hostDarwinFacts() gathers the real ones.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { parse as parsePlist, parseBinary as parseBinaryPlist } from 'plist';
import type { ProbeCheck } from '../backend.js';
import { SANDBOX_EXEC } from './spawn-plan.js';

export const SYSTEM_VERSION_PLIST = '/System/Library/CoreServices/SystemVersion.plist';
/** Installed by `softwareupdate --install-rosetta`. */
export const ROSETTA_RUNTIME = '/Library/Apple/usr/libexec/oah/libRosettaRuntime';

export interface DarwinHostFacts {
  platform: string;
  /** process.arch of drvbox itself (x64 under Rosetta on Apple silicon). */
  arch: string;
  readFile(path: string): Buffer | null;
  exists(path: string): boolean;
  executable(path: string): boolean;
  /** sysctlbyname of an integer, null when the name does not exist. */
  sysctlInt(name: string): number | null;
}

export interface MacosVersion {
  productName: string;
  productVersion: string;
  buildVersion: string;
}

export interface DarwinDoctorFacts {
  onDarwin: boolean;
  macos: MacosVersion | null;
  sandboxExec: boolean;
  hardware: 'arm64' | 'x86_64' | 'unknown';
  /** drvbox runs translated by Rosetta. */
  translated: boolean;
  rosettaInstalled: boolean;
  /** Darwin systems this host can build. */
  systems: string[];
  checks: ProbeCheck[];
}

/** ProductName / ProductVersion / ProductBuildVersion of a SystemVersion.plist (XML or binary). */
export function parseSystemVersion(data: Uint8Array | string): MacosVersion {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const binary = Buffer.from(bytes.subarray(0, 8)).toString('latin1') === 'bplist00';
  // plist.parse treats bytes as binary: XML goes in as text.
  const parsed = binary ? parseBinaryPlist(bytes) : parsePlist(Buffer.from(bytes).toString('utf8'));
  const v = (parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : {}) as Record<string, unknown>;
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : '');
  if (str('ProductVersion') === '') {
    throw new Error(`${SYSTEM_VERSION_PLIST} has no ProductVersion`);
  }
  return { productName: str('ProductName') || 'macOS', productVersion: str('ProductVersion'), buildVersion: str('ProductBuildVersion') };
}

export function darwinDoctorFacts(h: DarwinHostFacts): DarwinDoctorFacts {
  const checks: ProbeCheck[] = [];
  const onDarwin = h.platform === 'darwin';
  if (!onDarwin) {
    checks.push({ name: 'macOS', ok: false, detail: `this host runs ${h.platform}; the darwin backend only plans and explains here` });
    return { onDarwin, macos: null, sandboxExec: false, hardware: 'unknown', translated: false, rosettaInstalled: false, systems: [], checks };
  }
  let macos: MacosVersion | null = null;
  const xml = h.readFile(SYSTEM_VERSION_PLIST);
  try {
    if (xml !== null) macos = parseSystemVersion(xml);
  } catch {
    macos = null;
  }
  checks.push(
    macos
      ? { name: 'macOS', ok: true, detail: `${macos.productName} ${macos.productVersion} (${macos.buildVersion})` }
      : { name: 'macOS', ok: false, detail: `cannot read the version from ${SYSTEM_VERSION_PLIST}` },
  );
  const sandboxExec = h.executable(SANDBOX_EXEC);
  checks.push(
    sandboxExec
      ? { name: 'sandbox-exec', ok: true, detail: SANDBOX_EXEC }
      : { name: 'sandbox-exec', ok: false, detail: `${SANDBOX_EXEC} is missing or not executable`, fix: 'builds need sandbox-exec even with sandbox = false (minimal profile)' },
  );
  const translated = h.sysctlInt('sysctl.proc_translated') === 1;
  const arm = h.sysctlInt('hw.optional.arm64') === 1 || (h.arch === 'arm64' && !translated);
  const hardware = arm ? 'arm64' : h.arch === 'x64' ? 'x86_64' : 'unknown';
  const rosettaInstalled = arm && h.exists(ROSETTA_RUNTIME);
  const systems: string[] = [];
  if (hardware === 'arm64') systems.push('aarch64-darwin');
  if (hardware === 'x86_64' || rosettaInstalled) systems.push('x86_64-darwin');
  checks.push({ name: 'CPU', ok: hardware !== 'unknown', detail: `${hardware}${translated ? ' (drvbox runs under Rosetta 2; builders get their own architecture)' : ''}` });
  if (hardware === 'arm64') {
    checks.push(
      rosettaInstalled
        ? { name: 'Rosetta 2', ok: true, detail: `installed: x86_64-darwin can be built` }
        : { name: 'Rosetta 2', ok: false, detail: 'not installed: x86_64-darwin cannot be built', fix: 'softwareupdate --install-rosetta --agree-to-license' },
    );
  }
  checks.push({ name: 'systems', ok: systems.length > 0, detail: systems.join(', ') || 'none' });
  return { onDarwin, macos, sandboxExec, hardware, translated, rosettaInstalled, systems, checks };
}

/** The real facts of this host; sysctl through koffi, only on macOS. */
export async function hostDarwinFacts(): Promise<DarwinHostFacts> {
  let sysctlInt: (name: string) => number | null = () => null;
  if (process.platform === 'darwin') {
    const { hostLibc } = await import('./libc.js');
    const libc = await hostLibc();
    sysctlInt = (name) => libc.sysctlGetInt(name);
  }
  return {
    platform: process.platform,
    arch: process.arch,
    readFile(path) {
      try {
        return readFileSync(path);
      } catch {
        return null;
      }
    },
    exists: (path) => existsSync(path),
    executable(path) {
      try {
        accessSync(path, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    },
    sysctlInt,
  };
}
