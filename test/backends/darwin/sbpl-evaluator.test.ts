// The test-side SBPL reader and evaluator themselves: if they were lenient,
// the policy tests would prove nothing.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readSbpl, SbplSyntaxError } from '../../helpers/sbpl/reader.js';
import { allows, decide, evaluateProfile, SbplEvalError } from '../../helpers/sbpl/evaluator.js';

describe('reader', () => {
  test('strings, regexes, symbols, numbers, booleans, comments', () => {
    const forms = readSbpl('(version 1) ; comment\n(allow file* (literal "a\\"b\\\\") (regex #"^/dev/\\.x$") #t 42)');
    assert.equal(forms.length, 2);
    const allow = forms[1]!;
    assert.ok(allow.t === 'list');
    assert.deepEqual(
      allow.items.map((d) => (d.t === 'list' ? d.items.map((x) => ('v' in x ? x.v : '?')) : d.v)),
      ['allow', 'file*', ['literal', 'a"b\\'], ['regex', '^/dev/\\.x$'], true, 42],
    );
  });

  test('malformed input is an error, with where', () => {
    assert.throws(() => readSbpl('(allow default'), (e: unknown) => e instanceof SbplSyntaxError && e.message === "unclosed '(' at offset 0");
    assert.throws(() => readSbpl('(literal "abc)'), /unterminated string at offset 9/);
    assert.throws(() => readSbpl('(literal "a\\qb")'), /unknown escape \\q/);
    assert.throws(() => readSbpl(')'), /unexpected '\)' at offset 0/);
    assert.throws(() => readSbpl('#| x |#'), /block comments/);
  });
});

describe('evaluator', () => {
  test('the last matching rule wins, in either direction', () => {
    const p = evaluateProfile(
      '(version 1)\n(deny default)\n(allow file-read* (subpath "/etc"))\n(deny file-read* (literal "/etc/secret"))\n(allow file-read-data (literal "/etc/secret/ok"))',
      {},
    );
    assert.equal(allows(p, { op: 'file-read-data', path: '/etc/hosts' }), true);
    assert.equal(allows(p, { op: 'file-read-data', path: '/etc/secret' }), false);
    assert.equal(allows(p, { op: 'file-read-metadata', path: '/etc/secret' }), false);
    assert.equal(allows(p, { op: 'file-read-data', path: '/etc/secret/ok' }), true);
    assert.equal(allows(p, { op: 'file-read-data', path: '/etcetera' }), false);
    assert.equal(decide(p, { op: 'file-write-data', path: '/etc/hosts' }).rule?.offset, 12);
  });

  test('wildcards cover sub-operations by prefix; default covers everything', () => {
    const p = evaluateProfile('(version 1)(allow default)(deny file-write*)(allow file* (literal "/x"))', {});
    assert.equal(allows(p, { op: 'file-write-setugid', path: '/y' }), false);
    assert.equal(allows(p, { op: 'file-write-setugid', path: '/x' }), true);
    assert.equal(allows(p, { op: 'network-outbound' }), true);
  });

  test('param, define, if with and without else, begin, with-modifiers', () => {
    const text = '(version 1)\n(define D (param "DIR"))\n(deny default (with no-log))\n(if (param "NET") (begin (allow network*) (allow sysctl-read)) (allow signal))\n(allow file* (subpath D))';
    const off = evaluateProfile(text, { DIR: '/b' });
    assert.deepEqual(off.rules[0]!.modifiers, ['no-log']);
    assert.equal(allows(off, { op: 'network-outbound' }), false);
    assert.equal(allows(off, { op: 'signal' }), true);
    assert.equal(allows(off, { op: 'file-write-data', path: '/b/c' }), true);
    const on = evaluateProfile(text, { DIR: '/b', NET: '1' });
    assert.equal(allows(on, { op: 'network-outbound' }), true);
    assert.equal(allows(on, { op: 'sysctl-read' }), true);
    assert.equal(allows(on, { op: 'signal' }), false);
  });

  test('a missing parameter used as a path, unknown operations and filters are errors', () => {
    assert.throws(() => evaluateProfile('(version 1)(allow file* (subpath (param "X")))', {}), (e: unknown) => e instanceof SbplEvalError && /expected a string, got false/.test(e.message));
    assert.throws(() => evaluateProfile('(version 1)(allow file-raed* (subpath "/"))', {}), /unknown operation file-raed\*/);
    assert.throws(() => evaluateProfile('(version 1)(allow file* (prefix "/"))', {}), /unknown filter prefix/);
    assert.throws(() => evaluateProfile('(allow default)', {}), /must start with \(version 1\)/);
    assert.throws(() => evaluateProfile('(version 1)(allow file* (subpath UNDEFINED))', {}), /unbound variable UNDEFINED/);
  });

  test('regex, network endpoints and mach names', () => {
    const p = evaluateProfile(
      '(version 1)(deny default)(allow file* (regex #"^/dev/ttys[0-9]+"))(allow network* (remote ip "localhost:*"))(allow network-outbound (remote unix-socket (path-literal "/var/run/s")))(allow mach-lookup (global-name "a.b"))',
      {},
    );
    assert.equal(allows(p, { op: 'file-read-data', path: '/dev/ttys001' }), true);
    assert.equal(allows(p, { op: 'file-read-data', path: '/dev/ttysx' }), false);
    assert.equal(allows(p, { op: 'network-outbound', remote: { proto: 'tcp', host: 'localhost', port: 1 } }), true);
    assert.equal(allows(p, { op: 'network-outbound', remote: { proto: 'tcp', host: '10.0.0.1', port: 1 } }), false);
    assert.equal(allows(p, { op: 'network-outbound', remote: { proto: 'unix', path: '/var/run/s' } }), true);
    assert.equal(allows(p, { op: 'network-outbound', remote: { proto: 'unix', path: '/var/run/t' } }), false);
    assert.equal(allows(p, { op: 'mach-lookup', globalName: 'a.b' }), true);
    assert.equal(allows(p, { op: 'mach-lookup', globalName: 'a.c' }), false);
  });
});
