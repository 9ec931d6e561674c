// A cgroup (v2) per build with `use-cgroups`: the sandbox's init is moved in
// before it runs anything, so every process of the build is in it; killing
// the cgroup reaches exactly those (never anything outside the build, Nix
// issue 9142), and its cpu.stat gives the build's CPU times.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ResourceUsage } from '../backend.js';
import { CgroupFailed } from './errors.js';

/** Where the cgroup2 hierarchy is mounted, from a mountinfo text. */
export function cgroup2Mount(mountinfo: string): string | null {
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (fstype === 'cgroup2') return line.split(' ')[4] ?? null;
  }
  return null;
}

/** This process's cgroup v2 path ("0::/x/y" in /proc/self/cgroup). */
export function ownCgroup(procSelfCgroup: string): string | null {
  const line = procSelfCgroup.split('\n').find((l) => l.startsWith('0::'));
  return line ? line.slice(3) : null;
}

let counter = 0;

/** Creates the build's cgroup below ours; returns its directory. */
export function createBuildCgroup(drvPath: string): string {
  const mnt = cgroup2Mount(readFileSync('/proc/self/mountinfo', 'utf8'));
  const own = ownCgroup(readFileSync('/proc/self/cgroup', 'utf8'));
  if (!mnt || own === null) {
    throw new CgroupFailed(`derivation '${drvPath}': use-cgroups is on but this host has no cgroup v2 hierarchy`, { drvPath });
  }
  const dir = `${mnt}${own === '/' ? '' : own}/drvbox-build-${process.pid}-${counter++}`;
  try {
    mkdirSync(dir);
  } catch (e) {
    throw new CgroupFailed(
      `derivation '${drvPath}': use-cgroups is on but cgroup '${dir}' cannot be created (${(e as NodeJS.ErrnoException).code}); ` +
        `it needs root or a delegated cgroup v2 subtree`,
      { drvPath, cgroup: dir },
    );
  }
  return dir;
}

/** CPU times of the cgroup so far. */
export function cgroupUsage(dir: string): ResourceUsage | null {
  try {
    const stat = readFileSync(`${dir}/cpu.stat`, 'utf8');
    const get = (k: string): number => Number(new RegExp(`^${k} (\\d+)$`, 'm').exec(stat)?.[1] ?? 0);
    return { cpuUserMs: get('user_usec') / 1000, cpuSystemMs: get('system_usec') / 1000 };
  } catch {
    return null;
  }
}

/** SIGKILLs everything in the cgroup (cgroup.kill, else one by one). */
export function killCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  try {
    writeFileSync(`${dir}/cgroup.kill`, '1');
    return;
  } catch {
    // kernels before 5.14
  }
  for (const pid of readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Kills what is left and removes the cgroup (waiting for the exits). */
export async function destroyCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  killCgroup(dir);
  for (let i = 0; ; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      if (i >= 200) throw new CgroupFailed(`cannot remove cgroup '${dir}': ${(e as Error).message}`, { cgroup: dir });
      await sleep(5);
    }
  }
}
