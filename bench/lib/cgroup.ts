// CPU of a whole process tree, however it daemonises: each measured command
// runs in a cgroup of its own (cgroup v1 cpuacct, else cgroup v2), and the
// cgroup's CPU counter is read after it exits. GNU time only sees
// descendants that were waited for, and neither drvbox's launcher (a
// detached server) nor Nix's builders are. Needs a writable cgroup
// hierarchy (root); without one the figure is missing, not guessed.
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

interface Hierarchy {
  dir: string;
  /** ms of CPU used by the cgroup so far. */
  read(cg: string): number;
}

let hierarchy: Hierarchy | null | undefined;
let made = 0;
const leftovers: string[] = [];

function find(): Hierarchy | null {
  let mounts = '';
  try {
    mounts = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return null;
  }
  const candidates: Hierarchy[] = [];
  for (const line of mounts.split('\n')) {
    const [, dir, type, opts] = line.split(' ');
    if (!dir) continue;
    if (type === 'cgroup' && opts!.split(',').includes('cpuacct')) {
      candidates.push({ dir, read: (cg) => Number(readFileSync(join(cg, 'cpuacct.usage'), 'utf8')) / 1e6 });
    } else if (type === 'cgroup2') {
      candidates.push({
        dir,
        read: (cg) => Number(/^usage_usec (\d+)/m.exec(readFileSync(join(cg, 'cpu.stat'), 'utf8'))?.[1] ?? NaN) / 1000,
      });
    }
  }
  for (const h of candidates) {
    const probe = join(h.dir, `drvbox-bench-probe-${process.pid}`);
    try {
      mkdirSync(probe);
      const ok = Number.isFinite(h.read(probe));
      rmdirSync(probe);
      if (ok) return h;
    } catch {
      // not writable here
    }
  }
  return null;
}

export interface CpuCgroup {
  /** cgroup.procs to write the measured process's pid into. */
  procs: string;
  /** CPU ms used by everything that ran in it. */
  usageMs(): number;
  remove(): void;
}

/** A fresh cgroup for one measured command, or null when none can be made. */
export function cpuCgroup(): CpuCgroup | null {
  if (hierarchy === undefined) hierarchy = find();
  const h = hierarchy;
  if (!h) return null;
  const dir = join(h.dir, `drvbox-bench-${process.pid}-${++made}`);
  try {
    mkdirSync(dir);
  } catch {
    return null;
  }
  return {
    procs: join(dir, 'cgroup.procs'),
    usageMs: () => h.read(dir),
    remove: () => {
      try {
        rmdirSync(dir);
      } catch {
        leftovers.push(dir); // a process still in it; retried at the end
      }
    },
  };
}

/** Removes the cgroups whose processes outlived their command. */
export function removeLeftoverCgroups(): void {
  for (const d of leftovers.splice(0)) {
    try {
      rmdirSync(d);
    } catch {
      // still busy: left for the system (empty once its processes end)
    }
  }
}
