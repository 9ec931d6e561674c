// Small statistics for benchmark samples: medians and ranges, rounded for
// printing. Medians, not means: one slow run on a busy 2-core machine must
// not move the figure.

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function summarize(xs: readonly number[]): Summary {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** Rounds to `digits` significant digits (for JSON that stays readable). */
export function sig(x: number, digits = 4): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const p = Math.pow(10, digits - Math.ceil(Math.log10(Math.abs(x))));
  return Math.round(x * p) / p;
}

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function fmtRange(s: Summary, f: (x: number) => string): string {
  return s.n > 1 ? `${f(s.min)} – ${f(s.max)}` : '';
}

/** Runs `fns` alternately (A B, then B A, …) `rounds` times so drift on the machine hits every side alike. */
export async function alternate(rounds: number, fns: ReadonlyArray<() => Promise<void> | void>): Promise<void> {
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? fns : [...fns].reverse();
    for (const f of order) await f();
  }
}
