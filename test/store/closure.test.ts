import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { closure, topoSort } from '../../src/store/closure.js';
import { ReferenceCycle } from '../../src/store/errors.js';

const graph: Record<string, string[]> = {
  a: ['b', 'c'],
  b: ['d'],
  c: ['d', 'c'],
  d: [],
  e: ['a', 'x'], // x is outside the set: ignored
};

describe('topoSort (Nix order)', () => {
  test('referrers come before references; ties broken like Nix (sorted DFS)', () => {
    assert.deepEqual(topoSort(['d', 'c', 'b', 'a', 'e'], (p) => graph[p] ?? []), ['e', 'a', 'c', 'b', 'd']);
    assert.deepEqual(topoSort(['b', 'c', 'd'], (p) => graph[p] ?? []), ['c', 'b', 'd']);
  });

  test('a cycle names the path and where it was reached from', () => {
    assert.throws(
      () => topoSort(['p', 'q', 'r'], (x) => ({ p: ['q'], q: ['r'], r: ['p'] })[x] ?? []),
      (e: unknown) => e instanceof ReferenceCycle && e.message === "cycle detected in the references of 'p' from 'r'",
    );
  });

  test('a 100,000-long chain does not overflow the stack', () => {
    const n = 100_000;
    const name = (i: number) => `p${String(i).padStart(6, '0')}`;
    const items = Array.from({ length: n }, (_, i) => name(i));
    const order = topoSort(items, (x) => {
      const i = Number(x.slice(1));
      return i + 1 < n ? [name(i + 1)] : [];
    });
    assert.equal(order.length, n);
    assert.equal(order[0], name(0));
    assert.equal(order[n - 1], name(n - 1));
  });
});

test('closure follows edges, includes the start, handles cycles', () => {
  assert.deepEqual([...closure(['a'], (p) => graph[p] ?? [])].sort(), ['a', 'b', 'c', 'd']);
  assert.deepEqual([...closure(['p'], (x) => ({ p: ['q'], q: ['p'] })[x] ?? [])].sort(), ['p', 'q']);
});
