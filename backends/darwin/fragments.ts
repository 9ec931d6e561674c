// The static .sb fragments under profiles/, read once. They ship with the
// package (package.json "files"), beside dist/.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type FragmentName = 'defaults' | 'network' | 'minimal' | 'final';

export const FRAGMENT_FILES: Record<FragmentName, string> = {
  defaults: 'sandbox-defaults.sb',
  network: 'sandbox-network.sb',
  minimal: 'sandbox-minimal.sb',
  final: 'sandbox-final.sb',
};

let dir: string | null = null;
const cache = new Map<FragmentName, string>();

/** profiles/ of this installation: dist/backends/darwin/ -> ../../../profiles. */
export function profilesDir(): string {
  if (dir) return dir;
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', '..', '..', 'profiles'), join(here, '..', '..', 'profiles')];
  const found = candidates.find((c) => existsSync(join(c, FRAGMENT_FILES.defaults)));
  if (!found) throw new Error(`drvbox installation is incomplete: no profiles/ directory near ${here}`);
  dir = found;
  return dir;
}

/** The text of one fragment, ending with a newline. */
export function fragment(name: FragmentName): string {
  let text = cache.get(name);
  if (text === undefined) {
    text = readFileSync(join(profilesDir(), FRAGMENT_FILES[name]), 'utf8');
    if (!text.endsWith('\n')) text += '\n';
    cache.set(name, text);
  }
  return text;
}
