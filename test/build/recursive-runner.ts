// Runs one recursive-build scenario against the real Linux sandbox and prints
// a JSON report on stdout. The tests run it as root and, through runuser, as
// the unprivileged test user, so both get the same checks:
//   node recursive-runner.js inner-builds N
//   node recursive-runner.js concurrent N
//   node recursive-runner.js kill-mid-nar
//   node recursive-runner.js forbidden
// The builders are node scripts using drvbox's own worker-protocol client
// (dist/, exposed read-only through sandbox-paths): the fastest client there
// is for a thousand inner builds.
import { mkdtempSync, readdirSync, readFileSync, existsSync, rmSync, chmodSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildTargets, type Reporter } from '../../src/build/scheduler.js';
import { createRecursiveHook, type RecursiveSession } from '../../src/build/recursive.js';
import type { GoalResult, RunningGoal } from '../../src/build/goal.js';
import type { RunSettings } from '../../src/build/run-settings.js';
import { chrootLocation } from '../../src/config/store-location.js';
import { printDerivation } from '../../src/format/aterm.js';
import type { DraftOutput } from '../../src/format/derivation.js';
import { completeDerivation, derivationReferences } from '../../src/format/hash-modulo.js';
import { formatHash, hashBytes } from '../../src/format/hash.js';
import { makeFixedOutputPath } from '../../src/format/store-path.js';
import { narOfFile } from '../../src/daemon/client.js';
import { addTextToStore } from '../../src/store/add.js';
import type { LocalStoreLocation } from '../../src/store/layout.js';
import { LocalStore, storeSettingsFrom } from '../../src/store/local-store.js';

const DIST = join(fileURLToPath(import.meta.url), '..', '..', '..');
const url = (rel: string) => pathToFileURL(join(DIST, rel)).href;
export const SYSTEM = 'x86_64-linux';
/** What the builders need of the host: sh and node with their libraries, and drvbox's dist/. */
export const HOST_PATHS = ['/bin=/usr/bin', '/usr/bin', '/usr/lib', '/lib=/usr/lib', '/lib64=/usr/lib64', DIST];

export function sandboxSettings(buildDir: string, over: Partial<RunSettings> = {}): RunSettings {
  return {
    sandboxMode: 'true',
    sandboxFallback: false,
    keepFailed: false,
    timeout: 0,
    maxSilentTime: 0,
    cores: 1,
    maxJobs: 2,
    system: SYSTEM,
    extraPlatforms: [],
    systemFeatures: ['recursive-nix'],
    buildDir,
    backendSettings: {
      sandboxBuildDir: '/build',
      sandboxDevShmSize: '50%',
      filterSyscalls: true,
      allowNewPrivileges: false,
      useCgroups: false,
      darwinLogSandboxViolations: false,
      sandboxFallback: false,
    },
    sandboxPaths: HOST_PATHS,
    allowedImpureHostDeps: [],
    autoOptimise: false,
    diffHook: '',
    runDiffHook: false,
    preBuildHook: '',
    ...over,
  };
}

/** A store rooted under `dir` with the logical store dir /nix/store (as `--store ROOT`). */
export async function openRootStore(dir: string): Promise<LocalStore> {
  return LocalStore.open(chrootLocation(join(dir, 'root'), '/nix/store', 'test') as LocalStoreLocation, storeSettingsFrom(null));
}

type DrvSpec = { name: string; builder: string; args: string[]; env?: Record<string, string>; inputSrcs?: string[]; outputs?: Map<string, DraftOutput> };

