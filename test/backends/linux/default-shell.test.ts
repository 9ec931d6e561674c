// The default sandbox-paths (a /bin/sh that works in the sandbox) and the
// ELF reader behind it, on synthetic ELF files and a fake host.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readElf, type ElfInfo } from '../../../backends/linux/elf.js';
import { defaultShell, ldSoConfDirs, type ShellHost } from '../../../backends/linux/default-shell.js';

/** A minimal ELF: PT_LOAD covering everything, optional PT_INTERP, PT_DYNAMIC with the given entries. */
function elfBytes(o: { bits: 32 | 64; le?: boolean; machine?: number; interp?: string; needed?: string[]; rpath?: string; runpath?: string; base?: number }): Buffer {
  const le = o.le ?? true;
  const w = o.bits === 64 ? 8 : 4;
  const ehsize = o.bits === 64 ? 64 : 52;
  const phentsize = o.bits === 64 ? 56 : 32;
  const base = o.base ?? 0x400000;
  const strs: string[] = ['', ...(o.needed ?? []), ...(o.rpath ? [o.rpath] : []), ...(o.runpath ? [o.runpath] : [])];
  const strtab = Buffer.from(strs.join('\0') + '\0');
  const offsetOf = (s: string) => Buffer.from(strs.slice(0, strs.indexOf(s)).map((x) => x + '\0').join('')).length;
  const dynEntries: Array<[number, number]> = [];
  for (const n of o.needed ?? []) dynEntries.push([1, offsetOf(n)]);
  if (o.rpath) dynEntries.push([15, offsetOf(o.rpath)]);
  if (o.runpath) dynEntries.push([29, offsetOf(o.runpath)]);
  const phnum = 2 + (o.interp ? 1 : 0);
  const phoff = ehsize;
  const interpOff = phoff + phnum * phentsize;
  const interp = Buffer.from((o.interp ?? '') + (o.interp ? '\0' : ''));
  const strOff = interpOff + interp.length;
  const dynOff = strOff + strtab.length;
  dynEntries.push([5, base + strOff], [0, 0]);
  const dyn = Buffer.alloc(dynEntries.length * 2 * w);
  const total = dynOff + dyn.length;
  const b = Buffer.alloc(total);
  const put = (buf: Buffer, off: number, v: number, size: number) => {
    if (size === 2) le ? buf.writeUInt16LE(v, off) : buf.writeUInt16BE(v, off);
    else if (size === 4) le ? buf.writeUInt32LE(v, off) : buf.writeUInt32BE(v, off);
    else le ? buf.writeBigUInt64LE(BigInt(v), off) : buf.writeBigUInt64BE(BigInt(v), off);
  };
  b.write('\x7fELF', 0, 'latin1');
  b[4] = o.bits === 64 ? 2 : 1;
  b[5] = le ? 1 : 2;
  b[6] = 1;
  put(b, 16, 3, 2);
  put(b, 18, o.machine ?? 62, 2);
  put(b, o.bits === 64 ? 32 : 28, phoff, w);
  put(b, o.bits === 64 ? 54 : 42, phentsize, 2);
  put(b, o.bits === 64 ? 56 : 44, phnum, 2);
  let ph = phoff;
  const phdr = (type: number, offset: number, vaddr: number, size: number) => {
    put(b, ph, type, 4);
    if (o.bits === 64) {
      put(b, ph + 8, offset, 8);
      put(b, ph + 16, vaddr, 8);
      put(b, ph + 32, size, 8);
    } else {
      put(b, ph + 4, offset, 4);
      put(b, ph + 8, vaddr, 4);
      put(b, ph + 16, size, 4);
    }
    ph += phentsize;
  };
  phdr(1, 0, base, total);
  if (o.interp) phdr(3, interpOff, base + interpOff, interp.length);
  phdr(2, dynOff, base + dynOff, dyn.length);
  interp.copy(b, interpOff);
  strtab.copy(b, strOff);
  dynEntries.forEach(([tag, val], i) => {
    put(b, dynOff + i * 2 * w, tag, w);
    put(b, dynOff + i * 2 * w + w, val, w);
  });
  return b;
}

const readerOf = (b: Buffer) => (offset: number, length: number) => b.subarray(offset, offset + length);

describe('readElf', () => {
  test('64-bit little endian: interpreter, needed, rpath and runpath', () => {
    const b = elfBytes({ bits: 64, interp: '/lib64/ld-linux-x86-64.so.2', needed: ['libtinfo.so.6', 'libc.so.6'], runpath: '$ORIGIN/../lib:/opt/x' });
    assert.deepEqual(readElf(readerOf(b)), {
      bits: 64,
      littleEndian: true,
      machine: 62,
      interpreter: '/lib64/ld-linux-x86-64.so.2',
      needed: ['libtinfo.so.6', 'libc.so.6'],
      rpath: [],
      runpath: ['$ORIGIN/../lib', '/opt/x'],
    });
  });

  test('32-bit big endian, static (no interpreter, nothing needed)', () => {
    const b = elfBytes({ bits: 32, le: false, machine: 8 });
    assert.deepEqual(readElf(readerOf(b)), { bits: 32, littleEndian: false, machine: 8, interpreter: null, needed: [], rpath: [], runpath: [] });
  });

  test('not ELF: a script, an empty file, a truncated header', () => {
    assert.equal(readElf(readerOf(Buffer.from('#!/bin/sh\necho hi\n'))), null);
    assert.equal(readElf(readerOf(Buffer.alloc(0))), null);
    assert.equal(readElf(readerOf(elfBytes({ bits: 64 }).subarray(0, 40))), null);
  });
});

