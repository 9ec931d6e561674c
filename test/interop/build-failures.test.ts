// Differential: failing builds end the same way under Nix 2.8 and drvbox
// (unsandboxed, same store directory): the exit status and the error message
// (with its continuation lines), for builder failures, missing outputs,
// cycles, fixed-output mismatches, output checks, bad exportReferencesGraph,
// unsupported platforms and features, and a non-deterministic --check.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { errorBlock, Twin, type Ran } from './build-twin.js';

const FAILURES = [
  'failExit', 'failSignal', 'missingOutput', 'missingDev', 'cycle', 'hashMismatch', 'allowedRefs', 'disallowedRefs',
  'allowedReqs', 'disallowedReqs', 'badGraphOdd', 'badGraphName', 'badGraphPath', 'wrongPlatform', 'missingFeature',
  'selfKill', 'noBuilder',
] as const;

describe('build differential against Nix 2.8: failures', () => {
  let twin: Twin;
  let drvs: Map<string, string>;
  const nix = new Map<string, Ran>();
  const dx = new Map<string, Ran>();

  before(() => {
    twin = new Twin();
    drvs = twin.instantiate([...FAILURES, 'random', 'fixedRefs']);
    const exported = twin.exportClosure(drvs.values());
    const nixBuild = (args: string[]): Ran => {
      const r = twin.nix('nix-build', ['--no-out-link', ...args]);
      return { status: r.status, signal: r.signal, stdout: r.stdout.toString(), stderr: r.stderr };
    };
    for (const a of FAILURES) nix.set(a, nixBuild([drvs.get(a)!]));
    nix.set('random', nixBuild([drvs.get('random')!]));
    nix.set('random --check', nixBuild(['--check', drvs.get('random')!]));
    nix.set('fixedRefs', nixBuild([drvs.get('fixedRefs')!]));

    twin.switchToDrvbox(exported);
    for (const a of FAILURES) dx.set(a, twin.drvboxBuild([drvs.get(a)!]));
    dx.set('random', twin.drvboxBuild([drvs.get('random')!]));
    dx.set('random --check', twin.drvboxBuild(['--check', drvs.get('random')!]));
    dx.set('fixedRefs', twin.drvboxBuild([drvs.get('fixedRefs')!]));
  });

  after(() => twin?.remove());

  for (const a of FAILURES) {
    test(`${a}: same exit status and message`, () => {
      const n = nix.get(a)!;
      const d = dx.get(a)!;
      assert.notEqual(n.status, 0, `Nix built ${a}`);
      assert.equal(d.status, n.status, `exit status of ${a}\nNix: ${n.stderr}\ndrvbox: ${d.stderr}`);
      assert.deepEqual(errorBlock(d.stderr), errorBlock(n.stderr), `message of ${a}`);
    });
  }

  test('--check of a non-deterministic build: exit 104, "may not be deterministic"', () => {
    assert.equal(nix.get('random')!.status, 0);
    assert.equal(dx.get('random')!.status, 0);
    const n = nix.get('random --check')!;
    const d = dx.get('random --check')!;
    assert.equal(n.status, 104);
    assert.equal(d.status, 104, d.stderr);
    assert.deepEqual(errorBlock(d.stderr), errorBlock(n.stderr));
    assert.match(errorBlock(d.stderr)[0]!, /may not be deterministic: output '.*-random' differs$/);
  });

  test('a fixed output with references: Nix 2.8 aborts on an assertion; drvbox refuses it with a message', () => {
    assert.equal(nix.get('fixedRefs')!.signal, 'SIGABRT');
    assert.match(nix.get('fixedRefs')!.stderr, /Assertion `references.empty\(\)' failed/);
    const d = dx.get('fixedRefs')!;
    assert.equal(d.status, 1);
    assert.deepEqual(errorBlock(d.stderr), [`error: illegal path references in fixed-output derivation '${drvs.get('fixedRefs')}'`]);
  });
});
