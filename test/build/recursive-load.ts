// 1,000 sequential inner builds from one builder, one connection each (Nix
// issue 7297: recursive Nix hung after about a thousand inner builds, its
// worker threads never pruned). Takes about a minute per user: each inner
// build is a full sandboxed build plus two paths bind-mounted into the
// running outer sandbox. Shared by recursive-load*.linux.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runScenario, type SessionReport, type Who } from './recursive-fixture.js';

const N = 1000;

interface LoadReport {
  exitCode: number;
  error: string | null;
  log: string;
  messages: string[];
  innerMs: number;
  per100: number[];
  outputs: number;
  references: number;
  referencesAreOutputs: boolean;
  session: SessionReport;
  fdsBefore: number;
  fdsAfter: number;
  rssBeforeMiB: number;
  peakRssMiB: number;
  heapBeforeMiB: number;
  heapAfterMiB: number;
  connectionErrors: string[];
  buildDirLeft: string[];
}

const AS: Record<Who, string> = { current: 'the current user', rootless: 'the unprivileged test user' };

/** The load test, as `who`; each caller is its own test file so the two run in parallel. */
export function innerBuildLoadTest(who: Who): void {
  test('recursive builds: ' + N + ` sequential inner builds as ${AS[who]} complete; every output is referenced; nothing leaks`, { timeout: 300_000 }, async (t) => {
    const { report: r } = await runScenario<LoadReport>(who, ['inner-builds', String(N)], 280_000);
    assert.equal(r.exitCode, 0, `${r.error}\n${r.log.slice(-3000)}\n${r.messages.join('\n')}`);
    assert.equal(r.outputs, N);
    assert.equal(r.references, N, 'the outer output refers to every inner output it lists');
    assert.equal(r.referencesAreOutputs, true);
    assert.deepEqual(
      { served: r.session.stats.served, failed: r.session.stats.failed, refused: r.session.stats.refused, peak: r.session.stats.peakActive, added: r.session.added },
      { served: N, failed: 0, refused: 0, peak: 1, added: 2 * N },
    );
    assert.deepEqual(r.connectionErrors, []);
    assert.equal(r.session.socketLeft, false);
    assert.equal(r.session.stopped, true);
    assert.equal(r.fdsAfter, r.fdsBefore, 'every connection, socket and helper fd is closed');
    // The JS heap after a full GC grows by the parsed .drv cache and JIT code only (measured: ~6 MiB for 1,000).
    assert.ok(r.heapAfterMiB - r.heapBeforeMiB < 24, `heap grew from ${r.heapBeforeMiB} to ${r.heapAfterMiB} MiB`);
    assert.ok(r.peakRssMiB - r.rssBeforeMiB < 200, `RSS grew from ${r.rssBeforeMiB} to ${r.peakRssMiB} MiB`);
    // No slowdown with the number of builds served: the last 300 take less than 3x the first 300 (noise-tolerant).
    assert.equal(r.per100.length, N / 100);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    assert.ok(sum(r.per100.slice(-3)) < 3 * sum(r.per100.slice(0, 3)), `per 100 inner builds: ${r.per100.join(', ')} ms`);
    assert.deepEqual(r.buildDirLeft, []);
    t.diagnostic(`${who}: ${N} inner builds in ${r.innerMs} ms (per 100: ${r.per100.join(' ')}); heap ${r.heapBeforeMiB} -> ${r.heapAfterMiB} MiB; RSS ${r.rssBeforeMiB} -> peak ${r.peakRssMiB} MiB`);
  });
}
