// `drvbox sandbox explain --platform darwin`: what a macOS build would be
// allowed and how it would be started, as text. Works on any OS.
import type { DarwinSandboxSpec } from './plan.js';
import { CPU_TYPE_ARM64, CPU_TYPE_X86_64, type FileAction } from './spawn-plan.js';
import { SBPL_PATTERN_LIMIT } from './sbpl.js';

/** POSIX shell quoting, so the argv line can be pasted into a terminal. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function cpuName(t: number): string {
  const name = t === CPU_TYPE_ARM64 ? 'CPU_TYPE_ARM64' : t === CPU_TYPE_X86_64 ? 'CPU_TYPE_X86_64' : 'cpu type';
  return `${name} (0x${t.toString(16)})`;
}

function fileAction(a: FileAction): string {
  if (a.op === 'open') return `open ${a.path} as fd ${a.fd}`;
  if (a.op === 'dup2') return `fd ${a.fd} -> log pipe`;
  return `chdir ${a.path}`;
}

export function explainDarwin(spec: DarwinSandboxSpec): string {
  const r = spec.request;
  const s = spec.spawn;
  const lines: string[] = [];
  lines.push(`darwin sandbox plan for ${r.drvPath} (system ${r.system})`);
  lines.push(
    spec.sandboxed
      ? `mode: sandboxed (sandbox = ${r.sandboxMode}${r.fixedOutput ? ', fixed-output: network allowed' : ''}${r.allowLocalNetworking ? ', local networking' : ''})`
      : `mode: unsandboxed, minimal profile (sandbox = ${r.sandboxMode}${r.noChroot ? ', __noChroot' : ''}${r.fixedOutput ? ', fixed-output' : ''})`,
  );
  lines.push(`build directory: ${spec.buildDir}`);
  if (spec.sandboxed) lines.push(`global temporary directory: ${spec.globalTmpDir}`);
  lines.push(`profile file: ${spec.profilePath}`);
  lines.push(`spawn: posix_spawn ${s.path}`);
  lines.push(`  argv: ${s.argv.map(shellQuote).join(' ')}`);
  lines.push(`  environment: ${s.envp.length} variables`);
  lines.push(`  file actions: ${s.fileActions.map(fileAction).join('; ')}`);
  lines.push(`  flags: ${s.flagNames.join(' | ')} (0x${s.flags.toString(16)}); new process group; default signal handlers, empty signal mask`);
  lines.push(`  binpref: ${s.binpref.length ? s.binpref.map(cpuName).join(', ') : 'none (kernel default)'}`);
  for (const c of s.sysctls) lines.push(`  before spawning: sysctlbyname("${c.name}") = ${c.value}`);
  if (s.credentials) lines.push(`  runs as uid ${s.credentials.uid}, gid ${s.credentials.gid}, groups ${s.credentials.groups.join(',')}`);
  if (spec.sandboxed) {
    const sub = spec.allowed.filter((a) => a.kind === 'subpath').length;
    lines.push(`allowed paths: ${spec.allowed.length} (${sub} subpath, ${spec.allowed.length - sub} literal), outputs: ${spec.outputs.length}, parent directories: ${spec.ancestry.length}`);
    if (spec.skipped.length) lines.push(`skipped (optional, missing): ${spec.skipped.join(', ')}`);
    const largest = Math.max(0, ...spec.groups.map((g) => g.filterBytes));
    lines.push(`allow groups: ${spec.groups.length}, largest ${largest} bytes of filters (sandbox-exec refuses more than ${SBPL_PATTERN_LIMIT} per group)`);
  }
  for (const n of spec.notes) lines.push(`note: ${n}`);
  lines.push('--- profile ---');
  return lines.join('\n') + '\n' + spec.profile;
}
