// The builder's seccomp program, compiled in TypeScript with libseccomp
// (through koffi) and exported as raw BPF for the launcher to load.
//
// The policy is plain data (seccompPolicy) so `explain` can print it and tests
// can inspect it; compileSeccomp turns it into bytes. koffi is loaded lazily:
// it costs start-up time (~12 ms with libseccomp) and is only needed by builds
// with filter-syscalls on, and not even by those when the build step's copy of
// the default program is there (seccomp-cache.ts).
import { createRequire } from 'node:module';
import { closeSync, fstatSync, readSync, rmSync } from 'node:fs';
import { SeccompUnavailable } from './errors.js';
import { libraryId, mappedLibrary, policyKey, readCachedProgram, SECCOMP_CACHE_PATH, writeCachedProgram } from './seccomp-cache.js';

export const LIBSECCOMP = 'libseccomp.so.2';

export type SeccompAction = { kind: 'errno'; errno: number; name: string };

export interface SeccompRule {
  syscall: string;
  action: SeccompAction;
  /** Only when (arg[index] & mask) === value; absent: always. */
  when?: { arg: number; mask: bigint; value: bigint; describe: string };
  /** Skip silently when libseccomp or the kernel does not know the call. */
  optional?: boolean;
}

export interface SeccompPolicy {
  /** libseccomp architecture names: native first, then secondary ones. */
  archs: string[];
  rules: SeccompRule[];
}

const EPERM: SeccompAction = { kind: 'errno', errno: 1, name: 'EPERM' };
const ENOTSUP: SeccompAction = { kind: 'errno', errno: 95, name: 'ENOTSUP' };
const ENOSYS: SeccompAction = { kind: 'errno', errno: 38, name: 'ENOSYS' };

const S_ISUID = 0o4000n;
const S_ISGID = 0o2000n;
const TIOCSTI = 0x5412n;
const TIOCLINUX = 0x541cn;

/** Secondary ABIs a process on this architecture can switch to. */
export function archsFor(nodeArch: string): string[] {
  switch (nodeArch) {
    case 'x64':
      return ['x86_64', 'x86', 'x32'];
    case 'arm64':
      return ['aarch64', 'arm'];
    case 'ia32':
      return ['x86'];
    case 'arm':
      return ['arm'];
    default:
      return [];
  }
}

/**
 * The rules every sandboxed builder runs under (filter-syscalls = true):
 * no setuid/setgid bits (they would survive into the store), no extended
 * attributes (not representable in a NAR), no io_uring (its operations
 * bypass the filter, as Lix decided), and no terminal input injection.
 */
export function seccompPolicy(nodeArch: string): SeccompPolicy {
  let p = policies.get(nodeArch);
  if (!p) policies.set(nodeArch, (p = makePolicy(nodeArch)));
  return p;
}

/** One policy object per architecture: compileSeccomp finds it again by identity. */
const policies = new Map<string, SeccompPolicy>();

function makePolicy(nodeArch: string): SeccompPolicy {
  const rules: SeccompRule[] = [];
  const modeCalls: [string, number, boolean][] = [
    ['chmod', 1, false],
    ['fchmod', 1, false],
    ['fchmodat', 2, false],
    ['fchmodat2', 2, true],
  ];
  for (const [bit, name] of [
    [S_ISUID, 'S_ISUID'],
    [S_ISGID, 'S_ISGID'],
  ] as const) {
    for (const [syscall, arg, optional] of modeCalls) {
      rules.push({
        syscall,
        action: EPERM,
        when: { arg, mask: bit, value: bit, describe: `mode has ${name}` },
        ...(optional ? { optional } : {}),
      });
    }
  }
  for (const syscall of ['setxattr', 'lsetxattr', 'fsetxattr']) rules.push({ syscall, action: ENOTSUP });
  rules.push({ syscall: 'setxattrat', action: ENOTSUP, optional: true });
  for (const syscall of ['io_uring_setup', 'io_uring_enter', 'io_uring_register']) {
    rules.push({ syscall, action: ENOSYS, optional: true });
  }
  for (const [req, name] of [
    [TIOCSTI, 'TIOCSTI'],
    [TIOCLINUX, 'TIOCLINUX'],
  ] as const) {
    // The kernel ignores the upper 32 bits of the request (CVE-2017-5226).
    rules.push({ syscall: 'ioctl', action: EPERM, when: { arg: 1, mask: 0xffffffffn, value: req, describe: `request is ${name}` } });
  }
  // shared (see seccompPolicy): nobody may change it
  for (const r of rules) Object.freeze(r);
  return Object.freeze({ archs: Object.freeze(archsFor(nodeArch)) as string[], rules: Object.freeze(rules) as SeccompRule[] });
}