/** A derivation completed as nix-instantiate would: its .drv text, references and path. */
export function drvText(storeDir: string, s: DrvSpec): { text: string; refs: string[]; drvPath: string; out: string } {
  const outputs = s.outputs ?? new Map<string, DraftOutput>([['out', { kind: 'inputAddressed' }]]);
  const c = completeDerivation(
    {
      name: s.name,
      outputs,
      inputDrvs: new Map(),
      inputSrcs: new Set(s.inputSrcs ?? []),
      platform: SYSTEM,
      builder: s.builder,
      args: s.args,
      env: new Map([['name', s.name], ['system', SYSTEM], ['builder', s.builder], ...Object.entries(s.env ?? {})]),
    },
    { storeDir, resolve: () => { throw new Error('no input derivations here'); } },
  );
  return { text: printDerivation(c.drv, { storeDir }), refs: derivationReferences(c.drv), drvPath: c.drvPath, out: c.drv.env.get('out') ?? '' };
}

export async function addDrv(store: LocalStore, s: DrvSpec): Promise<string> {
  const d = drvText(store.storeDir, s);
  return addTextToStore(store, `${s.name}.drv`, d.text, d.refs);
}

/** A derivation whose builder is a node ES module (`script`), requiring recursive-nix. */
export function nodeBuilder(store: LocalStore, name: string, script: string, env: Record<string, string> = {}, inputSrcs: string[] = []): Promise<string> {
  return addDrv(store, nodeBuilderSpec(name, script, env, inputSrcs));
}

export function nodeBuilderSpec(name: string, script: string, env: Record<string, string> = {}, inputSrcs: string[] = []): DrvSpec {
  const prelude = `
const { connectDaemon, narOfFile } = await import(${JSON.stringify(url('src/daemon/client.js'))});
const { completeDerivation, derivationReferences } = await import(${JSON.stringify(url('src/format/hash-modulo.js'))});
const { printDerivation } = await import(${JSON.stringify(url('src/format/aterm.js'))});
const { writeFileSync, appendFileSync, mkdirSync } = await import('node:fs');
const socketPath = process.env.NIX_REMOTE.slice('unix://'.length);
const connect = () => connectDaemon({ socketPath });
/** An inner derivation's text: /bin/sh writes one line. */
const innerDrv = (name, line) => {
  const env = new Map([['name', name], ['system', 'x86_64-linux'], ['builder', '/bin/sh']]);
  const c = completeDerivation({ name, outputs: new Map([['out', { kind: 'inputAddressed' }]]), inputDrvs: new Map(), inputSrcs: new Set(),
    platform: 'x86_64-linux', builder: '/bin/sh', args: ['-c', 'echo ' + line + ' > $out'], env }, { storeDir: '/nix/store', resolve: () => { throw new Error('no inputs'); } });
  return { text: printDerivation(c.drv), refs: derivationReferences(c.drv), out: c.drv.outputs.get('out').path };
};
`;
  return {
    name,
    builder: '/usr/bin/node',
    args: ['--input-type=module', '-e', prelude + script],
    env: { requiredSystemFeatures: 'recursive-nix', ...env },
    inputSrcs,
  };
}

class Quiet implements Reporter {
  output = '';
  messages: string[] = [];
  results: GoalResult[] = [];
  onChunk: ((text: string) => void) | null = null;
  planned(): void {}
  started(): void {}
  chunk(_d: string, c: Uint8Array): void {
    const text = Buffer.from(c).toString();
    this.output += text;
    this.onChunk?.(text);
  }
  finished(r: GoalResult): void {
    this.results.push(r);
  }
  message(m: string): void {
    this.messages.push(m);
  }
  close(): void {}
}

const fdCount = () => readdirSync('/proc/self/fd').length;

/**
 * The fd count once it is back to `before`, or what it is after 2 s: a
 * socket destroyed on this turn (the probe connection, a handler's last
 * one) closes its fd a turn or two later; a leak stays.
 */
async function fdCountSettled(before: number): Promise<number> {
  const until = Date.now() + 2000;
  for (;;) {
    const n = fdCount();
    if (n === before || Date.now() > until) return n;
    await new Promise((res) => setTimeout(res, 20));
  }
}
/** The JS heap after a full collection (node --expose-gc), else as it is. */
const heapUsed = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed;
};
const mib = (n: number) => Math.round((n / 1048576) * 10) / 10;

