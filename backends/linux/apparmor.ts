// The AppArmor profile granting `userns` to the launcher (Ubuntu 23.10+),
// filled in with the launcher's real path so `doctor` can print it ready to
// install. The template with install notes: backends/linux/apparmor/.
import { LAUNCHER_PATH } from './launcher-path.js';

export function apparmorProfile(launcherPath: string = LAUNCHER_PATH): string {
  if (!launcherPath.startsWith('/') || /[\s"{}]/.test(launcherPath)) {
    throw new Error(`cannot write an AppArmor profile for the launcher path '${launcherPath}'`);
  }
  return [
    '# drvbox sandbox launcher: user namespaces for this binary only.',
    '# Install: save as /etc/apparmor.d/drvbox-launcher, then run',
    '#   apparmor_parser -r /etc/apparmor.d/drvbox-launcher',
    'abi <abi/4.0>,',
    'include <tunables/global>',
    '',
    `profile drvbox-launcher ${launcherPath} flags=(unconfined) {`,
    '  userns,',
    '  include if exists <local/drvbox-launcher>',
    '}',
    '',
  ].join('\n');
}
