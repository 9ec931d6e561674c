// The nlohmann-compatible JSON codec and writeStructuredAttrsShell, on edge
// cases (the whole-file comparison with Nix's .attrs.json/.attrs.sh is in
// desugar.test.ts). Expected strings are what Nix 2.8 wrote for the same
// values (test/fixtures/build/prepare/structured) or nlohmann's documented
// behaviour.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  DerivationAttrs,
  dumpJson,
  dumpJsonFloat,
  jsonObject,
  parseJson,
  prepareStructuredAttrs,
  shellEscape,
  structuredAttrsShell,
  tokenizeString,
  type JsonObject,
} from '../../src/build/structured-attrs.js';
import { hashPlaceholder } from '../../src/format/store-path.js';
import type { Derivation } from '../../src/format/derivation.js';

const roundTrip = (s: string) => dumpJson(parseJson(s));

describe('parseJson/dumpJson: nlohmann semantics', () => {
  test('integers keep 64-bit precision; out of range becomes a double', () => {
    assert.equal(roundTrip('9007199254740993'), '9007199254740993');
    assert.equal(roundTrip('18446744073709551615'), '18446744073709551615');
    assert.equal(roundTrip('-9223372036854775808'), '-9223372036854775808');
    assert.equal(roundTrip('18446744073709551616'), '1.8446744073709552e+19');
    assert.equal(roundTrip('-9223372036854775809'), '-9.223372036854776e+18');
    assert.equal(roundTrip('-0'), '0');
    assert.equal(typeof parseJson('1'), 'bigint');
    assert.equal(typeof parseJson('1.0'), 'number');
  });

  test('doubles: shortest digits in nlohmann layout (as Nix wrote them)', () => {
    const cases: Array<[string, string]> = [
      ['1e+20', '1e+20'],
      ['0.0001', '0.0001'],
      ['100.0', '100.0'],
      ['3e-07', '3e-07'],
      ['1e+10', '10000000000.0'],
      ['0.1', '0.1'],
      ['1.5', '1.5'],
      ['-0.0', '-0.0'],
      ['0.0', '0.0'],
      ['1e14', '100000000000000.0'],
      ['1e15', '1e+15'],
      ['1e16', '1e+16'],
      ['123456789012345.6', '123456789012345.6'],
      ['1.25e-5', '1.25e-05'],
      ['1e-100', '1e-100'],
      ['1.7976931348623157e308', '1.7976931348623157e+308'],
      ['5e-324', '5e-324'],
    ];
    for (const [input, want] of cases) assert.equal(roundTrip(input), want, input);
    assert.equal(dumpJsonFloat(Number.NaN), 'null');
  });

  test('strings: only quote, backslash and control characters are escaped (lower-case \\u)', () => {
    assert.equal(roundTrip('"a\'b\\"c\\\\d\\n\\t\\u00e9\\u0001\\u001f\\u007f\\b\\f\\r\\/"'), '"a\'b\\"c\\\\d\\n\\té\\u0001\\u001f\x7f\\b\\f\\r/"');
    assert.equal(roundTrip('"\\ud83d\\ude00"'), '"😀"');
  });

  test('objects: keys in byte order, last duplicate wins, __proto__ is plain data', () => {
    assert.equal(roundTrip('{"b":1,"a":2,"B":3,"é":4,"\\u00ff":5,"z":6}'), '{"B":3,"a":2,"b":1,"z":6,"é":4,"ÿ":5}');
    assert.equal(roundTrip('{"a":1,"a":2}'), '{"a":2}');
    assert.equal(roundTrip('{"__proto__":{"x":1},"10":1,"9":2}'), '{"10":1,"9":2,"__proto__":{"x":1}}');
    assert.equal(roundTrip(' [ 1 , [ ] , { } , null , true , false ] '), '[1,[],{},null,true,false]');
  });

  test('deep nesting does not overflow the stack', () => {
    const depth = 100000;
    const s = '['.repeat(depth) + ']'.repeat(depth);
    assert.equal(roundTrip(s), s);
  });

  test('syntax errors', () => {
    for (const bad of ['', '{', '[1,]', '{"a"}', '01', '1.', '.5', '"\\x"', '"\u0001"', '"\\ud800"', '"\\udc00"', 'nul', '1 2', '{"a":1,}', "'a'"]) {
      assert.throws(() => parseJson(bad), { name: 'JsonSyntaxError' }, JSON.stringify(bad));
    }
  });
});