interface Run {
  store: LocalStore;
  dir: string;
  buildDir: string;
  sessions: RecursiveSession[];
  connectionErrors: string[];
}

async function setup(): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'drvbox-recursive-'));
  chmodSync(dir, 0o755);
  const store = await openRootStore(dir);
  const buildDir = join(dir, 'tmp');
  (await import('node:fs')).mkdirSync(buildDir);
  return { store, dir, buildDir, sessions: [], connectionErrors: [] };
}

async function build(run: Run, drvPath: string, over: Partial<RunSettings> = {}, extra: { onRunning?: (g: RunningGoal) => void; reporter?: Quiet } = {}) {
  const settings = sandboxSettings(run.buildDir, over);
  const reporter = extra.reporter ?? new Quiet();
  const recursive = createRecursiveHook({
    store: run.store,
    settings,
    onSession: (s) => run.sessions.push(s),
    onConnectionError: (_d, e) => run.connectionErrors.push(e.message),
  });
  const started = Date.now();
  const summary = await buildTargets([{ arg: drvPath, drvPath, outputs: null }], {
    store: run.store,
    settings,
    mode: 'normal',
    keepGoing: false,
    reporter,
    recursive,
    ...(extra.onRunning ? { onRunning: extra.onRunning } : {}),
  });
  const goal = reporter.results.find((r) => r.drvPath === drvPath);
  return {
    ms: Date.now() - started,
    exitCode: summary.exitCode,
    out: summary.targets[0]!.outputs.get('out') ?? null,
    error: goal?.error?.message ?? null,
    log: reporter.output,
    messages: reporter.messages,
  };
}

function sessionReport(s: RecursiveSession | undefined) {
  if (!s) return null;
  return { stopped: s.stopped, socketLeft: existsSync(s.socketHost), listening: s.server.path !== null, stats: s.server.stats, added: s.addedPaths.size };
}

/** A warm-up build: starts the launcher server so fd counts compare like with like. */
async function warmUp(run: Run): Promise<void> {
  const d = await addDrv(run.store, { name: 'warm-up', builder: '/bin/sh', args: ['-c', 'echo warm > $out'] });
  const r = await build(run, d);
  if (r.exitCode !== 0) throw new Error(`warm-up build failed: ${r.error}\n${r.log}\n${r.messages.join('\n')}`);
}

async function innerBuilds(run: Run, n: number) {
  await warmUp(run);
  const fdsBefore = fdCount();
  const heapBefore = heapUsed();
  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  const drv = await nodeBuilder(
    run.store,
    'many-inner',
    `
const outs = [];
const t0 = Date.now();
for (let i = 0; i < ${n}; i++) {
  const c = await connect();
  const d = innerDrv('inner-' + i, 'n' + i);
  const drvPath = await c.addTextToStore('inner-' + i + '.drv', d.text, d.refs);
  const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath, outputs: ['out'] }]);
  if (r.status !== 0) throw new Error('inner build ' + i + ': status ' + r.status + ' ' + r.errorMsg);
  await c.close();
  outs.push(r.builtOutputs[0].outPath);
  if ((i + 1) % 100 === 0) console.log('at ' + (i + 1) + ': ' + (Date.now() - t0) + ' ms');
}
const ms = Date.now() - t0;
// every inner output is visible here at once
const { readFileSync } = await import('node:fs');
for (const [i, o] of outs.entries()) if (readFileSync(o, 'utf8') !== 'n' + i + '\\n') throw new Error('bad contents of ' + o);
writeFileSync(process.env.out, outs.join('\\n') + '\\n');
console.log('inner builds: ' + ms + ' ms');
`,
  );
  const r = await build(run, drv);
  clearInterval(sampler);
  // let closed handles settle before counting
  await new Promise((res) => setTimeout(res, 100));
  const lines = r.out ? readFileSync(run.store.toRealPath(r.out), 'utf8').trim().split('\n') : [];
  const refs = r.out ? run.store.queryPathInfo(r.out)!.references : [];
  return {
    ...r,
    innerMs: Number(/inner builds: (\d+) ms/.exec(r.log)?.[1] ?? -1),
    /** ms for each block of 100 inner builds: flat when nothing grows with their number */
    per100: [...r.log.matchAll(/at \d+: (\d+) ms/g)].map((m, i, all) => Number(m[1]) - (i > 0 ? Number(all[i - 1]![1]) : 0)),
    outputs: lines.length,
    references: refs.length,
    referencesAreOutputs: refs.length === lines.length && lines.every((l) => refs.includes(l)),
    session: sessionReport(run.sessions.at(-1)),
    fdsBefore,
    fdsAfter: await fdCountSettled(fdsBefore),
    rssBeforeMiB: mib(rssBefore),
    peakRssMiB: mib(peakRss),
    rssAfterMiB: mib(process.memoryUsage().rss),
    heapBeforeMiB: mib(heapBefore),
    heapAfterMiB: mib(heapUsed()),
    connectionErrors: run.connectionErrors.slice(0, 5),
    buildDirLeft: readdirSync(run.buildDir),
  };
}

