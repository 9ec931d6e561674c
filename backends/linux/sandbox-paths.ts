// `sandbox-paths` / `extra-sandbox-paths` entries: `target=source`, `path`,
// optional `?` suffix. Parsing is Nix's; the validation is stricter than
// Nix 2.8, which accepted entries that silently escaped or mis-mounted.
import type { SandboxPathMapping } from '../backend.js';
import { SandboxPathInvalid } from './errors.js';

/** Parses setting words (`/bin/sh=/usr/bin/busybox`, `/dev/kvm?`). */
export function parseSandboxPaths(words: readonly string[]): SandboxPathMapping[] {
  const out: SandboxPathMapping[] = [];
  for (let w of words) {
    if (w === '') continue;
    let optional = false;
    if (w.endsWith('?')) {
      optional = true;
      w = w.slice(0, -1);
    }
    const eq = w.indexOf('=');
    if (eq < 0) out.push({ target: w, source: w, optional });
    else out.push({ target: w.slice(0, eq), source: w.slice(eq + 1), optional });
  }
  return out;
}

function describe(m: SandboxPathMapping): string {
  return m.target === m.source ? `'${m.source}'` : `'${m.target}=${m.source}'`;
}

/**
 * Checks one mapping and returns it normalised (duplicate slashes and `.`
 * components removed). `context` names the derivation for the message.
 */
export function validateSandboxPath(m: SandboxPathMapping, context: string): SandboxPathMapping {
  const bad = (why: string): never => {
    throw new SandboxPathInvalid(`${context}: sandbox path ${describe(m)} ${why}`, {
      target: m.target,
      source: m.source,
    });
  };
  if (m.target === '' || m.source === '') bad('has an empty target or source');
  if (!m.target.startsWith('/')) bad(`has a relative target '${m.target}'; targets must be absolute`);
  if (!m.source.startsWith('/')) bad(`has a relative source '${m.source}'; sources must be absolute`);
  for (const [what, p] of [
    ['target', m.target],
    ['source', m.source],
  ] as const) {
    if (p.split('/').includes('..')) bad(`has a '..' component in its ${what} '${p}'`);
    if (p.includes('\0')) bad(`contains a NUL byte in its ${what}`);
  }
  const tSlash = m.target.length > 1 && m.target.endsWith('/');
  const sSlash = m.source.length > 1 && m.source.endsWith('/');
  if (tSlash !== sSlash) {
    bad(
      `has a trailing slash on its ${tSlash ? 'target' : 'source'} only; ` +
        `write both '${m.target.replace(/\/+$/, '')}' and '${m.source.replace(/\/+$/, '')}' without it`,
    );
  }
  const norm = (p: string): string => '/' + p.split('/').filter((c) => c !== '' && c !== '.').join('/');
  const target = norm(m.target);
  const source = norm(m.source);
  if (target === '/') bad('would cover the root of the sandbox');
  return { target, source, optional: m.optional };
}

/** True when `p` is `dir` or inside it (both normalised, absolute). */
export function isInDir(p: string, dir: string): boolean {
  return p === dir || (dir === '/' ? p.startsWith('/') : p.startsWith(dir + '/'));
}