describe('structuredAttrsShell (writeStructuredAttrsShell)', () => {
  test('the rules of each type (values from Nix 2.8 .attrs.sh)', () => {
    const json = parseJson(
      '{"big":9007199254740993,"wrap":4294967297,"neg":-5,"f":1.5,"f2":1e+20,"f4":100,"f6":1e+10,"f9":1.00000001,"fneg":-2.5,' +
        '"t":true,"fa":false,"n":null,"s":"a\'b","l":[1,"x",true,null],"lbad":[1,[2]],"o":{"a":1,"b":"y","k\'q":false},' +
        '"obad":{"a":{}},"bad-key":1,"_ok":"u","9x":1,"empty":[],"eo":{}}',
    ) as JsonObject;
    assert.equal(
      structuredAttrsShell(json),
      [
        "declare _ok='u'",
        'declare big=1',
        "declare -a empty=()",
        'declare -A eo=()',
        'declare f2=-2147483648',
        'declare f4=100',
        'declare f6=-2147483648',
        'declare f9=1',
        'declare fa=',
        "declare -a l=(1 'x' 1 '' )",
        "declare n=''",
        'declare neg=-5',
        "declare -A o=(['a']=1 ['b']='y' ['k'\\''q']= )",
        "declare s='a'\\''b'",
        'declare t=1',
        'declare wrap=1',
        '',
      ].join('\n'),
    );
  });

  test('shellEscape', () => {
    assert.equal(shellEscape("it's"), "'it'\\''s'");
    assert.equal(shellEscape(''), "''");
  });
});

describe('prepareStructuredAttrs and DerivationAttrs', () => {
  const drv = (env: Record<string, string>): Derivation => ({
    name: 'x',
    outputs: new Map([
      ['out', { kind: 'inputAddressed', path: '/nix/store/11111111111111111111111111111111-x' }],
      ['dev', { kind: 'inputAddressed', path: '/nix/store/22222222222222222222222222222222-x-dev' }],
    ]),
    inputDrvs: new Map(),
    inputSrcs: new Set(),
    platform: 'x86_64-linux',
    builder: '/bin/sh',
    args: [],
    env: new Map(Object.entries(env)),
  });

  test('outputs become placeholders; graph keys are added; the original object is not changed', () => {
    const attrs = jsonObject([['exportReferencesGraph', jsonObject([['g', '/nix/store/p']])]]);
    const seen: unknown[] = [];
    const json = prepareStructuredAttrs(attrs, drv({}), (k, roots) => {
      seen.push([k, roots]);
      return [];
    });
    assert.deepEqual(seen, [['g', ['/nix/store/p']]]);
    assert.equal(dumpJson(json), `{"exportReferencesGraph":{"g":"/nix/store/p"},"g":[],"outputs":{"dev":"${hashPlaceholder('dev')}","out":"${hashPlaceholder('out')}"}}`);
    assert.equal('outputs' in attrs, false);
  });

  test('typed attributes, structured and legacy', () => {
    const legacy = new DerivationAttrs('h-x.drv', drv({ a: 'x y\tz', b: '1', c: 'true' }), null);
    assert.deepEqual(legacy.getStrings('a'), ['x', 'y', 'z']);
    assert.equal(legacy.getBool('b'), true);
    assert.equal(legacy.getBool('c'), false);
    assert.equal(legacy.getString('missing'), undefined);
    const structured = DerivationAttrs.of('h-x.drv', drv({ __json: '{"a":["x"],"b":true,"s":"v","n":1}' }));
    assert.deepEqual(structured.getStrings('a'), ['x']);
    assert.equal(structured.getBool('b'), true);
    assert.equal(structured.getString('s'), 'v');
    assert.throws(() => structured.getString('n'), { message: "attribute 'n' of derivation 'h-x.drv' must be a string" });
    assert.throws(() => structured.getBool('s'), { message: "attribute 's' of derivation 'h-x.drv' must be a Boolean" });
    assert.throws(() => structured.getStrings('s'), { message: "attribute 's' of derivation 'h-x.drv' must be a list of strings" });
  });

  test('tokenizeString', () => {
    assert.deepEqual(tokenizeString('  a \n\tb\r c  '), ['a', 'b', 'c']);
    assert.deepEqual(tokenizeString(''), []);
  });
});