async function concurrent(run: Run, n: number) {
  await warmUp(run);
  const fdsBefore = fdCount();
  const drv = await nodeBuilder(
    run.store,
    'concurrent',
    `
const t0 = Date.now();
const results = await Promise.all(Array.from({ length: ${n} }, async (_, i) => {
  const c = await connect();
  const text = await c.addTextToStore('note-' + i, 'note ' + i + '\\n');
  const info = await c.queryPathInfo(text);
  const d = innerDrv('par-' + i, 'p' + i);
  const drvPath = await c.addTextToStore('par-' + i + '.drv', d.text, d.refs);
  const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath, outputs: ['out'] }]);
  await c.close();
  return { text, narSize: info.narSize, status: r.status, out: r.builtOutputs[0]?.outPath ?? null };
}));
writeFileSync(process.env.out, JSON.stringify(results));
console.log('concurrent: ' + (Date.now() - t0) + ' ms');
`,
  );
  const r = await build(run, drv, { daemonMaxConnections: 8 });
  await new Promise((res) => setTimeout(res, 100));
  const results = r.out ? (JSON.parse(readFileSync(run.store.toRealPath(r.out), 'utf8')) as Array<{ status: number; out: string | null }>) : [];
  return {
    ...r,
    results,
    allValid: results.every((x) => x.out !== null && run.store.isValidPath(x.out)),
    session: sessionReport(run.sessions.at(-1)),
    fdsBefore,
    fdsAfter: await fdCountSettled(fdsBefore),
    connectionErrors: run.connectionErrors.slice(0, 5),
  };
}

/** The NAR the kill-mid-nar builder sends: one 8 MiB file; its CA path. */
export function bigNar(): { nar: Buffer; info: Record<string, unknown> } {
  const nar = narOfFile(Buffer.alloc(8 << 20, 0x61));
  const narHash = hashBytes('sha256', nar);
  const path = makeFixedOutputPath('/nix/store', 'recursive', narHash, 'big');
  return {
    nar,
    info: { path, narHash: formatHash(narHash, 'base16'), narSize: nar.length, ca: `fixed:r:${formatHash(narHash, 'nix32')}` },
  };
}

