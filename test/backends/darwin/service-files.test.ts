// `drvbox daemon --install` service definitions (src/daemon/service-files.ts):
// launchd plist and systemd unit, parsed back.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parsePlist } from 'plist';
import { launchdPlist, parseSystemdUnit, serviceFile, splitSystemdWords, systemdUnit, ServiceFileInvalid } from '../../../src/daemon/service-files.js';

const NODE = '/opt/homebrew/bin/node';
const CLI = '/opt/homebrew/lib/node_modules/drvbox/dist/src/cli/main.js';
const program = [NODE, CLI, 'daemon', '--socket', '/nix/var/nix/daemon-socket/socket'];

describe('launchd property list', () => {
  test('system daemon: label, argv, keep-alive, file limit; reads back', () => {
    const f = serviceFile('darwin', 'system', { program, environment: { DRVBOX_CONFIG: '/etc/drvbox/nix.conf' }, logPath: '/var/log/drvbox-daemon.log' });
    assert.equal(f.format, 'launchd');
    assert.equal(f.path, '/Library/LaunchDaemons/org.drvbox.daemon.plist');
    assert.deepEqual(f.activate, [
      ['launchctl', 'bootstrap', 'system', '/Library/LaunchDaemons/org.drvbox.daemon.plist'],
      ['launchctl', 'enable', 'system/org.drvbox.daemon'],
    ]);
    assert.ok(f.content.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist'));
    assert.deepEqual(parsePlist(f.content), {
      Label: 'org.drvbox.daemon',
      ProgramArguments: program,
      RunAtLoad: true,
      KeepAlive: true,
      SoftResourceLimits: { NumberOfFiles: 65536 },
      EnvironmentVariables: { DRVBOX_CONFIG: '/etc/drvbox/nix.conf' },
      StandardOutPath: '/var/log/drvbox-daemon.log',
      StandardErrorPath: '/var/log/drvbox-daemon.log',
    });
  });

  test('user agent under ~/Library/LaunchAgents, XML special characters escaped', () => {
    const odd = [NODE, '/Users/a&b <c>/drvbox "main".js', 'daemon'];
    const f = serviceFile('darwin', 'user', { program: odd }, { home: '/Users/a&b <c>', uid: 501 });
    assert.equal(f.path, '/Users/a&b <c>/Library/LaunchAgents/org.drvbox.daemon.plist');
    assert.deepEqual(f.activate[0], ['launchctl', 'bootstrap', 'gui/501', f.path]);
    assert.deepEqual((parsePlist(f.content) as { ProgramArguments: string[] }).ProgramArguments, odd);
    assert.ok(f.content.includes('&amp;b &lt;c&gt;'));
  });
});

describe('systemd unit', () => {
  test('system unit: ExecStart quoting survives spaces, quotes, backslashes, % and $', () => {
    const odd = ['/opt/my node/bin/node', '/srv/dr"v\\box/50%/$HOME/main.js', 'daemon', '--socket', '/run/drvbox/socket'];
    const text = systemdUnit({ program: odd, environment: { A: 'x y', B: '100%"' }, user: 'drvbox' });
    assert.equal(
      text,
      [
        '[Unit]',
        'Description=drvbox daemon (Nix worker protocol)',
        '',
        '[Service]',
        'Type=simple',
        'ExecStart="/opt/my node/bin/node" "/srv/dr\\"v\\\\box/50%%/$$HOME/main.js" "daemon" "--socket" "/run/drvbox/socket"',
        'Restart=on-failure',
        'LimitNOFILE=65536',
        'User=drvbox',
        'Environment="A=x y"',
        'Environment="B=100%%\\""',
        '',
        '[Install]',
        'WantedBy=multi-user.target',
        '',
      ].join('\n'),
    );
    const unit = parseSystemdUnit(text);
    assert.deepEqual(splitSystemdWords(unit.get('Service')!.find(([k]) => k === 'ExecStart')![1], true), odd);
  });

  test('placement and activation for system and user scope', () => {
    const sys = serviceFile('linux', 'system', { program });
    assert.equal(sys.path, '/etc/systemd/system/drvbox-daemon.service');
    assert.deepEqual(sys.activate, [['systemctl', 'daemon-reload'], ['systemctl', 'enable', '--now', 'drvbox-daemon.service']]);
    const user = serviceFile('linux', 'user', { program }, { home: '/home/u' });
    assert.equal(user.path, '/home/u/.config/systemd/user/drvbox-daemon.service');
    assert.deepEqual(user.activate[1], ['systemctl', '--user', 'enable', '--now', 'drvbox-daemon.service']);
    assert.ok(user.content.includes('WantedBy=default.target'));
  });

  test('refused: relative program, newline, bad label or variable name, missing home', () => {
    const bad = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof ServiceFileInvalid && e.code === 'E_SERVICE_FILE' && re.test(e.message));
    bad(() => systemdUnit({ program: ['node', 'main.js'] }), /must be an absolute path, got "node"/);
    bad(() => systemdUnit({ program: [NODE, 'a\nExecStartPre=/bin/rm -rf /'] }), /contains a control character/);
    bad(() => launchdPlist({ program, label: 'org/evil' }), /service label "org\/evil"/);
    bad(() => systemdUnit({ program, environment: { 'A B': '1' } }), /environment variable name "A B"/);
    bad(() => serviceFile('linux', 'user', { program }), /needs the home directory/);
    bad(() => parseSystemdUnit('ExecStart=/bin/true'), /line 1 of the unit/);
  });
});
