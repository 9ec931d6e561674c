// Evaluates an SBPL profile into a rule list and answers allow/deny for one
// operation on one target, the way sandbox-exec does: rules in profile order,
// the last rule whose operation and filters match decides; `default` matches
// every operation; several filters in one rule match if any does; a rule
// without filters matches every target.
//
// Wildcards are matched by prefix (`file-write*` covers `file-write-setugid`),
// which is how macOS behaved before 12.3: the conservative reading for tests
// that must prove a denial holds.
import { readSbpl, type Datum } from './reader.js';

export type Action = 'allow' | 'deny';

export interface Endpoint {
  proto: 'tcp' | 'udp' | 'unix';
  /** 'localhost' for loopback addresses. */
  host?: string;
  port?: number;
  path?: string;
}

export type Filter =
  | { k: 'literal'; path: string }
  | { k: 'subpath'; path: string; prefix: string }
  | { k: 'regex'; re: RegExp }
  | { k: 'global-name'; name: string }
  | { k: 'target'; v: string }
  | { k: 'endpoint'; side: 'local' | 'remote'; proto: string; addr: string | null; path: string | null }
  | { k: 'any'; of: Filter[] }
  | { k: 'all'; of: Filter[] }
  | { k: 'not'; of: Filter };

export interface Rule {
  action: Action;
  ops: string[];
  filters: Filter[];
  modifiers: string[];
  offset: number;
}

export interface Policy {
  version: number | null;
  rules: Rule[];
}

export interface Query {
  op: string;
  path?: string;
  globalName?: string;
  target?: 'same-sandbox' | 'other';
  local?: Endpoint;
  remote?: Endpoint;
}

/** Operation names sandbox-exec knows (the ones drvbox profiles may use). */
export const KNOWN_OPS = new Set([
  'default',
  'file*', 'file-read*', 'file-read-data', 'file-read-metadata', 'file-read-xattr', 'file-test-existence', 'file-map-executable',
  'file-write*', 'file-write-data', 'file-write-create', 'file-write-unlink', 'file-write-mode', 'file-write-owner',
  'file-write-flags', 'file-write-setugid', 'file-write-times', 'file-write-xattr', 'file-write-mount', 'file-write-unmount',
  'file-ioctl', 'file-revoke', 'file-chroot', 'file-link', 'file-clone',
  'process*', 'process-fork', 'process-exec', 'process-exec-interpreter', 'process-info*',
  'signal', 'sysctl*', 'sysctl-read', 'sysctl-write',
  'ipc*', 'ipc-posix*', 'ipc-posix-sem', 'ipc-posix-shm', 'ipc-sysv*', 'ipc-sysv-msg', 'ipc-sysv-sem', 'ipc-sysv-shm',
  'mach*', 'mach-lookup', 'mach-register',
  'network*', 'network-inbound', 'network-outbound', 'network-bind',
  'system*', 'system-socket',
]);

export class SbplEvalError extends Error {
  override name = 'SbplEvalError';
}

type Value = string | boolean | number;

function fail(msg: string, d?: Datum): never {
  throw new SbplEvalError(d ? `${msg} at offset ${d.offset}` : msg);
}