async function killMidNar(run: Run) {
  await warmUp(run);
  const fdsBefore = fdCount();
  const { info } = bigNar();
  const storeBefore = new Set(readdirSync(run.store.realStoreDir));
  const drv = await nodeBuilder(
    run.store,
    'killed-mid-nar',
    `
const { parseHash } = await import(${JSON.stringify(url('src/format/hash.js'))});
const i = JSON.parse(process.env.INFO);
const nar = narOfFile(Buffer.alloc(8 << 20, 0x61));
const c = await connect();
async function* halfThenStall() {
  yield nar.subarray(0, nar.length >> 1);
  console.log('HALF SENT');
  await new Promise(() => {});
}
await c.addToStoreNar({ path: i.path, deriver: null, narHash: parseHash(i.narHash), references: [], registrationTime: 0,
  narSize: i.narSize, ultimate: false, sigs: [], ca: i.ca }, halfThenStall());
console.log('NOT REACHED');
`,
    { INFO: JSON.stringify(info) },
  );
  const reporter = new Quiet();
  let goal: RunningGoal | null = null;
  let killedAtMs = 0;
  /** store imports under way when the builder died (the daemon was inside AddToStoreNar) */
  let tempAtKill = -1;
  const t0 = Date.now();
  reporter.onChunk = (text) => {
    if (!text.includes('HALF SENT') || !goal) return;
    // the daemon is now inside AddToStoreNar, waiting for the rest
    setTimeout(() => {
      killedAtMs = Date.now() - t0;
      tempAtKill = readdirSync(run.store.realStoreDir).filter((n) => n.endsWith('-drvbox-tmp')).length;
      // SIGKILL the builder itself (the sandbox's init), as a crash would
      const pid = (goal!.running as { sandboxPid?: number }).sandboxPid;
      if (pid) process.kill(pid, 'SIGKILL');
      else void goal!.running.kill();
    }, 200);
  };
  const r = await build(run, drv, {}, { reporter, onRunning: (g) => (goal = g) });
  await new Promise((res) => setTimeout(res, 100));
  const leftovers = readdirSync(run.store.realStoreDir).filter((n) => !storeBefore.has(n) && !n.endsWith('.drv') && !n.endsWith('.lock'));
  const { verifyStore } = await import('../../src/store/verify.js');
  const verify = await verifyStore(run.store, { checkContents: true, repair: false, log: () => {} });
  const s = run.sessions.at(-1);
  let connectRefused = false;
  if (s) {
    const { connect } = await import('node:net');
    connectRefused = await new Promise<boolean>((res) => {
      const sock = connect(s.socketHost);
      sock.on('connect', () => {
        sock.destroy();
        res(false);
      });
      sock.on('error', () => res(true));
    });
  }
  return {
    ...r,
    killedAtMs,
    tempAtKill,
    bigValid: run.store.isValidPath(info.path as string),
    leftovers,
    verifyErrors: verify.errors,
    verifyProblems: verify.problems.map((p) => p.message),
    session: sessionReport(s),
    connectRefused,
    fdsBefore,
    fdsAfter: await fdCountSettled(fdsBefore),
    connectionErrors: run.connectionErrors.slice(0, 5),
    buildDirLeft: readdirSync(run.buildDir),
  };
}

async function forbidden(run: Run) {
  await warmUp(run);
  const fdsBefore = fdCount();
  const outside = await addTextToStore(run.store, 'outside', 'not an input\n', []);
  const input = await addTextToStore(run.store, 'input', 'an input\n', []);
  const drv = await nodeBuilder(
    run.store,
    'forbidden',
    `
const c = await connect();
const outside = ${JSON.stringify(outside)};
const input = ${JSON.stringify(input)};
const res = {};
const attempt = async (name, f) => { try { res[name] = { ok: await f() }; } catch (e) { res[name] = { error: e.message }; } };
await attempt('isValidInput', () => c.isValidPath(input));
await attempt('isValidOutside', () => c.isValidPath(outside));
await attempt('infoOutside', () => c.queryPathInfo(outside));
await attempt('dumpOutside', () => c.narFromPath(outside, () => {}));
await attempt('ensureOutside', () => c.ensurePath(outside));
await attempt('buildOutside', () => c.buildPaths([{ kind: 'opaque', path: outside }]));
await attempt('outputMapOutside', () => c.queryDerivationOutputMap(outside + '.drv'));
await attempt('missing', async () => (await c.queryMissing([{ kind: 'opaque', path: outside }])).unknown);
await attempt('checkMode', async () => { const d = innerDrv('chk', 'c'); const p = await c.addTextToStore('chk.drv', d.text, d.refs); return c.buildPaths([{ kind: 'built', drvPath: p, outputs: ['out'] }], 2); });
await attempt('allValid', () => c.queryAllValidPaths());
const inputInfo = await c.queryPathInfo(input);
res.inputInfo = { deriver: inputInfo.deriver, registrationTime: inputInfo.registrationTime, ultimate: inputInfo.ultimate, sigs: inputInfo.sigs };
await attempt('gc', async () => { await c.addTempRoot(outside); return (await c.findRoots()).length; });
await c.close();
writeFileSync(process.env.out, JSON.stringify(res));
`,
    { input },
    [input],
  );
  const r = await build(run, drv);
  const res = r.out ? JSON.parse(readFileSync(run.store.toRealPath(r.out), 'utf8')) : null;
  await new Promise((res) => setTimeout(res, 100));
  return { ...r, outside, input, res, session: sessionReport(run.sessions.at(-1)), fdsBefore, fdsAfter: await fdCountSettled(fdsBefore), connectionErrors: run.connectionErrors.slice(0, 5) };
}

