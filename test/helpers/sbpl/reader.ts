// A strict reader for SBPL, the TinyScheme dialect of sandbox-exec profiles.
// It exists so tests can check generated profiles on any OS: anything the
// real parser would choke on (unbalanced parentheses, an unterminated or
// badly escaped string) is an error here too.
//
//   datum   = list | string | regex | boolean | number | symbol
//   list    = "(" { datum } ")"
//   string  = '"' { char | "\\" ("\"" | "\\" | "n" | "t" | "r") } '"'
//   regex   = '#"' { char | '\\"' } '"'        (backslashes kept for the regex)
//   boolean = "#t" | "#f"
//   comment = ";" to end of line

export type Datum =
  | { t: 'list'; items: Datum[]; offset: number }
  | { t: 'str'; v: string; offset: number }
  | { t: 'regex'; v: string; offset: number }
  | { t: 'sym'; v: string; offset: number }
  | { t: 'num'; v: number; offset: number }
  | { t: 'bool'; v: boolean; offset: number };

export class SbplSyntaxError extends Error {
  override name = 'SbplSyntaxError';
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} at offset ${offset}`);
  }
}

const DELIMS = new Set(['(', ')', '"', ';', ' ', '\t', '\n', '\r']);
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', n: '\n', t: '\t', r: '\r' };

export function readSbpl(text: string): Datum[] {
  let i = 0;
  const skip = () => {
    for (;;) {
      while (i < text.length && /\s/.test(text[i]!)) i++;
      if (text[i] === ';') {
        while (i < text.length && text[i] !== '\n') i++;
        continue;
      }
      if (text.startsWith('#|', i)) throw new SbplSyntaxError('block comments are not used in drvbox profiles', i);
      return;
    }
  };
  const readString = (start: number, raw: boolean): string => {
    let out = '';
    for (;;) {
      if (i >= text.length) throw new SbplSyntaxError('unterminated string', start);
      const c = text[i++]!;
      if (c === '"') return out;
      if (c === '\\') {
        const n = text[i++];
        if (n === undefined) throw new SbplSyntaxError('unterminated string', start);
        if (raw) out += n === '"' ? '"' : '\\' + n;
        else if (ESCAPES[n] !== undefined) out += ESCAPES[n];
        else throw new SbplSyntaxError(`unknown escape \\${n}`, i - 2);
        continue;
      }
      out += c;
    }
  };
  const datum = (): Datum => {
    skip();
    const start = i;
    const c = text[i];
    if (c === undefined) throw new SbplSyntaxError('unexpected end of profile', i);
    if (c === '(') {
      i++;
      const items: Datum[] = [];
      for (;;) {
        skip();
        if (i >= text.length) throw new SbplSyntaxError("unclosed '('", start);
        if (text[i] === ')') {
          i++;
          return { t: 'list', items, offset: start };
        }
        items.push(datum());
      }
    }
    if (c === ')') throw new SbplSyntaxError("unexpected ')'", i);
    if (c === '"') {
      i++;
      return { t: 'str', v: readString(start, false), offset: start };
    }
    if (c === '#' && text[i + 1] === '"') {
      i += 2;
      return { t: 'regex', v: readString(start, true), offset: start };
    }
    let tok = '';
    while (i < text.length && !DELIMS.has(text[i]!)) tok += text[i++];
    if (tok === '#t' || tok === '#f') return { t: 'bool', v: tok === '#t', offset: start };
    if (/^-?[0-9]+$/.test(tok)) return { t: 'num', v: Number(tok), offset: start };
    if (tok.startsWith('#')) throw new SbplSyntaxError(`unknown token ${tok}`, start);
    return { t: 'sym', v: tok, offset: start };
  };
  const out: Datum[] = [];
  for (;;) {
    skip();
    if (i >= text.length) return out;
    out.push(datum());
  }
}
