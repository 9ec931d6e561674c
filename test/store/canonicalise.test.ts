import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { canonicalisePathMetaData } from '../../src/store/canonicalise.js';
import { InvalidOwnership } from '../../src/store/errors.js';
import { tempDir } from '../helpers/tmp.js';

const mode = (p: string) => (lstatSync(p).mode & 0o7777).toString(8);

describe('canonicalise', () => {
  test('modes 0444/0555, no setuid/setgid/sticky, mtime 1 (symlinks too)', (t) => {
    const d = join(tempDir(t), 'out');
    mkdirSync(join(d, 'sub'), { recursive: true });
    writeFileSync(join(d, 'f'), 'x');
    writeFileSync(join(d, 'sub', 'suid'), 'x');
    chmodSync(join(d, 'sub', 'suid'), 0o6755);
    chmodSync(join(d, 'sub'), 0o1777);
    writeFileSync(join(d, 'w'), 'x');
    chmodSync(join(d, 'w'), 0o666);
    symlinkSync('f', join(d, 'l'));
    utimesSync(join(d, 'f'), 5000, 5000);
    canonicalisePathMetaData(d);
    assert.deepEqual([mode(d), mode(join(d, 'f')), mode(join(d, 'sub')), mode(join(d, 'sub', 'suid')), mode(join(d, 'w'))], ['555', '444', '555', '555', '444']);
    for (const p of [d, join(d, 'f'), join(d, 'sub'), join(d, 'sub', 'suid'), join(d, 'l')]) assert.equal(lstatSync(p).mtimeMs, 1000, p);
  });

  test('a fifo is refused with a typed error naming it', (t) => {
    const d = join(tempDir(t), 'out');
    mkdirSync(d);
    execFileSync('mkfifo', [join(d, 'pipe')]);
    assert.throws(() => canonicalisePathMetaData(d), (e: unknown) => (e as { code?: string }).code === 'E_UNSUPPORTED_FILE_TYPE' && (e as Error).message.includes(join(d, 'pipe')));
  });

  test('with fromUid, a file owned by anyone else is refused (any user)', (t) => {
    const d = join(tempDir(t), 'out');
    mkdirSync(d);
    writeFileSync(join(d, 'f'), 'x');
    const me = process.getuid?.() ?? 0;
    assert.throws(() => canonicalisePathMetaData(d, { fromUid: me + 1 }), (e: unknown) => e instanceof InvalidOwnership && e.message === `invalid ownership on file '${d}' (owner ${me}, expected ${me + 1})`);
  });

  test('as root: files are chowned to us; with fromUid a foreign file is refused, a hard link to an owned one is not', (t) => {
    if (process.getuid?.() !== 0) throw new Error('cannot run on this host: needs root (chown)');
    const d = join(tempDir(t), 'out');
    mkdirSync(d);
    writeFileSync(join(d, 'mine'), 'x');
    chownSync(join(d, 'mine'), 4321, 4321);
    chownSync(d, 4321, 4321);
    linkSync(join(d, 'mine'), join(d, 'hardlink'));
    canonicalisePathMetaData(d, { fromUid: 4321 });
    assert.equal(lstatSync(join(d, 'mine')).uid, 0);
    const e2 = join(tempDir(t), 'out2');
    mkdirSync(e2);
    chownSync(e2, 4321, 4321);
    writeFileSync(join(e2, 'shadow'), 'secret');
    chownSync(join(e2, 'shadow'), 0, 0);
    assert.throws(() => canonicalisePathMetaData(e2, { fromUid: 4321 }), (e: unknown) => e instanceof InvalidOwnership && e.message === `invalid ownership on file '${join(e2, 'shadow')}' (owner 0, expected 4321)`);
  });
});