/**
 * Three levels with max-jobs = 1: the outer builder builds a derivation
 * that is itself recursive and builds a leaf. No level waits for a slot the
 * level above holds (Nix issue 4216).
 */
async function nested(run: Run) {
  const middle = drvText(
    run.store.storeDir,
    nodeBuilderSpec(
      'middle',
      `
const c = await connect();
const d = innerDrv('leaf', 'leaf');
const drvPath = await c.addTextToStore('leaf.drv', d.text, d.refs);
const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath, outputs: ['out'] }]);
if (r.status !== 0) throw new Error('leaf: ' + r.errorMsg);
await c.close();
writeFileSync(process.env.out, 'middle uses ' + r.builtOutputs[0].outPath + '\\n');
`,
    ),
  );
  const outer = await nodeBuilder(
    run.store,
    'outer',
    `
const c = await connect();
const d = JSON.parse(process.env.MIDDLE);
const drvPath = await c.addTextToStore('middle.drv', d.text, d.refs);
const [r] = await c.buildPathsWithResults([{ kind: 'built', drvPath, outputs: ['out'] }]);
if (r.status !== 0) throw new Error('middle: ' + r.errorMsg);
const { readFileSync } = await import('node:fs');
const text = readFileSync(r.builtOutputs[0].outPath, 'utf8');
await c.close();
writeFileSync(process.env.out, 'outer uses ' + r.builtOutputs[0].outPath + '\\n' + text);
`,
    { MIDDLE: JSON.stringify(middle) },
  );
  const r = await build(run, outer, { maxJobs: 1, timeout: 60 });
  const closure = r.out ? [...run.store.computeClosure([r.out])].sort() : [];
  return {
    ...r,
    text: r.out ? readFileSync(run.store.toRealPath(r.out), 'utf8') : null,
    middleOut: middle.out,
    closure,
    sessions: run.sessions.map((s) => ({ drvPath: s.drvPath, ...sessionReport(s) })),
  };
}

/**
 * A build-dir so deep that `<build dir>/.nix-socket` on the host is longer
 * than a unix socket path may be: the daemon binds through the directory's
 * fd; the sandboxed builder connects to /build/.nix-socket as usual.
 */
async function deepBuildDir(run: Run) {
  let deep = run.buildDir;
  while (deep.length < 140) deep = join(deep, 'deeper-and-deeper');
  (await import('node:fs')).mkdirSync(deep, { recursive: true });
  const drv = await nodeBuilder(
    run.store,
    'deep',
    `
const c = await connect();
const p = await c.addTextToStore('from-deep', 'deep\\n');
await c.close();
writeFileSync(process.env.out, process.env.NIX_REMOTE + '\\n' + p + '\\n');
`,
  );
  const r = await build(run, drv, { buildDir: deep });
  const s = run.sessions.at(-1);
  return {
    ...r,
    deepLength: deep.length,
    socketHostLength: s ? Buffer.byteLength(s.socketHost) : 0,
    text: r.out ? readFileSync(run.store.toRealPath(r.out), 'utf8') : null,
    references: r.out ? run.store.queryPathInfo(r.out)!.references : [],
    session: sessionReport(s),
    left: readdirSync(deep),
  };
}

