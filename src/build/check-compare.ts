// Check mode (`--check`): the comparison of a rebuilt output with the valid
// one, the `diff-hook` that shows the difference, and Nix's heuristic that
// tells a failed build from a full disk.
//
// A difference fails the build with "may not be deterministic" (exit 104).
// With keep-failed or run-diff-hook, the new output is kept beside the old
// one at `<path>.check` and the diff hook runs as
//   <diff-hook> <old output> <new output (.check)> <drv path> <build dir>
// in `/`, as the build user when there is one. Unlike Nix, the hook runs for
// every differing output (Nix stops at the first). Its failures and output
// only go to the log; they never change the result.
import { spawn } from 'node:child_process';
import { statfsSync } from 'node:fs';
import { NotDeterministic } from './errors-register.js';

export interface CheckDifference {
  output: string;
  /** Physical location of the valid output. */
  path: string;
  /** Where the new output was kept (`<path>.check`), or null when it was not kept. */
  kept: string | null;
}

/** One error for all differing outputs; the message is Nix's for the first, then the others. */
export function notDeterministicError(drvPath: string, diffs: readonly CheckDifference[]): NotDeterministic {
  const one = (d: CheckDifference) => (d.kept ? `output '${d.path}' differs from '${d.kept}'` : `output '${d.path}' differs`);
  return new NotDeterministic(`derivation '${drvPath}' may not be deterministic: ${diffs.map(one).join('; ')}`, {
    derivation: drvPath,
    outputs: diffs.map((d) => d.output),
    paths: diffs.map((d) => d.path),
    kept: diffs.map((d) => d.kept),
  });
}

export interface DiffHookOptions {
  diffHook: string;
  /** The valid output and the rebuilt one. */
  tryA: string;
  tryB: string;
  drvPath: string;
  buildDir: string;
  uid?: number;
  gid?: number;
  log(line: string): void;
}

/** Keeps at most this much of the hook's output (it goes to the log). */
const MAX_HOOK_OUTPUT = 1 << 20;

function describeStatus(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `failed due to signal ${signal}` : `failed with exit code ${code}`;
}

/** Runs the diff hook (looked up in PATH), logging its output; never throws. */
export async function runDiffHook(o: DiffHookOptions): Promise<void> {
  if (o.diffHook === '') return;
  const out = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; error: Error | null }>((resolve) => {
    let stdout = '';
    let size = 0;
    let child;
    try {
      child = spawn(o.diffHook, [o.tryA, o.tryB, o.drvPath, o.buildDir], {
        cwd: '/',
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(o.uid !== undefined ? { uid: o.uid } : {}),
        ...(o.gid !== undefined ? { gid: o.gid } : {}),
      });
    } catch (e) {
      resolve({ code: null, signal: null, stdout: '', error: e as Error });
      return;
    }
    const take = (d: Buffer) => {
      if (size >= MAX_HOOK_OUTPUT) return;
      size += d.length;
      stdout += d.toString('utf8');
    };
    child.stdout.on('data', take);
    child.stderr.on('data', (d: Buffer) => {
      for (const line of d.toString('utf8').split('\n')) if (line !== '') o.log(line);
    });
    child.once('error', (e) => resolve({ code: null, signal: null, stdout, error: e }));
    child.once('close', (code, signal) => resolve({ code, signal, stdout, error: null }));
  });
  if (out.error) {
    o.log(`diff hook execution failed: diff-hook program '${o.diffHook}': ${out.error.message}`);
    return;
  }
  if (out.code !== 0) {
    o.log(`diff hook execution failed: diff-hook program '${o.diffHook}' ${describeStatus(out.code, out.signal)}`);
    return;
  }
  const text = out.stdout.replace(/\s+$/, '');
  if (text !== '') for (const line of text.split('\n')) o.log(line);
}

/** Below this much free space, a failed build is blamed on a full disk (Nix's fixed 8 MiB). */
export const DISK_FULL_THRESHOLD = 8 * 1024 * 1024;

/**
 * Nix's cleanupDecideWhetherDiskFull: true when any of `dirs` (the real
 * store dir and the build dir) has less than `required` bytes available,
 * in which case a failed build is not cached as a permanent failure.
 * Directories that cannot be examined are ignored.
 */
export function isDiskNearlyFull(dirs: readonly string[], required = DISK_FULL_THRESHOLD): boolean {
  for (const d of dirs) {
    try {
      const st = statfsSync(d, { bigint: true });
      if (st.bavail * st.bsize < BigInt(required)) return true;
    } catch {
      // gone or not accessible: no evidence either way
    }
  }
  return false;
}
