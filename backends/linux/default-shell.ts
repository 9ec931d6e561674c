// The default `sandbox-paths` on Linux: a `/bin/sh` that works inside the
// sandbox on a fresh machine. Nix's default is a static busybox fixed when
// Nix is built (Debian's nix-bin has none, so its sandbox has no /bin/sh).
// drvbox decides from the host:
//   1. a static busybox (/usr/bin/busybox, /bin/busybox: busybox-static)
//      -> `/bin/sh=<busybox>`;
//   2. else the host's /bin/sh itself: statically linked -> `/bin/sh=<it>`;
//      dynamically linked -> it plus its ELF interpreter and the shared
//      libraries it needs (DT_NEEDED, recursively), each at the path the
//      loader looks for it. Inside there is no /etc/ld.so.cache, so a
//      library the host found elsewhere than the loader's own directories
//      (rpath, ld.so.conf) is placed in the directory of libc;
//   3. else nothing (doctor says so).
// The answer is pure given a ShellHost; localShellHost() reads the real one.
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, posix } from 'node:path';
import { readElf, type ElfInfo, type ReadAt } from './elf.js';

export const STATIC_SHELL_CANDIDATES = ['/usr/bin/busybox', '/bin/busybox'];

export interface ShellHost {
  /** The ELF headers of a file; null when it cannot be read or is not ELF. */
  elf(path: string): ElfInfo | null;
  realpath(path: string): string | null;
  isFile(path: string): boolean;
  /** Text of a file (ld.so.conf), null when missing. */
  readText(path: string): string | null;
  /** Entries of a directory (for `include` globs). */
  list(dir: string): string[];
  /** process.arch, for the multiarch directory names. */
  arch: string;
}

export interface DefaultShell {
  /** `sandbox-paths` words (TARGET=SOURCE). */
  paths: string[];
  /** How they were chosen, for doctor. */
  how: string;
}

const TRIPLETS: Record<string, string[]> = {
  x64: ['x86_64-linux-gnu', 'x86_64-linux-musl'],
  arm64: ['aarch64-linux-gnu', 'aarch64-linux-musl'],
  ia32: ['i386-linux-gnu'],
  arm: ['arm-linux-gnueabihf'],
  riscv64: ['riscv64-linux-gnu'],
  ppc64: ['powerpc64le-linux-gnu'],
  s390x: ['s390x-linux-gnu'],
};

function standardDirs(arch: string): string[] {
  const multi = TRIPLETS[arch] ?? [];
  return [...multi.flatMap((t) => [`/lib/${t}`, `/usr/lib/${t}`]), '/lib64', '/usr/lib64', '/lib', '/usr/lib'];
}

/** Directories of /etc/ld.so.conf (with `include` globs, one `*` per component). */
export function ldSoConfDirs(host: ShellHost, file = '/etc/ld.so.conf', depth = 0): string[] {
  const text = host.readText(file);
  if (text === null || depth > 8) return [];
  const dirs: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '' || line.startsWith('hwcap ')) continue;
    if (line.startsWith('include ')) {
      for (const pattern of line.slice(8).trim().split(/\s+/)) {
        const abs = pattern.startsWith('/') ? pattern : join(dirname(file), pattern);
        const dir = dirname(abs);
        const leaf = basename(abs);
        const re = new RegExp('^' + leaf.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
        for (const e of host.list(dir).filter((n) => re.test(n)).sort()) dirs.push(...ldSoConfDirs(host, join(dir, e), depth + 1));
      }
      continue;
    }
    dirs.push(...line.split(/[:,\s]+/).filter((d) => d.startsWith('/')));
  }
  return dirs;
}

function compatible(a: ElfInfo, b: ElfInfo): boolean {
  return a.bits === b.bits && a.littleEndian === b.littleEndian && a.machine === b.machine;
}

/**
 * The interpreter and libraries `program` needs, as sandbox-paths words
 * (without the program itself); null when one cannot be found.
 */
