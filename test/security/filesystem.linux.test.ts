// Security battery, file-system half: each escape attempt is its own test and
// runs as root and as an unprivileged user through the real Linux backend.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OUT } from '../backends/linux/fixture.js';
import { sandbox, WHO } from './harness.js';
import { requireSandbox } from '../helpers/sandbox.js';

// Where the sandbox is unavailable every attempt fails, saying why (never skips).
before(() => requireSandbox('the security battery'));

const ROOT_ENTRIES = 'bin build dev etc nix proc tmp';
const sorted = (line: string): string => line.split(' ').sort().join(' ');

/** The line `prefix...` of the log, or a failure showing the whole log. */
function line(log: string, prefix: string): string {
  const l = log.split('\n').find((x) => x.startsWith(prefix));
  assert.ok(l !== undefined, `no line starting with '${prefix}' in log:\n${log}`);
  return l;
}

for (const who of WHO) {
  describe(`file-system escapes (${who})`, () => {
    test('host /etc/shadow cannot be read', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run('$B cat /etc/shadow; echo "rc=$?"; $T read /etc/shadow');
      assert.equal(r.code, 1); // the last attempt's status
      assert.match(r.log, /cat: can't open '\/etc\/shadow': No such file or directory\nrc=1\nread: ENOENT\n/);
    });

    test('an undeclared host path cannot be read', async (t) => {
      const s = sandbox(t, who);
      const secret = join(s.fx.root, 'secret');
      writeFileSync(secret, 'top secret\n');
      const r = await s.run(`$T read ${secret}; $T read ${s.fx.realStoreDir}; $T list /tmp`);
      assert.equal(r.log, 'read: ENOENT\nread: ENOENT\nlist /tmp:\n');
    });

    test('an undeclared store path that exists in the store is invisible', async (t) => {
      const s = sandbox(t, who);
      const declared = s.fx.addStoreDir('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-declared');
      const undeclared = s.fx.addStoreDir('cccccccccccccccccccccccccccccccc-undeclared');
      const r = await s.run(`$T list /nix/store; $T read ${undeclared}/content; $B cat ${declared}/content`, { inputPaths: [declared] });
      assert.equal(r.log, 'list /nix/store: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-declared\nread: ENOENT\nhello\n');
    });

    test('writes outside $out, the build dir and /tmp fail', async (t) => {
      const s = sandbox(t, who);
      const input = s.fx.addStoreDir('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-input');
      const targets = ['/foo', '/etc/foo', '/etc/passwd', `${input}/content`, `${input}/new`, '/dev/foo', '/bin/foo', '/bin/sh', '/proc/foo', '/nix/foo'];
      const r = await s.run(
        `for p in ${targets.join(' ')}; do if echo x >> $p 2>/dev/null; then echo "WROTE $p"; else echo "denied $p"; fi; done; ` +
          `$B mkdir $out && echo x > $out/f && echo x > /build/f && echo x > /tmp/f && echo allowed-ok`,
        { inputPaths: [input] },
      );
      // busybox is root's: the user is refused by permissions, root (mapped to
      // the file's owner) by the read-only mount / running-binary checks.
      const shWhy = who === 'root' ? 'Text file busy' : 'Permission denied';
      const why = (p: string): string => (p === '/bin/sh' ? shWhy : p === '/proc/foo' ? 'nonexistent directory' : 'Read-only file system');
      assert.equal(r.log, targets.map((p) => `sh: can't create ${p}: ${why(p)}\ndenied ${p}\n`).join('') + 'allowed-ok\n');
      assert.equal(readFileSync(join(s.fx.realStoreDir, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-input', 'content'), 'utf8'), 'hello\n');
      assert.deepEqual(readdirSync(join(s.fx.realStoreDir, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-input')), ['content']);
      assert.equal(readFileSync(join(r.outPath, 'f'), 'utf8'), 'x\n');
      assert.equal(readFileSync(join(s.fx.buildDir, 'f'), 'utf8'), 'x\n');
    });

    test('/etc is read-only as a mount, although the builder owns it', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run('$T chmod /etc 0755; $T remount-rw /etc; $T remount-rw /; echo x > /etc/passwd; $B stat -c "%a %u" /etc');
      assert.equal(r.log, 'chmod: EROFS\nremount-rw: EPERM\nremount-rw: EPERM\nsh: can\'t create /etc/passwd: Read-only file system\n555 1000\n');
    });

    test('mount, umount, pivot_root and chroot are refused', async (t) => {
      const s = sandbox(t, who);
      const input = s.fx.addStoreDir('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-input');
      const r = await s.run(
        `$B mkdir /tmp/x /tmp/old; $T mount / /tmp/x; $T mount none /tmp/x tmpfs; $T umount ${input}; $T umount /proc; ` +
          `$T pivot_root /tmp /tmp/old; $T chroot /tmp; $B cat ${input}/content`,
        { inputPaths: [input] },
      );
      assert.equal(r.log, 'mount: EPERM\nmount: EPERM\numount: EPERM\numount: EPERM\npivot_root: EPERM\nchroot: EPERM\nhello\n');
    });

    test('a nested user namespace gives no way out (chroot .. walk, remounts)', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run('$T nested-escape');
      assert.equal(line(r.log, 'unshare:'), 'unshare: ok');
      // Mounts inherited from the sandbox are locked in the nested namespace.
      assert.equal(line(r.log, 'remount-root-rw:'), 'remount-root-rw: EPERM');
      assert.equal(line(r.log, 'chroot-dot:'), 'chroot-dot: ok');
      assert.equal(sorted(line(r.log, 'list /:').slice('list /: '.length)), ROOT_ENTRIES);
      assert.equal(line(r.log, 'read-shadow:'), 'read-shadow: ENOENT');
    });

    test('/proc/1/root and .. walks stay inside the sandbox', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run('$T list /proc/1/root; cd /../../../..; $T list .; $T read /proc/1/root/etc/shadow; $T read /proc/1/root/../../etc/shadow');
      const lines = r.log.split('\n');
      assert.equal(sorted(lines[0]!.slice('list /proc/1/root: '.length)), ROOT_ENTRIES);
      assert.equal(sorted(lines[1]!.slice('list .: '.length)), ROOT_ENTRIES);
      assert.deepEqual(lines.slice(2), ['read: ENOENT', 'read: ENOENT', '']);
    });

    test('chmod u+s / g+s is refused with EPERM (chmod, fchmod, fchmodat, fchmodat2)', async (t) => {
      const s = sandbox(t, who);
      const calls = ['chmod', 'fchmod', 'fchmodat', 'fchmodat2'];
      const r = await s.run(
        `$B mkdir $out; echo x > $out/f; ` +
          calls.map((c) => `$T ${c} $out/f 4755; $T ${c} $out/f 2755;`).join(' ') +
          ` $B chmod u+s $out/f; $B chmod g+s $out/f; $T chmod $out/f 0700; $B stat -c %a $out/f`,
      );
      assert.equal(
        r.log,
        calls.map((c) => `${c}: EPERM\n${c}: EPERM\n`).join('') +
          "chmod: $out/f: Operation not permitted\nchmod: $out/f: Operation not permitted\nchmod: ok\n700\n".replaceAll('$out', OUT),
      );
      assert.equal(lstatSync(join(r.outPath, 'f')).mode & 0o7777, 0o700);
    });

    test('setxattr, lsetxattr and fsetxattr fail with ENOTSUP', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run('$B mkdir $out; echo x > $out/f; $T setxattr $out/f; $T lsetxattr $out/f; $T fsetxattr $out/f');
      assert.equal(r.log, 'setxattr: ENOTSUP\nlsetxattr: ENOTSUP\nfsetxattr: ENOTSUP\n');
    });

    test('outputs are owned by the caller and not group/world-writable', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run('$B mkdir $out $out/d; echo x > $out/f; $B chmod 777 $out; $B chmod 666 $out/f; $B chmod 1777 $out/d; $B ln -s f $out/l');
      assert.equal(r.code, 0);
      for (const p of [r.outPath, join(r.outPath, 'f'), join(r.outPath, 'd'), join(r.outPath, 'l')]) {
        const st = lstatSync(p);
        assert.equal(st.uid, s.ids.uid, `owner of ${p}`);
        assert.equal(st.gid, s.ids.gid, `group of ${p}`);
        if (!st.isSymbolicLink()) assert.equal(st.mode & 0o6022, 0, `mode of ${p}: ${(st.mode & 0o7777).toString(8)}`);
      }
      assert.equal(lstatSync(join(r.outPath, 'f')).mode & 0o777, 0o644);
    });

    test('hostname, uid/gid, /etc/passwd and /etc/group are as specified', async (t) => {
      const s = sandbox(t, who);
      const r = await s.run('$B hostname; $B id -u; $B id -g; $B id -un; $B cat /etc/passwd /etc/group');
      assert.equal(
        r.log,
        'localhost\n1000\n100\nnixbld\n' +
          'root:x:0:0:Nix build user:/build:/noshell\n' +
          'nixbld:x:1000:100:Nix build user:/build:/noshell\n' +
          'nobody:x:65534:65534:Nobody:/:/noshell\n' +
          'root:x:0:\nnixbld:!:100:\nnogroup:x:65534:\n',
      );
    });
  });
}
