// The Nix 2.8 fixtures of the prepare/register tests: what Nix writes into a
// build dir and the environment it passes (prepare.nix), what it registers
// for content-addressed outputs, and how it fails (failures.nix). The unit
// tests compare drvbox against these files; with DRVBOX_ACCEPT_FIXTURES=1
// they are first rebuilt from the oracle (isolated Nix, its own store root;
// Nix builds in its sandbox there, with /bin/sh = busybox, `cores = 3`,
// FOO_PROXY=proxy-value in the caller's environment).
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { REPO_ROOT } from '../helpers/host.js';
import { nixOracle } from '../helpers/nix.js';
import { makeWritable, removeTree, tempDir } from '../helpers/tmp.js';

export const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'build');
export const PREPARE_DIR = join(FIXTURES, 'prepare');
export const ACCEPT = process.env.DRVBOX_ACCEPT_FIXTURES === '1';

export const PREPARE_ATTRS = ['env-basic', 'structured', 'legacy-graph'] as const;
export const CA_ATTRS = ['ca-self', 'ca-flat', 'fixed'] as const;
export const FAILURE_CASES = [
  'allowed-references',
  'allowed-references-self',
  'allowed-references-ok',
  'allowed-requisites',
  'allowed-requisites-self',
  'disallowed-references',
  'disallowed-requisites',
  'illegal-specifier',
  'output-name-specifier',
  'structured-max-size',
  'structured-max-closure-size',
  'structured-requisites-self',
  'cycle',
  'missing',
  'fixed-mismatch',
  'erg-odd',
  'erg-bad-name',
  'erg-non-store',
  'erg-not-input',
  'ca-flat-dir',
  'world-writable',
] as const;

export interface NixPathInfo {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  ca?: string;
  deriver?: string;
}

export interface PrepareMeta {
  cores: number;
  callerEnv: Record<string, string>;
  /** attr -> .drv path */
  attrs: Record<string, string>;
  /** every valid path of Nix's store after the builds */
  pathInfos: NixPathInfo[];
  /** .drv path -> output name -> path */
  drvOutputs: Record<string, Record<string, string>>;
  /** base64 of the envp of the fixed-output build (printed to its log) */
  fixedEnviron: string;
  /** attr -> output name -> path info, for the registered CA/fixed outputs */
  registered: Record<string, Record<string, NixPathInfo>>;
  /** The scratch (fallback) paths Nix gave the builder of ca-self (it wrote them spaced out, so not rewritten). */
  caSelfScratch: Record<string, string>;
}

export interface FailureOutcome {
  drvPath: string;
  status: number | null;
  /** The `error:` lines Nix printed (continuation lines included), without the ANSI colours. */
  error: string;
}

const CALLER_ENV = { FOO_PROXY: 'proxy-value' };
const CORES = 3;

/**
 * Rebuilds the fixtures from Nix when DRVBOX_ACCEPT_FIXTURES=1, else does
 * nothing. Only desugar.test.ts calls it (one rebuild per run):
 *   DRVBOX_ACCEPT_FIXTURES=1 node test/run.mjs build/desugar
 */
export function ensureFixtures(): void {
  if (ACCEPT) generateFixtures();
}

