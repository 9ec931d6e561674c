// The machine a result belongs to: CPUs, memory, kernel, Node, the peers'
// versions, and the host environment variables the suite ran without.
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { NODE_START_VARS } from './env.js';
import { versionOf } from './proc.js';
import type { Machine } from './report.js';

function osName(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (m) return m[1]!;
  } catch {
    // not Linux, or no os-release
  }
  return process.platform;
}

export function describeMachine(peers: Record<string, string | null>): Machine {
  const tools: Record<string, string | null> = {};
  const v = (name: string, cmd: string, args?: string[]) => {
    tools[name] = peers[name] ? versionOf(cmd, args) : null;
  };
  v('nix-build', 'nix-build');
  v('bwrap', 'bwrap');
  v('unshare', 'unshare');
  v('openssl', 'openssl', ['version']);
  v('busybox', '/usr/bin/busybox', ['--help']);
  tools['GNU time'] = peers.time ? 'present' : null;
  const env = NODE_START_VARS.filter((k) => process.env[k] !== undefined).map(
    (k) => `the host sets ${k}; every process here (drvbox, \`node -e 0\`, Nix) ran without it (it is read at Node start-up)`,
  );
  return {
    date: new Date().toISOString(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGB: totalmem() / 2 ** 30,
    kernel: release(),
    os: osName(),
    node: process.version,
    uid: process.getuid?.() ?? -1,
    tools,
    env,
    loadavgStart: loadavg(),
  };
}
