// nix.conf syntax, pure:
//
//   line     := blank | '#' comment | setting | include
//   setting  := NAME '=' VALUE          (VALUE runs to the end of the line, trimmed;
//                                         '#' starts a comment anywhere)
//   include  := 'include' PATH | '!include' PATH   (! = ignore when missing)
//
// `extra-NAME = v` appends to NAME instead of replacing it. Includes are
// resolved by the caller (readFile is injected), relative to the including file.
import { defineError } from '../errors.js';

export class BadConfig extends defineError('BadConfig', 'E_BAD_CONFIG') {}

export interface ConfigAssignment {
  name: string;
  value: string;
  /** extra-NAME: append to the current value */
  append: boolean;
  origin: string;
}

export interface ConfigSource {
  readFile(path: string): string | null; // null when missing
  dirname(path: string): string;
  resolve(dir: string, path: string): string;
}

export function parseNixConf(text: string, origin: string, src?: ConfigSource, depth = 0): ConfigAssignment[] {
  const out: ConfigAssignment[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    const hash = line.indexOf('#');
    if (hash >= 0) line = line.slice(0, hash);
    line = line.trim();
    if (line === '') continue;
    const where = `${origin}:${i + 1}`;
    const words = line.split(/\s+/);
    if ((words[0] === 'include' || words[0] === '!include') && !line.includes('=')) {
      if (words.length !== 2) throw new BadConfig(`${where}: illegal include line '${line}'`, { origin: where });
      if (!src) throw new BadConfig(`${where}: includes are not allowed here`, { origin: where });
      if (depth > 16) throw new BadConfig(`${where}: includes nested too deeply`, { origin: where });
      const path = src.resolve(src.dirname(origin), words[1]!);
      const content = src.readFile(path);
      if (content === null) {
        if (words[0] === 'include') throw new BadConfig(`${where}: included file '${path}' does not exist`, { origin: where, path });
        continue;
      }
      out.push(...parseNixConf(content, path, src, depth + 1));
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) throw new BadConfig(`${where}: illegal configuration line '${line}'`, { origin: where });
    const rawName = line.slice(0, eq).trim();
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(rawName)) {
      throw new BadConfig(`${where}: illegal setting name '${rawName}'`, { origin: where, name: rawName });
    }
    const value = line.slice(eq + 1).trim();
    const append = rawName.startsWith('extra-');
    out.push({ name: append ? rawName.slice('extra-'.length) : rawName, value, append, origin: where });
  }
  return out;
}
