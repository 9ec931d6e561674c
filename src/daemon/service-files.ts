// Service definitions for `drvbox daemon --install`: a launchd property list
// on macOS, a systemd unit on Linux. Both are generated from the daemon's argv
// and checked by parsing the generated text back, so a path with spaces,
// quotes, `%` or `$` cannot turn into a different command line.
import { posix } from 'node:path';
import { build as buildPlist, parse as parsePlist, type PlistValue } from 'plist';
import { defineError } from '../errors.js';

export class ServiceFileInvalid extends defineError('ServiceFileInvalid', 'E_SERVICE_FILE') {}

export const DEFAULT_LAUNCHD_LABEL = 'org.drvbox.daemon';
export const DEFAULT_SYSTEMD_UNIT = 'drvbox-daemon.service';

export interface DaemonServiceOptions {
  /** The daemon's argv, executable first (absolute), e.g. [node, main.js, 'daemon', '--socket', PATH]. */
  program: string[];
  /** launchd Label / systemd unit name (without .service). */
  label?: string;
  description?: string;
  /** Run as this user (launchd UserName, systemd User=); default: root / the user manager. */
  user?: string;
  environment?: Record<string, string>;
  workingDirectory?: string;
  /** launchd only: stdout and stderr of the daemon (systemd uses the journal). */
  logPath?: string;
}

export type ServiceScope = 'system' | 'user';

export interface ServiceFile {
  format: 'launchd' | 'systemd';
  /** Where the file goes. */
  path: string;
  content: string;
  /** Commands that load and start it, for the CLI to run or print. */
  activate: string[][];
}

function invalid(message: string, fields: Record<string, unknown> = {}): never {
  throw new ServiceFileInvalid(message, fields);
}

function checkOptions(o: DaemonServiceOptions, label: string): void {
  if (o.program.length === 0 || !posix.isAbsolute(o.program[0]!)) invalid(`the daemon program must be an absolute path, got ${JSON.stringify(o.program[0] ?? '')}`, { program: o.program });
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(label)) invalid(`service label ${JSON.stringify(label)} may only hold letters, digits, '.', '_' and '-'`, { label });
  const strings = [...o.program, ...Object.entries(o.environment ?? {}).flat(), o.description ?? '', o.user ?? '', o.workingDirectory ?? '', o.logPath ?? ''];
  // Control characters have no faithful spelling in a unit file and no business in either.
  for (const s of strings) if (/[\0-\x1f\x7f]/.test(s)) invalid(`service definition value ${JSON.stringify(s)} contains a control character`, { value: s });
  for (const k of Object.keys(o.environment ?? {})) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) invalid(`environment variable name ${JSON.stringify(k)} is not valid`, { name: k });
}

// ---- launchd ---------------------------------------------------------------

export function launchdPlist(o: DaemonServiceOptions): string {
  const label = o.label ?? DEFAULT_LAUNCHD_LABEL;
  checkOptions(o, label);
  const dict: Record<string, PlistValue> = {
    Label: label,
    ProgramArguments: [...o.program],
    RunAtLoad: true,
    KeepAlive: true,
    // Builds open many files; launchd's default soft limit is 256.
    SoftResourceLimits: { NumberOfFiles: 65536 },
  };
  if (o.user) dict.UserName = o.user;
  if (o.workingDirectory) dict.WorkingDirectory = o.workingDirectory;
  if (o.environment && Object.keys(o.environment).length) dict.EnvironmentVariables = { ...o.environment };
  if (o.logPath) {
    dict.StandardOutPath = o.logPath;
    dict.StandardErrorPath = o.logPath;
  }
  const xml = buildPlist(dict);
  const back = parsePlist(xml) as Record<string, PlistValue>;
  if (JSON.stringify(back) !== JSON.stringify(dict)) invalid('the generated launchd property list does not read back as written', { label });
  return xml;
}

// ---- systemd ---------------------------------------------------------------

/** One ExecStart word: double-quoted, C-escaped, `%` and `$` doubled (specifiers and variables). */
export function systemdExecWord(s: string): string {
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c).replace(/%/g, '%%').replace(/\$/g, '$$$$') + '"';
}

