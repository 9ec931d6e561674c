// The advice probe gives for each failing step, and the AppArmor profile text.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { adviceFor } from '../../../backends/linux/probe.js';
import { apparmorProfile } from '../../../backends/linux/apparmor.js';
import { cgroup2Mount, ownCgroup } from '../../../backends/linux/cgroup.js';

const none = { 'kernel.unprivileged_userns_clone': null, 'user.max_user_namespaces': '15000', 'kernel.apparmor_restrict_unprivileged_userns': null };

describe('probe advice', () => {
  test('clone refused: the sysctl that is off', () => {
    const a = adviceFor('clone', 1, 'Operation not permitted', { ...none, 'kernel.unprivileged_userns_clone': '0' });
    assert.equal(a.detail, 'clone failed: Operation not permitted (errno 1)');
    assert.match(a.fix!, /^run 'sysctl -w kernel\.unprivileged_userns_clone=1'/);
    const b = adviceFor('clone', 28, 'No space left on device', { ...none, 'user.max_user_namespaces': '0' });
    assert.match(b.fix!, /^run 'sysctl -w user\.max_user_namespaces=15000'/);
  });

  test('Ubuntu AppArmor restriction: uid_map or mount denied after clone succeeded', () => {
    for (const step of ['uid_map', 'mount']) {
      const a = adviceFor(step, 13, 'Permission denied', { ...none, 'kernel.apparmor_restrict_unprivileged_userns': '1' });
      assert.equal(a.ok, false);
      assert.match(a.fix!, /AppArmor restricts user namespaces here: install drvbox's launcher profile/);
      assert.match(a.fix!, /--sandbox false/);
    }
  });

  test('proc refused: the container advice', () => {
    assert.match(adviceFor('proc', 1, 'Operation not permitted', none).fix!, /systempaths=unconfined/);
  });
});

describe('AppArmor profile', () => {
  test('grants userns to the launcher path only', () => {
    assert.equal(
      apparmorProfile('/opt/drvbox/dist/launcher/drvbox-launcher'),
      '# drvbox sandbox launcher: user namespaces for this binary only.\n' +
        '# Install: save as /etc/apparmor.d/drvbox-launcher, then run\n' +
        '#   apparmor_parser -r /etc/apparmor.d/drvbox-launcher\n' +
        'abi <abi/4.0>,\ninclude <tunables/global>\n\n' +
        'profile drvbox-launcher /opt/drvbox/dist/launcher/drvbox-launcher flags=(unconfined) {\n  userns,\n  include if exists <local/drvbox-launcher>\n}\n',
    );
    assert.throws(() => apparmorProfile('relative/path'), /cannot write an AppArmor profile/);
    assert.throws(() => apparmorProfile('/with space'), /cannot write an AppArmor profile/);
  });
});

describe('cgroup discovery', () => {
  test('cgroup2 mount point and own cgroup', () => {
    const mi = '30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n40 25 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n';
    assert.equal(cgroup2Mount(mi), '/sys/fs/cgroup/unified');
    assert.equal(cgroup2Mount('30 25 0:26 / /x rw - ext4 /dev/vda rw\n'), null);
    assert.equal(ownCgroup('1:cpu:/\n0::/user.slice/x.scope\n'), '/user.slice/x.scope');
    assert.equal(ownCgroup('1:cpu:/\n'), null);
  });
});