export function generateFixtures(): void {
  const dir = tempDir(null, 'drvbox-build-fixtures-');
  try {
    const nix = nixOracle(dir, `cores = ${CORES}`);
    const env = { ...CALLER_ENV };
    const prepareNix = join(FIXTURES, 'prepare.nix');
    const failuresNix = join(FIXTURES, 'failures.nix');
    removeTree(PREPARE_DIR);
    mkdirSync(join(PREPARE_DIR, 'drvs'), { recursive: true });

    const attrs: Record<string, string> = {};
    for (const a of [...PREPARE_ATTRS, ...CA_ATTRS, 'fixed-capture', 'dep', 'dep2', 'big']) {
      attrs[a] = nix.instantiate(`import ${prepareNix}`, a)[0]!;
    }
    for (const a of [...PREPARE_ATTRS, ...CA_ATTRS]) {
      nix.run('nix-build', [prepareNix, '-A', a, '--no-out-link'], { env });
    }
    const cap = nix.run('nix-build', [prepareNix, '-A', 'fixed-capture', '--no-out-link'], { env, allowFail: true });
    const m = /ENVIRON-BEGIN\n([\s\S]*?)ENVIRON-END/.exec(cap.stderr);
    if (!m) throw new Error(`fixed-capture printed no environment: ${cap.stderr.slice(-2000)}`);
    const fixedEnviron = m[1]!.replace(/\s+/g, '');

    const storeReal = join(nix.root, 'nix', 'store');
    const show = (drv: string) =>
      JSON.parse(nix.run('nix', ['show-derivation', drv]).stdout.toString()) as Record<string, { outputs: Record<string, { path?: string }> }>;
    for (const a of PREPARE_ATTRS) {
      const drv = attrs[a]!;
      const out = show(drv)[drv]!.outputs['out']!.path!;
      const dst = join(PREPARE_DIR, a);
      cpSync(join(storeReal, basename(out)), dst, { recursive: true, verbatimSymlinks: true });
      makeWritable(dst);
    }
    const pathInfos = (JSON.parse(nix.run('nix', ['path-info', '--json', '--all']).stdout.toString()) as NixPathInfo[]).map((i) => {
      const o: NixPathInfo = { path: i.path, narHash: i.narHash, narSize: i.narSize, references: i.references };
      if (i.ca) o.ca = i.ca;
      if (i.deriver) o.deriver = i.deriver;
      return o;
    });
    const drvOutputs: Record<string, Record<string, string>> = {};
    for (const name of readdirSync(storeReal)) {
      if (!name.endsWith('.drv')) continue;
      const p = `/nix/store/${name}`;
      const outs: Record<string, string> = {};
      for (const [o, v] of Object.entries(show(p)[p]!.outputs)) if (v.path) outs[o] = v.path;
      drvOutputs[p] = outs;
    }
    const registered: PrepareMeta['registered'] = {};
    for (const a of CA_ATTRS) {
      const drv = attrs[a]!;
      // The derivation Nix builds is the resolved one (CA: inputDrvs replaced by
      // their outputs), which also names the scratch paths: take the deriver.
      const built = JSON.parse(nix.run('nix', ['build', '--json', '--no-link', '-f', prepareNix, a], { env }).stdout.toString()) as Array<{
        outputs: Record<string, string>;
      }>;
      const outInfo = pathInfos.find((i) => i.path === built[0]!.outputs['out']);
      if (!outInfo?.deriver) throw new Error(`output of ${drv} has no deriver in Nix's store`);
      const drvName = basename(drv).slice(33, -4);
      const byName: Record<string, NixPathInfo> = {};
      for (const info of pathInfos) {
        if (info.deriver !== outInfo.deriver) continue;
        const rest = basename(info.path).slice(33);
        byName[rest === drvName ? 'out' : rest.slice(drvName.length + 1)] = info;
      }
      registered[a] = byName;
    }
    const caSelfScratch: Record<string, string> = {};
    for (const [o, info] of Object.entries(registered['ca-self']!)) {
      caSelfScratch[o] = readFileSync(join(storeReal, basename(info.path), 'scratch-spaced'), 'utf8').replace(/(.) /g, '$1');
    }
    const meta: PrepareMeta = { cores: CORES, callerEnv: CALLER_ENV, attrs, pathInfos, drvOutputs, fixedEnviron, registered, caSelfScratch };
    writeFileSync(join(PREPARE_DIR, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');

    // Failures: dependencies first, so that cases needing a valid path find it.
    for (const a of ['dep', 'dep2']) nix.run('nix-build', [failuresNix, '-A', a, '--no-out-link']);
    const failures: Record<string, FailureOutcome> = {};
    for (const c of FAILURE_CASES) {
      const drvPath = nix.instantiate(`import ${failuresNix}`, c)[0]!;
      const r = nix.run('nix-build', [failuresNix, '-A', c, '--no-out-link'], { allowFail: true });
      failures[c] = { drvPath, status: r.status, error: errorLines(r.stderr) };
    }
    writeFileSync(join(FIXTURES, 'failures.json'), JSON.stringify(failures, null, 2) + '\n');
    for (const name of readdirSync(storeReal)) {
      if (name.endsWith('.drv')) writeFileSync(join(PREPARE_DIR, 'drvs', name), readFileSync(join(storeReal, name)));
    }
  } finally {
    removeTree(dir);
  }
}

function errorLines(stderr: string): string {
  // eslint-disable-next-line no-control-regex
  const plain = stderr.replace(/\x1b\[[0-9;]*m/g, '');
  const i = plain.indexOf('error:');
  return i < 0 ? '' : plain.slice(i).trimEnd();
}

export function loadMeta(): PrepareMeta {
  return JSON.parse(readFileSync(join(PREPARE_DIR, 'meta.json'), 'utf8')) as PrepareMeta;
}

export function loadFailures(): Record<string, FailureOutcome> {
  return JSON.parse(readFileSync(join(FIXTURES, 'failures.json'), 'utf8')) as Record<string, FailureOutcome>;
}

export function drvFile(drvPath: string): Buffer {
  return readFileSync(join(PREPARE_DIR, 'drvs', basename(drvPath)));
}

/** A file captured from the build dir of `attr` (or the environ, `arg0`). */
export function captured(attr: string, rel: string): Buffer {
  return readFileSync(join(PREPARE_DIR, attr, rel));
}

export function capturedFiles(attr: string): string[] {
  return readdirSync(join(PREPARE_DIR, attr, 'files')).sort();
}
