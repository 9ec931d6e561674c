// hashPath's choice between the native serialiser and the JS walk. The
// program's location is fixed when the module loads (DRVBOX_NAR_DUMP), so
// each case runs hashPath in a child Node process.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NAR_DUMP_PATH } from '../../src/native/nar-dump.js';
import { REPO_ROOT } from '../helpers/host.js';
import { tempDir } from '../helpers/tmp.js';

const NAR_FS = join(REPO_ROOT, 'dist', 'src', 'store', 'nar-fs.js');

/** hashPath(path) in a child with DRVBOX_NAR_DUMP=`program`: its base-16 digest and NAR size, or its error. */
function childHash(program: string | undefined, path: string, times = 1): { hex?: string; narSize?: number; error?: { name: string; code: string; message: string } } {
  const script = `
    const { hashPath } = await import(${JSON.stringify(NAR_FS)});
    try {
      for (let i = 1; i < ${times}; i++) await hashPath(process.argv[1]);
      const r = await hashPath(process.argv[1]);
      console.log(JSON.stringify({ hex: Buffer.from(r.hash.digest).toString('hex'), narSize: r.narSize }));
    } catch (e) {
      console.log(JSON.stringify({ error: { name: e.name, code: e.code, message: e.message } }));
    }`;
  const env = { ...process.env };
  if (program === undefined) delete env.DRVBOX_NAR_DUMP;
  else env.DRVBOX_NAR_DUMP = program;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, path], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as ReturnType<typeof childHash>;
}

/** A stand-in for the program that logs each call's arguments, then runs `then` ($P is the path, the last argument). */
function loggingProgram(dir: string, then: string): { program: string; calls: () => string[] } {
  const log = join(dir, 'calls.log');
  const program = join(dir, 'nar-dump-logged');
  writeFileSync(program, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nfor P; do :; done\n${then}\n`);
  chmodSync(program, 0o755);
  return { program, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []) };
}

/** Of makeTree's tree: `nix-hash --type sha256` and the size of `nix-store --dump`. */
const TREE_HASH = { hex: '62973ff365784c45821156e88ae5975e0381b79d9e69606ae0c408d2bd49401f', narSize: 58416 };
const SMALL_TREE_HASH = { hex: 'acbe1d1304ea8d4d3ffb6ecdb103a7fe11fe33a05b79f8c32b5106d5a4d88811', narSize: 648 };

/** 304 entries: enough for hashPath to start the program (300); `small`: 3, too few. */
function makeTree(root: string, small = false): void {
  mkdirSync(join(root, 'sub'), { recursive: true });
  writeFileSync(join(root, 'sub', 'a'), 'a\n');
  writeFileSync(join(root, 'b'), 'b\n');
  if (small) return;
  mkdirSync(join(root, 'many'));
  for (let i = 0; i < 300; i++) writeFileSync(join(root, 'many', `f${String(i).padStart(3, '0')}`), `${i}\n`);
}

describe('hashPath: native serialiser or JS walk (Linux)', () => {
  test('a big tree goes to the native program, a small one or a file does not; all give the JS hash', (t) => {
    if (!existsSync(NAR_DUMP_PATH)) throw new Error(`cannot run on this host: '${NAR_DUMP_PATH}' was not built (a C compiler and 'npm run build')`);
    const d = tempDir(t);
    const root = join(d, 'tree');
    makeTree(root);
    const js = childHash('', root); // empty: turned off
    assert.deepEqual(js, TREE_HASH);
    const { program, calls } = loggingProgram(d, `exec '${NAR_DUMP_PATH}' "$@"`);
    assert.deepEqual(childHash(program, root), js);
    assert.deepEqual(calls(), [`--hash sha256 ${root}`], 'hashed in the program');
    assert.deepEqual(childHash(program, join(root, 'b')), childHash('', join(root, 'b')));
    const small = join(d, 'small');
    makeTree(small, true);
    assert.deepEqual(childHash(program, small), SMALL_TREE_HASH);
    assert.deepEqual(calls(), [`--hash sha256 ${root}`], 'a lone file and a small tree are hashed in JS (starting the program costs more)');
    assert.deepEqual(childHash(undefined, root), js, 'the built program (default location)');
  });

  test('missing, not executable or failing with a system error: the JS walk, silently', (t) => {
    const d = tempDir(t);
    const root = join(d, 'tree');
    makeTree(root);
    const js = childHash('', root);
    assert.deepEqual(js, TREE_HASH);
    assert.deepEqual(childHash(join(d, 'not-there'), root), js);
    const plain = join(d, 'not-executable');
    writeFileSync(plain, '#!/bin/sh\n');
    chmodSync(plain, 0o644);
    assert.deepEqual(childHash(plain, root), js);
    const failing = loggingProgram(d, `echo 'E_SYSTEM errno=13 scandir x: Permission denied' >&2; printf 'partial'; exit 1`);
    assert.deepEqual(childHash(failing.program, root), js);
    assert.deepEqual(failing.calls(), [`--hash sha256 ${root}`, root], 'hashing there, then streaming, then JS');
    mkdirSync(join(d, 'killed'));
    const killed = loggingProgram(join(d, 'killed'), 'kill -9 $$');
    assert.deepEqual(childHash(killed.program, root), js);
    assert.deepEqual(killed.calls(), [`--hash sha256 ${root}`, root]);
  });

  test('no libcrypto for the program (exit 3): the NAR is streamed to Node and hashed there, and --hash is not tried again', (t) => {
    if (!existsSync(NAR_DUMP_PATH)) throw new Error(`cannot run on this host: '${NAR_DUMP_PATH}' was not built (a C compiler and 'npm run build')`);
    const d = tempDir(t);
    const root = join(d, 'tree');
    makeTree(root);
    const noCrypto = loggingProgram(d, `[ "$1" = --hash ] && { echo 'E_NO_CRYPTO libcrypto.so.3: cannot open shared object file' >&2; exit 3; }; exec '${NAR_DUMP_PATH}' "$P"`);
    assert.deepEqual(childHash(noCrypto.program, root, 2), TREE_HASH);
    assert.deepEqual(noCrypto.calls(), [`--hash sha256 ${root}`, root, root], 'the second hash does not ask for --hash again');
  });

  test("the program's typed failure becomes the typed error, without a retry in JS", (t) => {
    const d = tempDir(t);
    const root = join(d, 'tree');
    makeTree(root);
    const fake = loggingProgram(
      d,
      `echo "E_UNSUPPORTED_FILE_TYPE cannot serialise '$P/sub/a': unsupported file type (not a file, directory or symlink)" >&2; exit 1`,
    );
    assert.deepEqual(childHash(fake.program, root), {
      error: {
        name: 'UnsupportedFileType',
        code: 'E_UNSUPPORTED_FILE_TYPE',
        message: `cannot serialise '${root}/sub/a': unsupported file type (not a file, directory or symlink)`,
      },
    });
    mkdirSync(join(d, 'c'));
    const changed = loggingProgram(join(d, 'c'), `echo "E_FILE_CHANGED file '$P/b' changed while being read: expected 2 bytes, got 1" >&2; exit 1`);
    assert.deepEqual(childHash(changed.program, root), {
      error: { name: 'FileChangedWhileReading', code: 'E_FILE_CHANGED', message: `file '${root}/b' changed while being read: expected 2 bytes, got 1` },
    });
  });
});
