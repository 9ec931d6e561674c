// SBPL (the Scheme dialect of sandbox-exec profiles) text generation: string
// literals and the generated allow groups. Pure: no fs, no process.
//
// Grammar of what this module emits:
//   group   = "(allow " OPS "\n" { "\t(" KIND " " STRING ")\n" } ")\n"
//   KIND    = "literal" | "subpath"
//   STRING  = '"' { char other than '"' '\' NUL LF | '\"' | '\\' } '"'
//
// Every path goes through sbplString: a path holding `")` would otherwise end
// the literal and let the rest of it be read as policy (Bazel issue 29427).
import { SbplUnsafePath } from './errors.js';

/** sandbox-exec refuses a rule whose compiled path patterns exceed this (Nix issue 4119). */
export const SBPL_PATTERN_LIMIT = 65535;
/** Start a new group past this many bytes of filters: a quarter of the limit. */
export const SBPL_GROUP_BUDGET = 16 * 1024;

export type PathFilterKind = 'literal' | 'subpath';

export interface PathFilter {
  kind: PathFilterKind;
  path: string;
}

export interface AllowGroup {
  ops: string;
  filters: PathFilter[];
  /** Bytes of the filter lines (what the pattern serialisation grows with). */
  filterBytes: number;
  text: string;
}

/**
 * `s` as an SBPL string literal. NUL cannot be passed through C strings and a
 * newline would make every reader of the profile (and of its logs) guess; both
 * are refused rather than escaped.
 */
export function sbplString(s: string, context = 'path'): string {
  const bad = /[\0\n]/.exec(s);
  if (bad) {
    const what = bad[0] === '\0' ? 'a NUL byte' : 'a newline';
    throw new SbplUnsafePath(`${context} ${JSON.stringify(s)} contains ${what}, which cannot appear in a sandbox profile`, {
      path: s,
      context,
    });
  }
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

/** One `\t(literal "…")` line. */
export function filterLine(f: PathFilter, context?: string): string {
  return `\t(${f.kind} ${sbplString(f.path, context)})\n`;
}

/**
 * `(allow OPS …)` groups holding `filters`, split so that no group carries
 * more than `budget` bytes of filters plus one line. An empty filter list
 * yields no group at all: `(allow OPS)` without filters would allow OPS on
 * every path.
 */
export function allowGroups(ops: string, filters: PathFilter[], budget = SBPL_GROUP_BUDGET, context?: string): AllowGroup[] {
  const groups: AllowGroup[] = [];
  let lines: string[] = [];
  let members: PathFilter[] = [];
  let bytes = 0;
  const flush = () => {
    if (members.length === 0) return;
    groups.push({ ops, filters: members, filterBytes: bytes, text: `(allow ${ops}\n${lines.join('')})\n` });
    lines = [];
    members = [];
    bytes = 0;
  };
  for (const f of filters) {
    if (bytes >= budget) flush();
    const line = filterLine(f, context);
    lines.push(line);
    members.push(f);
    bytes += Buffer.byteLength(line);
  }
  flush();
  return groups;
}

/**
 * Why `text` is not a sequence of complete SBPL forms, or null when it is.
 * A derivation's __sandboxProfile is appended before sandbox-final.sb; an open
 * parenthesis, string or block comment in it would swallow those final rules.
 */
export function sbplUnbalanced(text: string): string | null {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === ';') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '"' || (c === '#' && text[i + 1] === '"')) {
      const raw = c === '#';
      if (raw) i++;
      const start = i;
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\') i++;
        i++;
      }
      if (i >= text.length) return `unterminated string starting at offset ${start}`;
    } else if (c === '#' && text[i + 1] === '|') {
      return `block comment at offset ${i}`;
    } else if (c === '(') {
      depth++;
    } else if (c === ')') {
      depth--;
      if (depth < 0) return `unmatched ')' at offset ${i}`;
    }
  }
  return depth === 0 ? null : `${depth} unclosed '('`;
}