export function describeRule(r: SeccompRule): string {
  // Mode bits read best in octal, ioctl requests in hex.
  const fmt = (v: bigint): string => (r.when && r.when.mask > 0o7777n ? `0x${v.toString(16)}` : `0o${v.toString(8)}`);
  const cond = r.when ? ` when ${r.when.describe} (arg${r.when.arg} & ${fmt(r.when.mask)} == ${fmt(r.when.value)})` : '';
  return `${r.syscall}${cond} -> ${r.action.name}`;
}

// ---- libseccomp through koffi ----

const SCMP_ACT_ALLOW = 0x7fff0000;
const SCMP_CMP_MASKED_EQ = 7;
const actErrno = (e: number): number => (0x00050000 | (e & 0xffff)) >>> 0;

interface Lib {
  seccomp_init(def: number): unknown;
  seccomp_release(ctx: unknown): void;
  seccomp_arch_add(ctx: unknown, arch: number): number;
  seccomp_arch_native(): number;
  seccomp_arch_resolve_name(name: string): number;
  seccomp_syscall_resolve_name_arch(arch: number, name: string): number;
  seccomp_rule_add_array(ctx: unknown, action: number, syscall: number, count: number, args: unknown): number;
  seccomp_export_bpf(ctx: unknown, fd: number): number;
  memfd_create(name: string, flags: number): number;
}

let libCache: Lib | Error | null = null;

function loadLib(): Lib {
  if (libCache instanceof Error) throw libCache;
  if (libCache) return libCache;
  try {
    const require = createRequire(import.meta.url);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const koffi = require('koffi');
    const lib = koffi.load(LIBSECCOMP);
    const libc = koffi.load('libc.so.6');
    const cmp = koffi.struct('scmp_arg_cmp', { arg: 'uint', op: 'int', datum_a: 'uint64_t', datum_b: 'uint64_t' });
    libCache = {
      seccomp_init: lib.func('void *seccomp_init(uint32_t)'),
      seccomp_release: lib.func('void seccomp_release(void *)'),
      seccomp_arch_add: lib.func('int seccomp_arch_add(void *, uint32_t)'),
      seccomp_arch_native: lib.func('uint32_t seccomp_arch_native()'),
      seccomp_arch_resolve_name: lib.func('uint32_t seccomp_arch_resolve_name(const char *)'),
      seccomp_syscall_resolve_name_arch: lib.func('int seccomp_syscall_resolve_name_arch(uint32_t, const char *)'),
      seccomp_rule_add_array: lib.func('seccomp_rule_add_array', 'int', ['void *', 'uint32_t', 'int', 'uint', koffi.pointer(cmp)]),
      seccomp_export_bpf: lib.func('int seccomp_export_bpf(void *, int)'),
      memfd_create: libc.func('int memfd_create(const char *, uint)'),
    };
    return libCache;
  } catch (e) {
    libCache = new SeccompUnavailable(
      `filter-syscalls is on but ${LIBSECCOMP} could not be loaded (${(e as Error).message}); ` +
        `install it (e.g. 'apt-get install libseccomp2') or set 'filter-syscalls = false' ` +
        `(builders can then create setuid binaries)`,
      { library: LIBSECCOMP },
    );
    throw libCache;
  }
}

/** What compileSeccomp actually put in the program (for explain and tests). */
export interface CompiledSeccomp {
  bpf: Buffer;
  archs: string[];
  /** Optional rules left out because libseccomp does not know the call. */
  skipped: string[];
}

const compiled = new Map<string, CompiledSeccomp>();
const compiledByPolicy = new WeakMap<SeccompPolicy, CompiledSeccomp>();

/**
 * Compiles `policy` to a BPF program (struct sock_filter[]), cached per policy:
 * in memory, and for the default policy in the file the build step wrote
 * (seccomp-cache.ts). Throws SeccompUnavailable when libseccomp is missing or
 * refuses a rule: never a silently unfiltered build.
 */
