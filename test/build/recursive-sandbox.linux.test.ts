// Recursive builds in the real Linux sandbox, as the current user (root in
// CI) and as the unprivileged test user: the builder is node with drvbox's
// worker-protocol client, talking to the daemon on /build/.nix-socket.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { runScenario, type SessionReport, type Who } from './recursive-fixture.js';

const WHO: Who[] = ['current', 'rootless'];
const STORE_PATH = /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-/;

interface Common {
  exitCode: number;
  out: string | null;
  error: string | null;
  log: string;
  messages: string[];
  session: SessionReport;
  fdsBefore: number;
  fdsAfter: number;
  connectionErrors: string[];
}

/** The daemon is gone and nothing of it is left behind. */
function assertDaemonGone(r: Common): void {
  assert.equal(r.session.stopped, true);
  assert.equal(r.session.listening, false);
  assert.equal(r.session.socketLeft, false, 'the socket file is removed');
  assert.equal(r.session.stats.active, 0);
  assert.equal(r.session.stats.queued, 0);
  assert.equal(r.fdsAfter, r.fdsBefore, 'no fd of the daemon or its connections is left open');
}

for (const who of WHO) {
  describe(`recursive builds in the Linux sandbox (${who})`, () => {
    test('20 concurrent connections from one builder: all served by a pool of 8 handlers, the rest queued', async () => {
      const { report: r } = await runScenario<Common & { results: Array<{ text: string; narSize: number; status: number; out: string }>; allValid: boolean }>(who, [
        'concurrent',
        '20',
      ]);
      assert.equal(r.exitCode, 0, `${r.error}\n${r.log}\n${r.messages.join('\n')}`);
      assert.equal(r.results.length, 20);
      assert.deepEqual(
        r.results.map((x) => x.status),
        Array(20).fill(0),
      );
      assert.equal(new Set(r.results.map((x) => x.out)).size, 20);
      r.results.forEach((x, i) => {
        assert.match(x.text, new RegExp(`${STORE_PATH.source}note-${i}$`));
        assert.match(x.out, new RegExp(`${STORE_PATH.source}par-${i}$`));
        assert.equal(x.narSize, 120);
      });
      assert.equal(r.allValid, true);
      assert.deepEqual({ served: r.session.stats.served, failed: r.session.stats.failed, refused: r.session.stats.refused }, { served: 20, failed: 0, refused: 0 });
      assert.equal(r.session.stats.peakActive, 8, 'back-pressure: never more handlers than daemon-max-connections');
      assert.equal(r.session.added, 60, '20 texts, 20 .drv files, 20 outputs');
      assert.deepEqual(r.connectionErrors, []);
      assertDaemonGone(r);
    });

    test('the builder killed in the middle of AddToStoreNar: nothing registered, no temp path, the store verifies, the daemon is gone', async () => {
      const { report: r } = await runScenario<
        Common & { tempAtKill: number; bigValid: boolean; leftovers: string[]; verifyErrors: boolean; verifyProblems: string[]; connectRefused: boolean; buildDirLeft: string[] }
      >(who, ['kill-mid-nar']);
      assert.equal(r.log, 'HALF SENT\n');
      assert.equal(r.tempAtKill, 1, 'the daemon was importing the NAR when the builder died');
      assert.equal(r.exitCode, 100);
      assert.match(r.error ?? '', /^builder for '\/nix\/store\/[a-z0-9]{32}-killed-mid-nar\.drv' failed due to signal 9 \(Killed\)$/);
      assert.equal(r.bigValid, false);
      assert.deepEqual(r.leftovers, []);
      assert.equal(r.verifyErrors, false, r.verifyProblems.join('\n'));
      assert.equal(r.connectRefused, true);
      assert.equal(r.session.stats.failed, 1);
      assert.deepEqual(r.connectionErrors, ['unexpected end of input while reading frame length']);
      assert.deepEqual(r.buildDirLeft, []);
      assertDaemonGone(r);
    });

    test('the builder killed while an inner build runs: the inner builder is killed too, nothing is left, the daemon is gone', async () => {
      const { report: r } = await runScenario<Common & { ms: number; innerAtKill: number; innerAfter: number; leftovers: string[]; sessions: number; buildDirLeft: string[] }>(who, [
        'kill-mid-build',
      ]);
      assert.equal(r.log, 'INNER RUNNING\n');
      assert.equal(r.innerAtKill, 1, 'the inner builder was running');
      assert.equal(r.exitCode, 100);
      assert.match(r.error ?? '', /^builder for '\/nix\/store\/[a-z0-9]{32}-killed-mid-build\.drv' failed due to signal 9 \(Killed\)$/);
      assert.equal(r.innerAfter, 0, 'no inner builder survives');
      assert.deepEqual(r.leftovers, []);
      assert.ok(r.ms < 10_000, `the build ended ${r.ms} ms after it started (the inner one would sleep for 1000 s)`);
      assert.deepEqual(r.connectionErrors, ['the client closed the connection']);
      assert.equal(r.session.stats.failed, 1);
      assert.deepEqual(r.buildDirLeft, []);
      assertDaemonGone(r);
    });

    test('restricted store: paths outside the input closure are invisible; dump, substitute, build and output-map fail with the seed messages', async () => {
      const { report: r } = await runScenario<Common & { outside: string; input: string; res: Record<string, { ok?: unknown; error?: string } & Record<string, unknown>> }>(who, [
        'forbidden',
      ]);
      assert.equal(r.exitCode, 0, `${r.error}\n${r.log}`);
      const { outside, input, res } = r;
      assert.deepEqual(res.isValidInput, { ok: true });
      assert.deepEqual(res.isValidOutside, { ok: false });
      assert.deepEqual(res.infoOutside, { ok: null });
      assert.deepEqual(res.dumpOutside, { error: `cannot dump unknown path '${outside}' in recursive Nix` });
      assert.deepEqual(res.ensureOutside, { error: `cannot substitute unknown path '${outside}' in recursive Nix` });
      assert.deepEqual(res.buildOutside, { error: `cannot build '${outside}' in recursive Nix because path is unknown` });
      assert.deepEqual(res.outputMapOutside, { error: `cannot query output map for unknown path '${outside}.drv' in recursive Nix` });
      assert.deepEqual(res.missing, { ok: [outside] });
      assert.deepEqual(res.checkMode, { error: 'build mode check is not supported in recursive Nix' });
      const all = (res.allValid!.ok as string[]).filter((p) => !p.endsWith('-chk.drv'));
      assert.deepEqual(all, [input]);
      assert.deepEqual(res.inputInfo, { deriver: null, registrationTime: 0, ultimate: false, sigs: [] });
      assert.deepEqual(res.gc, { ok: 0 }, 'temp roots and findRoots are no-ops');
      assertDaemonGone(r);
    });

    test('a build-dir too deep for a unix socket path on the host: the daemon binds through the directory fd; the builder connects to /build/.nix-socket', async () => {
      const { report: r } = await runScenario<Common & { deepLength: number; socketHostLength: number; text: string; references: string[]; left: string[] }>(who, ['deep-build-dir']);
      assert.equal(r.exitCode, 0, `${r.error}\n${r.log}`);
      assert.ok(r.socketHostLength > 107, `the host socket path has ${r.socketHostLength} bytes`);
      const [remote, added] = r.text.split('\n');
      assert.equal(remote, 'unix:///build/.nix-socket');
      assert.match(added!, new RegExp(`${STORE_PATH.source}from-deep$`));
      assert.deepEqual(r.references, [added]);
      assert.equal(r.session.socketLeft, false);
      assert.deepEqual(r.left, [], 'build dir (and socket) removed');
    });

    test('nested recursion with max-jobs = 1: no level waits for a slot the level above holds (Nix issue 4216); references reach the leaf', async () => {
      const { report: r } = await runScenario<Common & { text: string; middleOut: string; closure: string[]; sessions: Array<SessionReport & { drvPath: string }> }>(who, ['nested']);
      assert.equal(r.exitCode, 0, `${r.error}\n${r.log}`);
      const leaf = /middle uses (\S+)\n$/.exec(r.text)?.[1] ?? '';
      assert.match(leaf, new RegExp(`${STORE_PATH.source}leaf$`));
      assert.equal(r.text, `outer uses ${r.middleOut}\nmiddle uses ${leaf}\n`);
      assert.deepEqual(r.closure, [r.out!, r.middleOut, leaf].sort());
      assert.deepEqual(
        r.sessions.map((s) => [s.drvPath.replace(/^.*?-/, ''), s.stopped, s.socketLeft, s.stats.served, s.added]),
        [
          ['outer.drv', true, false, 1, 3],
          ['middle.drv', true, false, 1, 2],
        ],
      );
    });
  });
}
