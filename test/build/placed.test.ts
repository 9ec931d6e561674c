// placed.ts: which paths a held dependent gets from an input's placed
// outputs, and the feed that carries the announcements to it.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { PlacedOutputsFeed, placedInputPaths, type PlacedOutput } from '../../src/build/placed.js';
import { closure } from '../../src/store/closure.js';

const OUT = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-x';
const DEV = '/nix/store/cccccccccccccccccccccccccccccccc-x-dev';
const DOC = '/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x-doc';
const LIB = '/nix/store/dddddddddddddddddddddddddddddddd-lib';
const LIBC = '/nix/store/ffffffffffffffffffffffffffffffff-libc';
const TOOL = '/nix/store/gggggggggggggggggggggggggggggggg-tool';

/** A valid store: path -> references. */
const valid = new Map<string, string[]>([
  [LIB, [LIBC, LIB]],
  [LIBC, []],
  [TOOL, []],
]);
/** store.computeClosure over `valid`, recording what it was asked. */
function closureOf(asked: string[][]) {
  return (paths: string[]) => {
    asked.push([...paths].sort());
    return closure(paths, (p) => valid.get(p)!);
  };
}

const outputs: PlacedOutput[] = [
  // out refers to itself, dev and a valid path; dev to nothing; doc to TOOL.
  { name: 'out', path: OUT, references: [DEV, LIB, OUT] },
  { name: 'dev', path: DEV, references: [] },
  { name: 'doc', path: DOC, references: [TOOL] },
];

describe('placedInputPaths', () => {
  test('an output used, the sibling it refers to, and the closure of the valid paths it refers to; not the sibling it does not use', () => {
    const asked: string[][] = [];
    assert.deepEqual(placedInputPaths(new Set(['out']), outputs, closureOf(asked)), [OUT, DEV, LIB, LIBC].sort());
    assert.deepEqual(asked, [[LIB]]);
  });

  test('only dev: nothing else of the input, and no closure query (dev refers to nothing)', () => {
    const asked: string[][] = [];
    assert.deepEqual(placedInputPaths(new Set(['dev']), outputs, closureOf(asked)), [DEV]);
    assert.deepEqual(asked, []);
  });

  test('several outputs used: each valid path is asked once', () => {
    const asked: string[][] = [];
    assert.deepEqual(placedInputPaths(new Set(['out', 'doc', 'dev']), outputs, closureOf(asked)), [OUT, DEV, DOC, LIB, LIBC, TOOL].sort());
    assert.deepEqual(asked, [[LIB, TOOL].sort()]);
  });

  test('a cycle through siblings ends; an output name the input does not have gives nothing', () => {
    const cyc: PlacedOutput[] = [
      { name: 'out', path: OUT, references: [DEV] },
      { name: 'dev', path: DEV, references: [OUT, DEV] },
    ];
    assert.deepEqual(placedInputPaths(new Set(['dev']), cyc, closureOf([])), [OUT, DEV].sort());
    assert.deepEqual(placedInputPaths(new Set(['bin']), outputs, closureOf([])), []);
  });
});

describe('PlacedOutputsFeed', () => {
  test('announcements before the listener are kept and given to it in order; later ones go straight to it', () => {
    const feed = new PlacedOutputsFeed();
    const got: string[] = [];
    feed.emit('/nix/store/a.drv', [outputs[0]!]);
    feed.emit('/nix/store/b.drv', [outputs[1]!, outputs[2]!]);
    feed.listen((drv, outs) => got.push(`${drv} ${outs.map((o) => o.name).join(',')}`));
    assert.deepEqual(got, ['/nix/store/a.drv out', '/nix/store/b.drv dev,doc']);
    feed.emit('/nix/store/c.drv', [outputs[0]!]);
    assert.deepEqual(got, ['/nix/store/a.drv out', '/nix/store/b.drv dev,doc', '/nix/store/c.drv out']);
  });
});