export function compileSeccomp(policy: SeccompPolicy): CompiledSeccomp {
  const same = compiledByPolicy.get(policy);
  if (same) return same;
  const key = policyKey(policy);
  const result = compiled.get(key) ?? readCachedProgram(SECCOMP_CACHE_PATH, key) ?? compileWithLibseccomp(policy);
  compiled.set(key, result);
  compiledByPolicy.set(policy, result);
  return result;
}

/** compileSeccomp without its caches: libseccomp, now. */
export function compileWithLibseccomp(policy: SeccompPolicy): CompiledSeccomp {
  const lib = loadLib();
  const fail = (what: string): never => {
    throw new SeccompUnavailable(`cannot build the seccomp filter: ${what}`, { what });
  };
  const ctx = lib.seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) fail('seccomp_init failed');
  const skipped: string[] = [];
  const archs: string[] = [];
  try {
    const native = lib.seccomp_arch_native();
    for (const name of policy.archs) {
      const token = lib.seccomp_arch_resolve_name(name);
      if (!token) fail(`libseccomp does not know architecture '${name}'`);
      if (token !== native) {
        const r = lib.seccomp_arch_add(ctx, token);
        // -EEXIST: already there
        if (r !== 0 && r !== -17) fail(`unable to add ${name} seccomp architecture (${r})`);
      }
      archs.push(name);
    }
    for (const rule of policy.rules) {
      const nr = lib.seccomp_syscall_resolve_name_arch(native, rule.syscall);
      if (nr < 0) {
        if (rule.optional) {
          skipped.push(rule.syscall);
          continue;
        }
        fail(`libseccomp does not know the system call '${rule.syscall}'`);
      }
      const args = rule.when
        ? { arg: rule.when.arg, op: SCMP_CMP_MASKED_EQ, datum_a: rule.when.mask, datum_b: rule.when.value }
        : null;
      const r = lib.seccomp_rule_add_array(ctx, actErrno(rule.action.errno), nr, args ? 1 : 0, args);
      if (r !== 0) fail(`unable to add seccomp rule '${describeRule(rule)}' (${r})`);
    }
    const fd = lib.memfd_create('drvbox-seccomp', 1 /* MFD_CLOEXEC */);
    if (fd < 0) fail('memfd_create failed');
    try {
      if (lib.seccomp_export_bpf(ctx, fd) !== 0) fail('seccomp_export_bpf failed');
      const size = fstatSync(fd).size;
      const bpf = Buffer.alloc(size);
      let off = 0;
      while (off < size) {
        const n = readSync(fd, bpf, off, size - off, off);
        if (n <= 0) break;
        off += n;
      }
      if (size === 0 || size % 8 !== 0) fail(`exported program has ${size} bytes`);
      return { bpf, archs, skipped };
    } finally {
      closeSync(fd);
    }
  } finally {
    lib.seccomp_release(ctx);
  }
}

/** True when libseccomp can be loaded (for probe). */
export function seccompAvailable(): { ok: true } | { ok: false; error: string } {
  try {
    loadLib();
    return { ok: true };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/**
 * The build step's half of the cache: compiles this architecture's policy
 * with libseccomp and writes it to `file` with the library's identity. When
 * it cannot, no file is left (builds then compile it themselves).
 */
export function writeSeccompCache(file: string = SECCOMP_CACHE_PATH): { written: boolean; detail: string } {
  if (file === '') return { written: false, detail: 'the cache is turned off (DRVBOX_SECCOMP_CACHE=)' };
  rmSync(file, { force: true });
  const policy = seccompPolicy(process.arch);
  let program: CompiledSeccomp;
  try {
    program = compileWithLibseccomp(policy);
  } catch (e) {
    return { written: false, detail: (e as Error).message };
  }
  const path = mappedLibrary();
  const id = path === null ? null : libraryId(path);
  if (!id) return { written: false, detail: `cannot tell which file ${LIBSECCOMP} was loaded from` };
  try {
    writeCachedProgram(file, policyKey(policy), program, id);
  } catch (e) {
    return { written: false, detail: `cannot write '${file}': ${(e as Error).message}` };
  }
  return { written: true, detail: `${program.bpf.length / 8} instructions compiled with ${path}` };
}
