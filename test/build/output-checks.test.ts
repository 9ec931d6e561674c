// checkOutputs on its own (the same messages are compared with Nix 2.8's in
// register-nix.test.ts): each check, its specifiers, the legacy self-reference
// rule, sizes, order, and the structured form's quirks.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { checkOutputs, type CheckedPathInfo, type OutputChecksInput } from '../../src/build/output-checks.js';
import { parseJson, type JsonObject } from '../../src/build/structured-attrs.js';

const DRV = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x.drv';
const OUT = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-x';
const DEV = '/nix/store/cccccccccccccccccccccccccccccccc-x-dev';
const LIB = '/nix/store/dddddddddddddddddddddddddddddddd-lib';
const LIBC = '/nix/store/ffffffffffffffffffffffffffffffff-libc';

const store = new Map<string, CheckedPathInfo>([
  [LIB, { path: LIB, narSize: 1000, references: [LIBC] }],
  [LIBC, { path: LIBC, narSize: 5000, references: [LIBC] }],
  [DEV, { path: DEV, narSize: 300, references: [] }],
]);

function run(o: { env?: Record<string, string>; json?: string; built?: Record<string, CheckedPathInfo>; outputs?: Record<string, string> }): void {
  const input: OutputChecksInput = {
    storeDir: '/nix/store',
    drvPath: DRV,
    env: new Map(Object.entries(o.env ?? {})),
    structuredAttrs: o.json ? (parseJson(o.json) as JsonObject) : null,
    built: new Map(Object.entries(o.built ?? { out: { path: OUT, narSize: 100, references: [OUT, LIB, DEV] } })),
    outputPaths: new Map(Object.entries(o.outputs ?? { out: OUT, dev: DEV })),
    queryPathInfo: (p) => store.get(p) ?? null,
  };
  checkOutputs(input);
}

const refusal = (paths: string[]) => ({ message: `output '${OUT}' is not allowed to refer to the following paths:${paths.map((p) => `\n  ${p}`).join('')}` });

describe('legacy checks', () => {
  test('allowedReferences: store paths and output names; the own path counts', () => {
    run({ env: { allowedReferences: `out dev ${LIB}` } });
    assert.throws(() => run({ env: { allowedReferences: `dev ${LIB}` } }), refusal([OUT]));
    assert.throws(() => run({ env: { allowedReferences: '' } }), { name: 'OutputCheckFailed', exitCode: 1, ...refusal([OUT, LIB, DEV].sort()) });
  });

  test('allowedRequisites: the closure; the own path is ignored', () => {
    run({ env: { allowedRequisites: `${LIB} ${LIBC} dev` } });
    assert.throws(() => run({ env: { allowedRequisites: `${LIB} dev` } }), refusal([LIBC]));
  });

  test('disallowedReferences / disallowedRequisites', () => {
    assert.throws(() => run({ env: { disallowedReferences: `${LIBC} dev` } }), refusal([DEV]));
    run({ env: { disallowedReferences: LIBC } });
    assert.throws(() => run({ env: { disallowedRequisites: LIBC } }), refusal([LIBC]));
  });

  test('an output that was valid before the build can be named (Nix issue 16485)', () => {
    // `dev` was valid already: only `out` was built, yet `dev` resolves.
    run({ env: { allowedReferences: 'out dev lib' }, outputs: { out: OUT, dev: DEV, lib: LIB } });
  });

  test('illegal specifier', () => {
    assert.throws(() => run({ env: { allowedReferences: 'nope' } }), { name: 'IllegalReferenceSpecifier', message: "derivation contains an illegal reference specifier 'nope'" });
  });

  test('the first failing check wins, in Nix order', () => {
    assert.throws(() => run({ env: { allowedReferences: 'nope', disallowedReferences: LIB } }), { name: 'IllegalReferenceSpecifier' });
    assert.throws(() => run({ env: { allowedRequisites: LIB, disallowedReferences: LIB } }), refusal([DEV, LIBC].sort()));
  });
});

describe('structured checks', () => {
  test('per output; no checks for outputs not named', () => {
    run({ json: '{"outputChecks":{"dev":{"allowedReferences":[]}}}' });
    assert.throws(() => run({ json: '{"outputChecks":{"out":{"allowedReferences":[]}}}' }), refusal([OUT, LIB, DEV].sort()));
  });

  test('requisites do not ignore the own path', () => {
    assert.throws(() => run({ json: `{"outputChecks":{"out":{"allowedRequisites":["${LIB}","${LIBC}","dev"]}}}` }), refusal([OUT]));
  });

  test('maxSize and maxClosureSize (closure through built and valid paths)', () => {
    run({ json: '{"outputChecks":{"out":{"maxSize":100}}}' });
    assert.throws(() => run({ json: '{"outputChecks":{"out":{"maxSize":99}}}' }), {
      name: 'OutputTooLarge',
      message: `path '${OUT}' is too large at 100 bytes; limit is 99 bytes`,
    });
    run({ json: '{"outputChecks":{"out":{"maxClosureSize":6400}}}' });
    assert.throws(() => run({ json: '{"outputChecks":{"out":{"maxClosureSize":6399}}}' }), {
      name: 'OutputClosureTooLarge',
      message: `closure of path '${OUT}' is too large at 6400 bytes; limit is 6399 bytes`,
    });
  });

  test('a single string is a one-element list (nlohmann iteration); other elements are errors', () => {
    assert.throws(() => run({ json: `{"outputChecks":{"out":{"allowedReferences":"${LIB}"}}}` }), refusal([OUT, DEV].sort()));
    assert.throws(() => run({ json: '{"outputChecks":{"out":{"allowedReferences":[1]}}}' }), {
      name: 'BadDerivationAttr',
      message: `attribute 'allowedReferences' of derivation '${DRV}' must be a list of strings`,
    });
    assert.throws(() => run({ json: '{"outputChecks":{"out":{"maxSize":"10"}}}' }), { name: 'BadDerivationAttr' });
  });

  test('legacy env attributes are ignored with structured attrs', () => {
    run({ json: '{}', env: { allowedReferences: '' } });
  });
});
