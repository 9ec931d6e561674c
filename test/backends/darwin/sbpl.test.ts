// SBPL string escaping, group splitting and the __sandboxProfile balance
// check, read back through the test reader.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { allowGroups, sbplString, sbplUnbalanced, SBPL_GROUP_BUDGET, SBPL_PATTERN_LIMIT } from '../../../backends/darwin/sbpl.js';
import { SbplUnsafePath } from '../../../backends/darwin/errors.js';
import { readSbpl } from '../../helpers/sbpl/reader.js';

describe('sbplString', () => {
  test('escapes quote and backslash, nothing else', () => {
    assert.equal(sbplString('/a"b\\c d ✓'), '"/a\\"b\\\\c d ✓"');
    assert.equal(sbplString("/it's"), `"/it's"`);
  });

  test('bazel 29427: a path that closes the string stays one string', () => {
    const evil = '/ws") (allow default) (regex ".*';
    const forms = readSbpl(`(allow file-write* (subpath ${sbplString(evil)}))`);
    assert.equal(forms.length, 1);
    const f = forms[0]!;
    assert.ok(f.t === 'list' && f.items.length === 3);
    const filt = f.items[2]!;
    assert.ok(filt.t === 'list');
    assert.deepEqual(filt.items[1], { t: 'str', v: evil, offset: filt.items[1]!.offset });
  });

  test('NUL and newline are refused with the path in the message', () => {
    assert.throws(() => sbplString('/a\0b', 'sandbox path'), (e: unknown) => e instanceof SbplUnsafePath && e.code === 'E_SBPL_UNSAFE_PATH' && e.message === 'sandbox path "/a\\u0000b" contains a NUL byte, which cannot appear in a sandbox profile');
    assert.throws(() => sbplString('/a\nb'), /contains a newline/);
  });

  test('round trip: any string without NUL or newline reads back unchanged', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !/[\0\n]/.test(s)), (s) => {
        const [d] = readSbpl(sbplString(s));
        assert.deepEqual(d, { t: 'str', v: s, offset: 0 });
      }),
      { numRuns: 500 },
    );
  });
});

describe('allowGroups', () => {
  test('no filters, no group: an empty (allow …) would allow everything', () => {
    assert.deepEqual(allowGroups('file-read*', []), []);
  });

  test('splits once a group holds the budget, each group closed', () => {
    const filters = Array.from({ length: 10 }, (_, i) => ({ kind: 'literal' as const, path: `/p/${i}` }));
    const groups = allowGroups('file-read*', filters, 30);
    // each line is `\t(literal "/p/N")\n` = 18 bytes: two lines reach 36 >= 30
    assert.deepEqual(groups.map((g) => g.filters.length), [2, 2, 2, 2, 2]);
    assert.equal(groups[0]!.text, '(allow file-read*\n\t(literal "/p/0")\n\t(literal "/p/1")\n)\n');
    assert.equal(groups[0]!.filterBytes, 36);
    for (const g of groups) assert.equal(readSbpl(g.text).length, 1);
  });

  test('the default budget keeps far below the 64 KiB pattern limit', () => {
    assert.ok(SBPL_GROUP_BUDGET * 3 < SBPL_PATTERN_LIMIT);
  });
});

describe('sbplUnbalanced', () => {
  test('complete forms pass, with strings, regexes and comments', () => {
    assert.equal(sbplUnbalanced('(allow file-read* (literal "/a)(")) ; (\n(allow file* (regex #"^/dev/\\"x"))\n'), null);
  });
  test('an open form, a stray paren, an open string or a block comment is reported', () => {
    assert.equal(sbplUnbalanced('(allow default'), "1 unclosed '('");
    assert.equal(sbplUnbalanced('(allow default))'), "unmatched ')' at offset 15");
    assert.equal(sbplUnbalanced('(allow file* (literal "/a))'), 'unterminated string starting at offset 22');
    assert.equal(sbplUnbalanced('#| (deny file-write-setugid) |#'), 'block comment at offset 0');
  });
});
