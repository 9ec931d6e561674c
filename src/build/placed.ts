// Outputs announced between their move into the store and their
// registration. A prestarted dependent whose sandbox is held adds them to
// it then, so that the mounts are made while the producer registers and the
// scheduler wakes the dependent, not after (in a chain of trivial builds
// that is the critical path). Nothing is released early: the builder still
// starts only once its inputs are valid, and the full input closure is
// checked against what is visible at that point.
import { closure } from '../store/closure.js';

/** One output in its final place, about to be registered. */
export interface PlacedOutput {
  name: string;
  /** Logical store path. */
  path: string;
  /** Its references as they will be registered (itself included when self-referencing). */
  references: readonly string[];
}

export type PlacedListener = (drvPath: string, outputs: readonly PlacedOutput[]) => void;

/**
 * From the scheduler to one prestarted goal: what its input derivations
 * placed. Announcements before the goal listens are kept for it.
 */
export class PlacedOutputsFeed {
  private early: Array<[string, readonly PlacedOutput[]]> = [];
  private listener: PlacedListener | null = null;

  emit(drvPath: string, outputs: readonly PlacedOutput[]): void {
    if (this.listener) this.listener(drvPath, outputs);
    else this.early.push([drvPath, outputs]);
  }

  listen(f: PlacedListener): void {
    this.listener = f;
    for (const [d, o] of this.early.splice(0)) f(d, o);
  }
}

/**
 * The store paths a dependent needs of one input derivation's placed
 * outputs: the outputs it uses (`used`) and what they refer to, following
 * references among the placed outputs themselves and handing the rest
 * (valid paths) to `validClosure`. Sorted; empty when it uses none of them.
 */
export function placedInputPaths(
  used: ReadonlySet<string>,
  outputs: readonly PlacedOutput[],
  validClosure: (validPaths: string[]) => Iterable<string>,
): string[] {
  const byPath = new Map(outputs.map((o) => [o.path, o]));
  // Among the placed outputs by their references; a path that is not one of them is valid: it ends the walk here.
  const reached = closure(
    outputs.filter((o) => used.has(o.name)).map((o) => o.path),
    (p) => byPath.get(p)?.references ?? [],
  );
  const valid = [...reached].filter((p) => !byPath.has(p));
  if (valid.length > 0) for (const p of validClosure(valid)) reached.add(p);
  return [...reached].sort();
}
