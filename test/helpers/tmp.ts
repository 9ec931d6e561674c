// Temporary directories for tests, removed when the test ends.
import { mkdtempSync, rmSync, chmodSync, readdirSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** Makes everything under `dir` writable so rmSync can remove read-only store paths. */
export function makeWritable(dir: string): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return;
  }
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    chmodSync(dir, 0o755);
    for (const e of readdirSync(dir)) makeWritable(join(dir, e));
  }
}

export function removeTree(dir: string): void {
  makeWritable(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** Removes a temp dir of tempDir(null) (a suite's), unless DRVBOX_KEEP_TEST_DIRS is set. */
export function dropTempDir(dir: string | undefined): void {
  if (dir && !process.env.DRVBOX_KEEP_TEST_DIRS) removeTree(dir);
}

/** A fresh temp dir; removed after the test unless DRVBOX_KEEP_TEST_DIRS is set (with t = null: by the caller, see dropTempDir). */
export function tempDir(t: TestContext | null, prefix = 'drvbox-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (t && !process.env.DRVBOX_KEEP_TEST_DIRS) t.after(() => removeTree(dir));
  return dir;
}
