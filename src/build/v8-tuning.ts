// A hook the bundled CLI's entry (src/cli/bundle-entry.cts) installs: V8
// settings for a process that is about to run many builds. The entry decides
// whether they may be applied (its code cache records V8's flags), the
// scheduler decides when: once it has derivations to build, so that a no-op
// build or `hash path` does not pay for loading node:v8 (~2 ms).

/** The global the entry sets to its tuning function. */
export const TUNE_V8 = Symbol.for('drvbox.tuneV8');

/** Applies the entry's V8 settings, if it installed any (once). */
export function tuneV8ForBuilds(): void {
  const g = globalThis as { [TUNE_V8]?: () => void };
  const tune = g[TUNE_V8];
  if (!tune) return;
  delete g[TUNE_V8];
  tune();
}