export function runtimeClosure(host: ShellHost, program: string, elf: ElfInfo): { words: string[]; missing: string | null } {
  const words = new Map<string, string>();
  const confDirs = ldSoConfDirs(host);
  const std = standardDirs(host.arch);
  const add = (target: string, hostPath: string): void => {
    if (!words.has(target)) words.set(target, host.realpath(hostPath) ?? hostPath);
  };
  if (elf.interpreter) add(elf.interpreter, elf.interpreter);
  // Breadth-first over DT_NEEDED; each library's own rpath/runpath applies to its needs.
  const queue: Array<{ name: string; from: string; info: ElfInfo }> = elf.needed.map((n) => ({ name: n, from: program, info: elf }));
  const found = new Map<string, { path: string; info: ElfInfo }>();
  let libcDir: string | null = null;
  while (queue.length > 0) {
    const { name, from, info } = queue.shift()!;
    if (found.has(name)) continue;
    const origin = dirname(host.realpath(from) ?? from);
    const expand = (d: string) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin);
    const search = name.includes('/')
      ? ['']
      : [...(info.runpath.length === 0 ? info.rpath : []), ...info.runpath].map(expand).concat(confDirs, std);
    let hit: { path: string; info: ElfInfo } | null = null;
    for (const dir of search) {
      const p = dir === '' ? name : posix.join(dir, name);
      if (!host.isFile(p)) continue;
      const li = host.elf(p);
      if (li && compatible(li, elf)) {
        hit = { path: p, info: li };
        break;
      }
    }
    if (!hit) return { words: [], missing: name };
    found.set(name, hit);
    if (/^libc\.(so|musl)/.test(name)) libcDir = dirname(hit.path);
    for (const n of hit.info.needed) queue.push({ name: n, from: hit.path, info: hit.info });
  }
  const trusted = new Set([...std, ...(libcDir ? [libcDir] : [])]);
  for (const [name, { path }] of found) {
    const dir = dirname(path);
    const target = trusted.has(dir) || name.includes('/') ? path : posix.join(libcDir ?? '/lib', basename(path));
    // The loader satisfies a need for itself (glibc's libc needs ld-linux; musl's loader is its libc).
    if (elf.interpreter && (host.realpath(path) ?? path) === (host.realpath(elf.interpreter) ?? elf.interpreter)) continue;
    add(target, path);
  }
  return { words: [...words].map(([t, s]) => `${t}=${s}`), missing: null };
}

/** Decides the default sandbox-paths of this host (see the header). */
export function defaultShell(host: ShellHost): DefaultShell {
  for (const c of STATIC_SHELL_CANDIDATES) {
    const elf = host.isFile(c) ? host.elf(c) : null;
    if (elf && elf.interpreter === null && elf.needed.length === 0) {
      return { paths: [`/bin/sh=${host.realpath(c) ?? c}`], how: `static busybox at ${c}` };
    }
  }
  const sh = host.realpath('/bin/sh');
  const elf = sh && host.isFile(sh) ? host.elf(sh) : null;
  if (!sh || !elf) {
    return { paths: [], how: `no static busybox and /bin/sh ${sh ? `('${sh}') is not an ELF program` : 'does not exist'}: the sandbox has no /bin/sh` };
  }
  if (elf.interpreter === null && elf.needed.length === 0) return { paths: [`/bin/sh=${sh}`], how: `the host's static /bin/sh (${sh})` };
  const closure = runtimeClosure(host, sh, elf);
  if (closure.missing !== null) {
    return { paths: [], how: `no static busybox, and the library '${closure.missing}' of /bin/sh (${sh}) was not found: the sandbox has no /bin/sh` };
  }
  return {
    paths: [`/bin/sh=${sh}`, ...closure.words],
    how: `no static busybox: the host's /bin/sh (${sh}) with its loader and libraries`,
  };
}

export function localShellHost(): ShellHost {
  return {
    elf(path) {
      let fd: number;
      try {
        fd = openSync(path, 'r');
      } catch {
        return null;
      }
      try {
        const read: ReadAt = (offset, length) => {
          const b = Buffer.alloc(length);
          let n = 0;
          try {
            n = readSync(fd, b, 0, length, offset);
          } catch {
            n = 0;
          }
          return b.subarray(0, n);
        };
        return readElf(read);
      } finally {
        closeSync(fd);
      }
    },
    realpath(p) {
      try {
        return realpathSync(p);
      } catch {
        return null;
      }
    },
    isFile(p) {
      try {
        return statSync(p).isFile();
      } catch {
        return false;
      }
    },
    readText(p) {
      try {
        return readFileSync(p, 'utf8');
      } catch {
        return null;
      }
    },
    list(dir) {
      try {
        return existsSync(dir) ? readdirSync(dir) : [];
      } catch {
        return [];
      }
    },
    arch: process.arch,
  };
}

let cached: DefaultShell | null = null;

/** This host's default, computed once per process. */
export function hostDefaultShell(): DefaultShell {
  cached ??= defaultShell(localShellHost());
  return cached;
}
