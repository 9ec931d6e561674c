import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { failureLines, fitWidth, Progress, sanitizeForStatus } from '../../src/build/progress.js';
import { BuildLog } from '../../src/build/logs.js';
import type { GoalResult } from '../../src/build/goal.js';
import { BuilderFailed } from '../../src/build/errors-run.js';

class FakeStream {
  text = '';
  isTTY: boolean;
  constructor(
    tty: boolean,
    readonly columns = 40,
    readonly rows = 8,
  ) {
    this.isTTY = tty;
  }
  write(s: string): boolean {
    this.text += s;
    return true;
  }
}

const D = (n: number) => `/nix/store/${String(n).padStart(32, '0')}-pkg${n}.drv`;

function failed(over: Partial<GoalResult> = {}): GoalResult {
  return {
    drvPath: D(1),
    status: 'failed',
    failure: 'permanent',
    error: new BuilderFailed(`builder for '${D(1)}' failed with exit code 3`, {}),
    outputs: new Map(),
    startTime: 0,
    stopTime: 1,
    logPath: '/logs/00/0001-pkg1.drv',
    logTail: ['one', 'two'],
    usage: null,
    ...over,
  };
}

describe('progress', () => {
  test('plain (not a terminal): nix-build style lines; failures with tail and log location', () => {
    const s = new FakeStream(false);
    const p = new Progress({ verbose: false, quiet: false, stream: s });
    p.planned([D(1), D(2)]);
    p.started(D(1), { name: 'pkg1', logPath: null, log: new BuildLog(null) });
    p.finished(failed());
    p.close();
    assert.equal(
      s.text,
      [
        'these 2 derivations will be built:',
        `  ${D(1)}`,
        `  ${D(2)}`,
        `building '${D(1)}'...`,
        `error: builder for '${D(1)}' failed with exit code 3;`,
        '       last 2 log lines:',
        '       > one',
        '       > two',
        `       For full logs, run 'drvbox log ${D(1)}' (/logs/00/0001-pkg1.drv).`,
        '',
      ].join('\n'),
    );
  });

  test('quiet: only failures and warnings', () => {
    const s = new FakeStream(false);
    const p = new Progress({ verbose: false, quiet: true, stream: s });
    p.planned([D(1)]);
    p.started(D(1), { name: 'pkg1', logPath: null, log: new BuildLog(null) });
    p.message('note: something');
    p.message('warning: careful');
    p.finished(failed({ logTail: [] }));
    assert.equal(s.text, `warning: careful\nerror: builder for '${D(1)}' failed with exit code 3\n       For full logs, run 'drvbox log ${D(1)}' (/logs/00/0001-pkg1.drv).\n`);
  });

  test('-v streams builder lines prefixed with the name, and does not repeat the tail', () => {
    const s = new FakeStream(false);
    const p = new Progress({ verbose: true, quiet: false, stream: s });
    p.started(D(1), { name: 'pkg1', logPath: null, log: new BuildLog(null) });
    p.chunk(D(1), Buffer.from('hello\nwor'));
    p.chunk(D(1), Buffer.from('ld\n'));
    p.finished(failed());
    assert.equal(
      s.text,
      `building '${D(1)}'...\npkg1> hello\npkg1> world\nerror: builder for '${D(1)}' failed with exit code 3\n       For full logs, run 'drvbox log ${D(1)}' (/logs/00/0001-pkg1.drv).\n`,
    );
  });

  test('tty: the status block fits the terminal: lines cut to its width, running builds capped to its height', () => {
    const s = new FakeStream(true, 40, 8);
    const p = new Progress({ verbose: false, quiet: false, stream: s });
    p.planned(Array.from({ length: 20 }, (_, i) => D(i)));
    for (let i = 0; i < 12; i++) {
      const log = new BuildLog(null);
      log.write(Buffer.from(`compiling file number ${i} with a very long line of output\n\x1b[31mred\x1b[0m`));
      p.started(D(i), { name: `pkg${i}`, logPath: null, log });
    }
    // The last redraw (forced by a failure) is what the terminal shows.
    p.finished(failed({ drvPath: D(11) }));
    const last = s.text.slice(s.text.lastIndexOf('\x1b[J') + 3);
    // The failure scrolls above the block; the block starts at its header.
    const lines = last.slice(last.lastIndexOf('\n[')+1).split('\n').filter(Boolean);
    assert.match(last, /^error: builder for/);
    assert.ok(lines.length <= 8 - 1, `block of ${lines.length} lines on an 8-row terminal`);
    for (const l of lines) assert.ok([...l].length <= 39, `line wider than the terminal: ${JSON.stringify(l)}`);
    assert.equal(lines[0], "[0/20 built, 11 running, 8 queued, 1 f…");
    assert.match(lines[1]!, /^ {2}pkg0 \(\d+\.\ds\): red$/);
    assert.match(lines[lines.length - 1]!, /^ {2}… and 6 more$/);
    p.close();
    assert.ok(s.text.endsWith('\x1b[J'), 'the block is erased at the end');
  });

  test('tty: redraws at most every 100 ms however much output arrives', async () => {
    const s = new FakeStream(true, 80, 24);
    const p = new Progress({ verbose: false, quiet: false, stream: s });
    p.planned([D(1)]);
    const log = new BuildLog(null);
    p.started(D(1), { name: 'pkg1', logPath: null, log });
    const before = s.text.split('\x1b[J').length;
    for (let i = 0; i < 1000; i++) {
      log.write(Buffer.from(`line ${i}\n`));
      p.chunk(D(1), Buffer.from(`line ${i}\n`));
    }
    const after = s.text.split('\x1b[J').length;
    assert.ok(after - before <= 1, `${after - before} redraws for 1000 chunks in a burst`);
    await new Promise((r) => setTimeout(r, 150));
    assert.match(s.text.slice(s.text.lastIndexOf('\x1b[J')), /pkg1 \(\d+\.\ds\): line 999/);
    p.close();
  });

  test('helpers: escape sequences and control characters are removed; width counts code points', () => {
    assert.equal(sanitizeForStatus('\x1b[1;32mok\x1b[0m\tdone\x07'), 'ok done');
    assert.equal(fitWidth('abcdef', 4), 'abc…');
    assert.equal(fitWidth('abc', 4), 'abc');
    assert.deepEqual(failureLines(failed({ failure: 'dependency', error: new Error('1 dependencies of derivation x failed to build') }), { showTail: true, logCommand: 'drvbox log' }), [
      'error: 1 dependencies of derivation x failed to build',
    ]);
  });
});
