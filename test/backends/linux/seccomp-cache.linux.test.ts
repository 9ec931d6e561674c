// The seccomp program the build step precompiles (seccomp-cache.ts): it is
// the program libseccomp compiles now, builds use it without loading koffi,
// and it is ignored whenever it might not be (another policy, another or a
// missing libseccomp, a damaged file).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, readFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileWithLibseccomp, seccompPolicy, writeSeccompCache, type SeccompPolicy } from '../../../backends/linux/seccomp.js';
import {
  libraryId,
  mappedLibrary,
  policyKey,
  readCachedProgram,
  SECCOMP_CACHE_PATH,
  writeCachedProgram,
} from '../../../backends/linux/seccomp-cache.js';
import { tempDir } from '../../helpers/tmp.js';

const policy = seccompPolicy(process.arch);
const key = policyKey(policy);
const SECCOMP_JS = join(fileURLToPath(import.meta.url), '..', '..', '..', '..', 'backends', 'linux', 'seccomp.js');

/** A cache file for a fake library (a temp file), holding `program`. */
function fakeCache(dir: string, program = { bpf: Buffer.alloc(16, 1), archs: ['x86_64'], skipped: ['fchmodat2'] }) {
  const lib = join(dir, 'libseccomp.so.2.9.9');
  writeFileSync(lib, 'not really a library\n');
  const file = join(dir, 'seccomp.json');
  writeCachedProgram(file, key, program, libraryId(lib)!);
  return { lib, file, program };
}

describe('seccomp program precompiled by the build step', () => {
  test('the build step wrote it, and it is byte for byte what libseccomp compiles now (same archs, same skipped calls)', () => {
    const cached = readCachedProgram(SECCOMP_CACHE_PATH, key);
    assert.ok(cached, `no usable ${SECCOMP_CACHE_PATH}: 'npm run build' writes it (backends/linux/write-seccomp-cache.mjs)`);
    const fresh = compileWithLibseccomp(policy);
    assert.equal(cached.bpf.toString('hex'), fresh.bpf.toString('hex'));
    assert.deepEqual(cached.archs, fresh.archs);
    assert.deepEqual(cached.skipped, fresh.skipped);
  });

  test('a build compiling the default policy reads it and does not load koffi; with the cache off it loads koffi and gets the same bytes', () => {
    const script = `
      const m = await import(${JSON.stringify(SECCOMP_JS)});
      const bpf = m.compileSeccomp(m.seccompPolicy(process.arch)).bpf.toString('hex');
      const { default: Module } = await import('node:module');
      const koffi = Object.keys(Module._cache).some((f) => f.includes('/koffi/'));
      console.log(JSON.stringify({ bpf, koffi }));`;
    const run = (env: Record<string, string>) => {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { bpf: string; koffi: boolean };
    };
    const cached = run({});
    const fresh = run({ DRVBOX_SECCOMP_CACHE: '' });
    assert.deepEqual({ koffi: cached.koffi, fresh: fresh.koffi }, { koffi: false, fresh: true });
    assert.equal(cached.bpf, fresh.bpf);
    assert.equal(cached.bpf, compileWithLibseccomp(policy).bpf.toString('hex'));
  });

  test('read back as written while the library is unchanged', (t) => {
    const { file, program } = fakeCache(tempDir(t));
    assert.deepEqual(readCachedProgram(file, key), program);
  });

  test('ignored for another policy', (t) => {
    const { file } = fakeCache(tempDir(t));
    const other: SeccompPolicy = { archs: policy.archs, rules: policy.rules.slice(1) };
    assert.equal(readCachedProgram(file, policyKey(other)), null);
  });

  test('ignored once the library that compiled it changed (size, mtime or inode) or is gone', (t) => {
    const dir = tempDir(t);
    const { lib, file } = fakeCache(dir);
    utimesSync(lib, new Date(1e9), new Date(1e9));
    assert.equal(readCachedProgram(file, key), null, 'mtime');
    fakeCache(dir);
    writeFileSync(lib, 'a longer replacement library\n');
    assert.equal(readCachedProgram(file, key), null, 'size');
    fakeCache(dir);
    writeFileSync(join(dir, 'next'), 'not really a library\n');
    spawnSync('mv', [join(dir, 'next'), lib]);
    assert.equal(readCachedProgram(file, key), null, 'inode');
    fakeCache(dir);
    spawnSync('rm', [lib]);
    assert.equal(readCachedProgram(file, key), null, 'gone');
  });

  test('ignored when damaged: not JSON, another version, a program that is not whole instructions, a missing field; and with the cache off', (t) => {
    const dir = tempDir(t);
    const { file } = fakeCache(dir);
    const good = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const variants: Array<[string, string]> = [
      ['not JSON', '{"version": 1,'],
      ['version 2', JSON.stringify({ ...good, version: 2 })],
      ['12 bytes', JSON.stringify({ ...good, bpf: Buffer.alloc(12).toString('base64') })],
      ['empty', JSON.stringify({ ...good, bpf: '' })],
      ['no skipped', JSON.stringify({ ...good, skipped: undefined })],
      ['null', 'null'],
    ];
    for (const [what, text] of variants) {
      writeFileSync(file, text);
      assert.equal(readCachedProgram(file, key), null, what);
    }
    assert.equal(readCachedProgram('', key), null, 'cache off');
    assert.equal(readCachedProgram(join(dir, 'absent.json'), key), null, 'absent');
  });

  test('writeSeccompCache compiles with libseccomp and names the library this process mapped', (t) => {
    const file = join(tempDir(t), 'seccomp.json');
    const r = writeSeccompCache(file);
    assert.equal(r.written, true, r.detail);
    assert.match(r.detail, /^\d+ instructions compiled with \/\S*\/libseccomp\.so[^/]*$/);
    const back = readCachedProgram(file, key)!;
    assert.equal(back.bpf.toString('hex'), compileWithLibseccomp(policy).bpf.toString('hex'));
    assert.equal(writeSeccompCache('').written, false);
  });

  test('writeSeccompCache where the file cannot be written: not written, and says where and why (the build step only prints it)', (t) => {
    const file = join(tempDir(t), 'no-such-dir', 'seccomp.json');
    const r = writeSeccompCache(file);
    assert.equal(r.written, false);
    assert.match(r.detail, new RegExp(`^cannot write '${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}': ENOENT`));
  });

  test('mappedLibrary finds libseccomp in /proc/self/maps text', () => {
    const maps = [
      '7f1c00000000-7f1c00010000 r--p 00000000 fd:00 123 /usr/lib/x86_64-linux-gnu/libc.so.6',
      '7f1c00020000-7f1c00030000 r--p 00000000 fd:00 456 /usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4',
      '7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]',
    ].join('\n');
    assert.equal(mappedLibrary(maps), '/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4');
    assert.equal(mappedLibrary(maps.split('\n').filter((l) => !l.includes('seccomp')).join('\n')), null);
  });
});