/** Processes whose command line is exactly `argv` (read from /proc). */
function processesRunning(argv: string[]): number {
  const want = argv.join('\0') + '\0';
  let n = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8') === want) n++;
    } catch {
      // gone, or not ours to read
    }
  }
  return n;
}

/**
 * The outer builder SIGKILLed while an inner build runs: the connection's
 * end aborts the inner build (its builder is killed too), the daemon stops.
 */
async function killMidBuild(run: Run) {
  await warmUp(run);
  const fdsBefore = fdCount();
  const storeBefore = new Set(readdirSync(run.store.realStoreDir));
  const marker = `${(process.pid % 1000) + 1000}.${Date.now() % 1000}`;
  const sleeper = ['/usr/bin/sleep', marker];
  const drv = await nodeBuilder(
    run.store,
    'killed-mid-build',
    `
const c = await connect();
const d = innerDrv('sleeper', 'x; ${sleeper.join(' ')}; echo');
const p = await c.addTextToStore('sleeper.drv', d.text, d.refs);
const waiting = c.buildPathsWithResults([{ kind: 'built', drvPath: p, outputs: ['out'] }]);
setTimeout(() => console.log('INNER RUNNING'), 300);
const [r] = await waiting;
console.log('NOT REACHED ' + r.status);
`,
  );
  const reporter = new Quiet();
  let goal: RunningGoal | null = null;
  let innerAtKill = -1;
  reporter.onChunk = (text) => {
    if (!text.includes('INNER RUNNING') || !goal) return;
    innerAtKill = processesRunning(sleeper);
    const pid = (goal.running as { sandboxPid?: number }).sandboxPid;
    if (pid) process.kill(pid, 'SIGKILL');
    else void goal.running.kill();
  };
  const t0 = Date.now();
  const r = await build(run, drv, {}, { reporter, onRunning: (g) => (goal ??= g) });
  const ms = Date.now() - t0;
  await new Promise((res) => setTimeout(res, 200));
  return {
    ...r,
    ms,
    innerAtKill,
    innerAfter: processesRunning(sleeper),
    leftovers: readdirSync(run.store.realStoreDir).filter((n) => !storeBefore.has(n) && !n.endsWith('.drv') && !n.endsWith('.lock')),
    session: sessionReport(run.sessions[0]),
    sessions: run.sessions.length,
    fdsBefore,
    fdsAfter: await fdCountSettled(fdsBefore),
    connectionErrors: run.connectionErrors.slice(0, 5),
    buildDirLeft: readdirSync(run.buildDir),
  };
}

export async function main(argv: string[]): Promise<void> {
  const [scenario, arg] = argv;
  const run = await setup();
  try {
    let report: unknown;
    if (scenario === 'inner-builds') report = await innerBuilds(run, Number(arg ?? 1000));
    else if (scenario === 'concurrent') report = await concurrent(run, Number(arg ?? 20));
    else if (scenario === 'kill-mid-nar') report = await killMidNar(run);
    else if (scenario === 'forbidden') report = await forbidden(run);
    else if (scenario === 'nested') report = await nested(run);
    else if (scenario === 'deep-build-dir') report = await deepBuildDir(run);
    else if (scenario === 'kill-mid-build') report = await killMidBuild(run);
    else throw new Error(`unknown scenario '${scenario}'`);
    process.stdout.write(JSON.stringify({ uid: process.getuid?.(), report }) + '\n');
  } finally {
    run.store.close();
    const { flushBackgroundWork } = await import('../../src/build/goal.js');
    await flushBackgroundWork();
    const fix = (p: string) => {
      try {
        const st = lstatSync(p);
        if (st.isDirectory()) {
          chmodSync(p, 0o755);
          for (const e of readdirSync(p)) fix(join(p, e));
        }
      } catch {
        // gone
      }
    };
    fix(run.dir);
    rmSync(run.dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
