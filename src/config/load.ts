// Builds the Settings of one drvbox invocation: defaults, the config file,
// then --option pairs.
import { existsSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BadConfig } from './nix-conf.js';
import { Settings, type HostFacts } from './settings.js';

export function hostFacts(): HostFacts {
  return {
    platform: process.platform,
    arch: process.arch,
    cpus: Math.max(1, cpus().length),
    tmpdir: tmpdir(),
    hasKvm: process.platform === 'linux' && existsSync('/dev/kvm'),
  };
}

function readIfExists(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BadConfig(`cannot read configuration file '${path}': ${(e as Error).message}`, { path });
  }
}

export function configFilePath(env: NodeJS.ProcessEnv): { path: string; explicit: boolean } | null {
  if (env.DRVBOX_CONFIG) return { path: env.DRVBOX_CONFIG, explicit: true };
  const base = env.XDG_CONFIG_HOME?.startsWith('/') ? env.XDG_CONFIG_HOME : env.HOME ? join(env.HOME, '.config') : null;
  return base ? { path: join(base, 'drvbox', 'nix.conf'), explicit: false } : null;
}

export function loadSettings(env: NodeJS.ProcessEnv, options: Array<[string, string]>, host = hostFacts()): Settings {
  const s = new Settings(host);
  const file = configFilePath(env);
  if (file) {
    const text = readIfExists(file.path);
    if (text === null && file.explicit) {
      throw new BadConfig(`configuration file '${file.path}' (DRVBOX_CONFIG) does not exist`, { path: file.path });
    }
    if (text !== null) s.loadText(text, file.path, readIfExists);
  }
  for (const [name, value] of options) s.setOption(name, value);
  return s;
}