/** An Environment= assignment: quoted and escaped, `%` doubled (no `$` expansion there). */
export function systemdEnvAssignment(k: string, v: string): string {
  return '"' + `${k}=${v}`.replace(/[\\"]/g, (c) => '\\' + c).replace(/%/g, '%%') + '"';
}

const C_ESCAPES: Record<string, string> = { '\\': '\\', '"': '"', "'": "'", n: '\n', t: '\t', r: '\r', s: ' ' };

/** Splits a command line as systemd does for the words this module writes (quotes, C escapes, %% and $$). */
export function splitSystemdWords(value: string, dollars: boolean): string[] {
  const words: string[] = [];
  const v = value.replace(/%%/g, '\0pct\0');
  let i = 0;
  while (i < v.length) {
    while (v[i] === ' ' || v[i] === '\t') i++;
    if (i >= v.length) break;
    let w = '';
    const quote = v[i] === '"' || v[i] === "'" ? v[i++] : null;
    while (i < v.length && (quote ? v[i] !== quote : v[i] !== ' ' && v[i] !== '\t')) {
      if (v[i] === '\\') {
        const e = C_ESCAPES[v[i + 1] ?? ''];
        if (e === undefined) invalid(`unknown escape \\${v[i + 1] ?? ''} in ${JSON.stringify(value)}`);
        w += e;
        i += 2;
      } else w += v[i++];
    }
    if (quote) {
      if (v[i] !== quote) invalid(`unterminated quote in ${JSON.stringify(value)}`);
      i++;
    }
    w = w.replace(/\0pct\0/g, '%');
    words.push(dollars ? w.replace(/\$\$/g, '$') : w);
  }
  return words;
}

export type SystemdUnit = Map<string, Array<[string, string]>>;

/** Sections of key=value lines; comments and blank lines skipped. */
export function parseSystemdUnit(text: string): SystemdUnit {
  const unit: SystemdUnit = new Map();
  let section: Array<[string, string]> | null = null;
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[([^\]]+)\]$/.exec(line);
    if (sec) {
      section = [];
      unit.set(sec[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (!section || eq <= 0) invalid(`line ${n + 1} of the unit is neither a section nor an assignment: ${JSON.stringify(raw)}`);
    section.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}

export function systemdUnit(o: DaemonServiceOptions, scope: ServiceScope = 'system'): string {
  const label = o.label ?? DEFAULT_SYSTEMD_UNIT.replace(/\.service$/, '');
  checkOptions(o, label);
  const lines = [
    '[Unit]',
    `Description=${(o.description ?? 'drvbox daemon (Nix worker protocol)').replace(/%/g, '%%')}`,
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${o.program.map(systemdExecWord).join(' ')}`,
    'Restart=on-failure',
    // Builds open many files.
    'LimitNOFILE=65536',
  ];
  if (o.user) lines.push(`User=${o.user}`);
  if (o.workingDirectory) {
    // WorkingDirectory= takes a bare path: no quoting, only specifiers.
    if (!posix.isAbsolute(o.workingDirectory) || /["\\]|^\s|\s$/.test(o.workingDirectory)) invalid(`working directory ${JSON.stringify(o.workingDirectory)} cannot be written into a unit`, { workingDirectory: o.workingDirectory });
    lines.push(`WorkingDirectory=${o.workingDirectory.replace(/%/g, '%%')}`);
  }
  for (const [k, v] of Object.entries(o.environment ?? {})) lines.push(`Environment=${systemdEnvAssignment(k, v)}`);
  lines.push('', '[Install]', `WantedBy=${scope === 'system' ? 'multi-user.target' : 'default.target'}`, '');
  const text = lines.join('\n');

  const unit = parseSystemdUnit(text);
  const service = unit.get('Service') ?? [];
  const exec = service.filter(([k]) => k === 'ExecStart');
  const argv = exec.length === 1 ? splitSystemdWords(exec[0]![1], true) : [];
  if (JSON.stringify(argv) !== JSON.stringify(o.program)) invalid('the generated ExecStart does not read back as the daemon argv', { expected: o.program, got: argv });
  const env = Object.fromEntries(
    service
      .filter(([k]) => k === 'Environment')
      .flatMap(([, v]) => splitSystemdWords(v, false))
      .map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]),
  );
  if (JSON.stringify(env) !== JSON.stringify(o.environment ?? {})) invalid('the generated Environment= lines do not read back as given', { expected: o.environment, got: env });
  return text;
}

// ---- where they go -----------------------------------------------------------

/**
 * The service definition for `platform` and `scope`: file location, content
 * and the commands that activate it. `home` and `uid` are needed for the user
 * scope.
 */
export function serviceFile(platform: 'darwin' | 'linux', scope: ServiceScope, o: DaemonServiceOptions, who: { home?: string; uid?: number } = {}): ServiceFile {
  if (scope === 'user' && !who.home) invalid('a per-user service needs the home directory');
  if (platform === 'darwin') {
    const label = o.label ?? DEFAULT_LAUNCHD_LABEL;
    const path = scope === 'system' ? `/Library/LaunchDaemons/${label}.plist` : posix.join(who.home!, 'Library', 'LaunchAgents', `${label}.plist`);
    const domain = scope === 'system' ? 'system' : `gui/${who.uid ?? invalid('a per-user launchd service needs the uid')}`;
    return { format: 'launchd', path, content: launchdPlist(o), activate: [['launchctl', 'bootstrap', domain, path], ['launchctl', 'enable', `${domain}/${label}`]] };
  }
  const name = `${o.label ?? DEFAULT_SYSTEMD_UNIT.replace(/\.service$/, '')}.service`;
  const path = scope === 'system' ? `/etc/systemd/system/${name}` : posix.join(who.home!, '.config', 'systemd', 'user', name);
  const ctl = scope === 'system' ? ['systemctl'] : ['systemctl', '--user'];
  return { format: 'systemd', path, content: systemdUnit(o, scope), activate: [[...ctl, 'daemon-reload'], [...ctl, 'enable', '--now', name]] };
}
