// What every row gets: options, a temp dir, the peers found, a logger.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export interface BenchContext {
  quick: boolean;
  /** Alternating rounds for whole-process rows. */
  runs: number;
  jobs: number;
  /** Parent temp dir of this run (removed at the end). */
  tmp: string;
  /** Profile drvbox's CPU where a row offers it (--cpu-prof). */
  profile: boolean;
  peers: Record<string, string | null>;
  log(msg: string): void;
}

/** A fresh dir under the run's temp dir. */
export function freshDir(ctx: BenchContext, tag: string): string {
  return mkdtempSync(join(ctx.tmp, `${tag}-`));
}

/** Removes a dir holding store paths (read-only dirs included). */
export function removeTree(dir: string): void {
  if (process.getuid?.() !== 0) spawnSync('chmod', ['-R', 'u+w', dir]);
  rmSync(dir, { recursive: true, force: true });
}

/** How to install a missing peer on Debian/Ubuntu (the suite installs nothing). */
export const INSTALL_HINT: Record<string, string> = {
  nix: 'apt-get install -y nix-bin',
  bwrap: 'apt-get install -y bubblewrap',
  unshare: 'apt-get install -y util-linux',
  openssl: 'apt-get install -y openssl',
  busybox: 'apt-get install -y busybox-static',
  time: 'apt-get install -y time',
};

export function missingPeer(name: string): string {
  return `${name} (${INSTALL_HINT[name] ?? 'not installed'})`;
}
