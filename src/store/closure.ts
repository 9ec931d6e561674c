// Closures and the topological order of store paths, as Nix computes them
// (same traversal, same order: `nix-store -qR` and `--export` print paths in
// the order these functions give).
import { ReferenceCycle } from './errors.js';

/**
 * Nix's topoSort: depth-first over `items` in sorted order, children in
 * sorted order, edges leaving `items` ignored, self-edges ignored. Returns
 * referrers before their references. A cycle throws ReferenceCycle.
 */
export function topoSort(items: Iterable<string>, children: (p: string) => Iterable<string>): string[] {
  const set = new Set(items);
  const sortedItems = [...set].sort();
  const sorted: string[] = [];
  const visited = new Set<string>();
  const parents = new Set<string>();
  // Explicit stack: deep chains must not overflow the JS stack.
  type Frame = { path: string; kids: string[]; next: number };
  for (const start of sortedItems) {
    if (visited.has(start)) continue;
    const stack: Frame[] = [];
    const enter = (path: string, parent: string | null): void => {
      if (parents.has(path)) {
        throw new ReferenceCycle(`cycle detected in the references of '${path}' from '${parent}'`, { path, from: parent });
      }
      if (visited.has(path)) return;
      visited.add(path);
      parents.add(path);
      const kids = [...new Set(children(path))].filter((k) => k !== path && set.has(k)).sort();
      stack.push({ path, kids, next: 0 });
    };
    enter(start, null);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next < top.kids.length) {
        enter(top.kids[top.next++]!, top.path);
      } else {
        stack.pop();
        sorted.push(top.path);
        parents.delete(top.path);
      }
    }
  }
  return sorted.reverse();
}

/** The set reachable from `start` by `edges` (start included). */
export function closure(start: Iterable<string>, edges: (p: string) => Iterable<string>): Set<string> {
  const seen = new Set<string>();
  const todo = [...start];
  while (todo.length > 0) {
    const p = todo.pop()!;
    if (seen.has(p)) continue;
    seen.add(p);
    for (const q of edges(p)) if (!seen.has(q)) todo.push(q);
  }
  return seen;
}