/** A fake host: files with their ELF info, symlinks, text files. */
function fakeHost(o: { elf: Record<string, ElfInfo | 'text'>; links?: Record<string, string>; text?: Record<string, string>; dirs?: Record<string, string[]> }): ShellHost {
  const real = (p: string): string => o.links?.[p] ?? p;
  return {
    elf: (p) => {
      const e = o.elf[real(p)];
      return e && e !== 'text' ? e : null;
    },
    realpath: (p) => (o.elf[real(p)] !== undefined || o.text?.[p] !== undefined ? real(p) : null),
    isFile: (p) => o.elf[real(p)] !== undefined,
    readText: (p) => o.text?.[p] ?? null,
    list: (d) => o.dirs?.[d] ?? [],
    arch: 'x64',
  };
}

const X64 = { bits: 64 as const, littleEndian: true, machine: 62, rpath: [], runpath: [] };
const staticElf: ElfInfo = { ...X64, interpreter: null, needed: [] };
const LD = '/lib64/ld-linux-x86-64.so.2';
const LDREAL = '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2';
const dash: ElfInfo = { ...X64, interpreter: LD, needed: ['libc.so.6'] };
const libc: ElfInfo = { ...X64, interpreter: null, needed: ['ld-linux-x86-64.so.2'] };

describe('default sandbox-paths', () => {
  test('a static busybox is /bin/sh', () => {
    const h = fakeHost({ elf: { '/usr/bin/busybox': staticElf, '/usr/bin/dash': dash }, links: { '/bin/sh': '/usr/bin/dash' } });
    assert.deepEqual(defaultShell(h), { paths: ['/bin/sh=/usr/bin/busybox'], how: 'static busybox at /usr/bin/busybox' });
  });

  test('a dynamically linked busybox is passed over for the host /bin/sh', () => {
    const h = fakeHost({
      elf: { '/usr/bin/busybox': dash, '/bin/busybox': 'text', '/usr/bin/ash': staticElf },
      links: { '/bin/sh': '/usr/bin/ash' },
    });
    assert.deepEqual(defaultShell(h), { paths: ['/bin/sh=/usr/bin/ash'], how: "the host's static /bin/sh (/usr/bin/ash)" });
  });

  test('no busybox: the host /bin/sh with its loader and libraries, found through ld.so.conf, at the paths the loader uses', () => {
    const h = fakeHost({
      elf: { '/usr/bin/dash': dash, [LDREAL]: libc, '/usr/lib/x86_64-linux-gnu/libc.so.6': libc },
      links: {
        '/bin/sh': '/usr/bin/dash',
        [LD]: LDREAL,
        '/lib/x86_64-linux-gnu/libc.so.6': '/usr/lib/x86_64-linux-gnu/libc.so.6',
        '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2': LDREAL,
      },
      text: { '/etc/ld.so.conf': 'include /etc/ld.so.conf.d/*.conf\n', '/etc/ld.so.conf.d/x86_64-linux-gnu.conf': '# multiarch\n/lib/x86_64-linux-gnu\n' },
      dirs: { '/etc/ld.so.conf.d': ['x86_64-linux-gnu.conf', 'README'] },
    });
    assert.deepEqual(ldSoConfDirs(h), ['/lib/x86_64-linux-gnu']);
    assert.deepEqual(defaultShell(h), {
      paths: ['/bin/sh=/usr/bin/dash', `${LD}=${LDREAL}`, '/lib/x86_64-linux-gnu/libc.so.6=/usr/lib/x86_64-linux-gnu/libc.so.6'],
      how: "no static busybox: the host's /bin/sh (/usr/bin/dash) with its loader and libraries",
    });
  });

  test('a library found outside the loader\'s own directories goes next to libc; $ORIGIN runpaths; wrong-class libraries are skipped', () => {
    const bash: ElfInfo = { ...X64, interpreter: LD, needed: ['libtinfo.so.6', 'libc.so.6'], runpath: ['$ORIGIN/../lib/extra'] };
    const tinfo32: ElfInfo = { ...X64, bits: 32, interpreter: null, needed: [] };
    const tinfo: ElfInfo = { ...X64, interpreter: null, needed: ['libc.so.6'] };
    const h = fakeHost({
      elf: { '/usr/bin/bash': bash, [LD]: staticElf, '/usr/lib/extra/libtinfo.so.6': tinfo32, '/opt/lib/libtinfo.so.6': tinfo, '/usr/lib64/libc.so.6': libc },
      links: { '/bin/sh': '/usr/bin/bash' },
      text: { '/etc/ld.so.conf': '/opt/lib\n' },
    });
    assert.deepEqual(defaultShell(h).paths, [
      '/bin/sh=/usr/bin/bash',
      `${LD}=${LD}`,
      '/usr/lib64/libtinfo.so.6=/opt/lib/libtinfo.so.6',
      '/usr/lib64/libc.so.6=/usr/lib64/libc.so.6',
    ]);
  });

  test('a missing library or a /bin/sh that is not ELF: no default, and why', () => {
    const h = fakeHost({ elf: { '/usr/bin/dash': dash, [LD]: staticElf }, links: { '/bin/sh': '/usr/bin/dash' } });
    assert.deepEqual(defaultShell(h), {
      paths: [],
      how: "no static busybox, and the library 'libc.so.6' of /bin/sh (/usr/bin/dash) was not found: the sandbox has no /bin/sh",
    });
    const s = fakeHost({ elf: { '/bin/sh': 'text' } });
    assert.deepEqual(defaultShell(s), { paths: [], how: "no static busybox and /bin/sh ('/bin/sh') is not an ELF program: the sandbox has no /bin/sh" });
    assert.deepEqual(defaultShell(fakeHost({ elf: {} })), { paths: [], how: 'no static busybox and /bin/sh does not exist: the sandbox has no /bin/sh' });
  });
});