export function evaluateProfile(text: string, params: Record<string, string>): Policy {
  const vars = new Map<string, Value>();
  const policy: Policy = { version: null, rules: [] };

  const expr = (d: Datum): Value => {
    if (d.t === 'str' || d.t === 'bool' || d.t === 'num') return d.v;
    if (d.t === 'sym') {
      if (!vars.has(d.v)) fail(`unbound variable ${d.v}`, d);
      return vars.get(d.v)!;
    }
    if (d.t === 'list' && d.items[0]?.t === 'sym') {
      const head = d.items[0].v;
      if (head === 'param') {
        const name = d.items[1];
        if (name?.t !== 'str') fail('param needs a string', d);
        return params[name.v] ?? false;
      }
      if (head === 'string-append') return d.items.slice(1).map((x) => str(x)).join('');
    }
    return fail('unsupported expression', d);
  };
  const str = (d: Datum): string => {
    const v = expr(d);
    if (typeof v !== 'string') fail(`expected a string, got ${String(v)} (a parameter not passed with -D?)`, d);
    return v;
  };
  const filter = (d: Datum): Filter => {
    if (d.t !== 'list' || d.items[0]?.t !== 'sym') return fail('expected a filter', d);
    const head = d.items[0].v;
    const args = d.items.slice(1);
    switch (head) {
      case 'literal':
      case 'path-literal':
        return { k: 'literal', path: str(args[0] ?? fail('missing path', d)) };
      case 'subpath': {
        const p = str(args[0] ?? fail('missing path', d));
        const path = p.length > 1 ? p.replace(/\/+$/, '') : p;
        return { k: 'subpath', path, prefix: path === '/' ? '/' : path + '/' };
      }
      case 'regex': {
        const a = args[0];
        if (a?.t !== 'regex' && a?.t !== 'str') return fail('regex needs #"…"', d);
        return { k: 'regex', re: new RegExp(a.v) };
      }
      case 'global-name':
        return { k: 'global-name', name: str(args[0] ?? fail('missing name', d)) };
      case 'target': {
        const a = args[0];
        if (a?.t !== 'sym') return fail('target needs a symbol', d);
        return { k: 'target', v: a.v };
      }
      case 'local':
      case 'remote': {
        const proto = args[0];
        if (proto?.t !== 'sym') return fail(`${head} needs a protocol`, d);
        let addr: string | null = null;
        let path: string | null = null;
        const a = args[1];
        if (a?.t === 'str') addr = a.v;
        else if (a?.t === 'list') {
          const f = filter(a);
          if (f.k !== 'literal') fail('unix socket filter must be path-literal', a);
          path = f.path;
        }
        return { k: 'endpoint', side: head, proto: proto.v, addr, path };
      }
      case 'require-any':
        return { k: 'any', of: args.map(filter) };
      case 'require-all':
        return { k: 'all', of: args.map(filter) };
      case 'require-not':
        return { k: 'not', of: filter(args[0] ?? fail('missing filter', d)) };
      default:
        return fail(`unknown filter ${head}`, d);
    }
  };
  const rule = (d: Datum & { t: 'list' }, action: Action) => {
    const r: Rule = { action, ops: [], filters: [], modifiers: [], offset: d.offset };
    for (const item of d.items.slice(1)) {
      if (item.t === 'sym') {
        if (!KNOWN_OPS.has(item.v)) fail(`unknown operation ${item.v}`, item);
        r.ops.push(item.v);
      } else if (item.t === 'list' && item.items[0]?.t === 'sym' && item.items[0].v === 'with') {
        r.modifiers.push(item.items.slice(1).map((x) => (x.t === 'sym' || x.t === 'str' ? String(x.v) : x.t === 'num' ? String(x.v) : '?')).join(' '));
      } else {
        r.filters.push(filter(item));
      }
    }
    if (r.ops.length === 0) fail(`${action} without an operation`, d);
    policy.rules.push(r);
  };
  const form = (d: Datum) => {
    if (d.t !== 'list' || d.items[0]?.t !== 'sym') return fail('expected a form', d);
    const head = d.items[0].v;
    switch (head) {
      case 'version': {
        const v = d.items[1];
        if (v?.t !== 'num') fail('version needs a number', d);
        if (policy.version !== null || policy.rules.length > 0) fail('version must come first, once', d);
        policy.version = v.v;
        return;
      }
      case 'define': {
        const name = d.items[1];
        if (name?.t !== 'sym' || d.items[2] === undefined) return fail('define needs a name and a value', d);
        vars.set(name.v, expr(d.items[2]));
        return;
      }
      case 'allow':
      case 'deny':
        return rule(d, head);
      case 'if': {
        const cond = expr(d.items[1] ?? fail('if needs a condition', d));
        const branch = cond !== false ? d.items[2] : d.items[3];
        if (branch) form(branch);
        return;
      }
      case 'begin':
        for (const x of d.items.slice(1)) form(x);
        return;
      default:
        return fail(`unsupported form ${head}`, d);
    }
  };
  const forms = readSbpl(text);
  if (forms[0]?.t !== 'list' || forms[0].items[0]?.t !== 'sym' || forms[0].items[0].v !== 'version') {
    fail('a profile must start with (version 1)');
  }
  for (const f of forms) form(f);
  return policy;
}

function opMatches(ruleOp: string, op: string): boolean {
  if (ruleOp === 'default') return true;
  if (ruleOp.endsWith('*')) return op.startsWith(ruleOp.slice(0, -1));
  return ruleOp === op;
}

function endpointMatches(f: Filter & { k: 'endpoint' }, e: Endpoint | undefined): boolean {
  if (!e) return false;
  if (f.proto === 'unix-socket' || f.proto === 'unix') return e.proto === 'unix' && (f.path === null || f.path === e.path);
  if (e.proto === 'unix') return false;
  if (f.proto === 'tcp' && e.proto !== 'tcp') return false;
  if (f.proto === 'udp' && e.proto !== 'udp') return false;
  if (f.addr === null) return true;
  const [host, port] = f.addr.split(':');
  if (host !== '*' && host !== e.host) return false;
  return port === '*' || port === undefined || Number(port) === e.port;
}

function filterMatches(f: Filter, q: Query): boolean {
  switch (f.k) {
    case 'literal':
      return q.path !== undefined && q.path === f.path;
    case 'subpath':
      return q.path !== undefined && (q.path === f.path || q.path.startsWith(f.prefix));
    case 'regex':
      return q.path !== undefined && f.re.test(q.path);
    case 'global-name':
      return q.globalName === f.name;
    case 'target':
      return q.target === f.v;
    case 'endpoint':
      return endpointMatches(f, f.side === 'local' ? q.local : q.remote);
    case 'any':
      return f.of.some((x) => filterMatches(x, q));
    case 'all':
      return f.of.every((x) => filterMatches(x, q));
    case 'not':
      return !filterMatches(f.of, q);
  }
}

export function ruleMatches(r: Rule, q: Query): boolean {
  if (!r.ops.some((o) => opMatches(o, q.op))) return false;
  return r.filters.length === 0 || r.filters.some((f) => filterMatches(f, q));
}

/** The deciding rule for `q` (the last that matches), or null when none does. */
export function decide(policy: Policy, q: Query): { action: Action | null; rule: Rule | null } {
  if (!KNOWN_OPS.has(q.op) || q.op.endsWith('*') || q.op === 'default') throw new SbplEvalError(`query for unknown or wildcard operation ${q.op}`);
  for (let i = policy.rules.length - 1; i >= 0; i--) {
    const r = policy.rules[i]!;
    if (ruleMatches(r, q)) return { action: r.action, rule: r };
  }
  return { action: null, rule: null };
}

export function allows(policy: Policy, q: Query): boolean {
  return decide(policy, q).action === 'allow';
}
