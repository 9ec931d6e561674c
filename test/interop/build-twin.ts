// Nix 2.8 and drvbox building the same derivations unsandboxed in the same
// store directory, one after the other:
//   1. nix-instantiate the corpus into DIR/store (Nix's state elsewhere),
//   2. nix-store --export the .drv closures,
//   3. Nix builds (sandbox = false, cores = 1) and its results are read,
//   4. DIR/store is moved away, drvbox imports the export into a fresh
//      DIR/store (state in DIR/var) and builds the same .drv paths.
// Both builders get the same /bin/sh and TMPDIR, so even NIX_BUILD_TOP is
// the same path (nix-build-<name>.drv-0).
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, REPO_ROOT, requireTool } from '../helpers/host.js';
import { removeTree } from '../helpers/tmp.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

export const CORPUS = join(REPO_ROOT, 'test', 'fixtures', 'build-interop', 'corpus.nix');
/** Nix adds ca-derivations to its system features when the experimental feature is on. */
export const SYSTEM_FEATURES = 'benchmark big-parallel ca-derivations';

export interface Ran {
  status: number | null;
  signal?: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export class Twin {
  readonly dir: string;
  readonly storeDir: string;
  readonly tmp: string;
  private readonly nixEnv: NodeJS.ProcessEnv;
  private readonly dxEnv: NodeJS.ProcessEnv;
  readonly nixStore: string;
  /** Where Nix's store dir went once drvbox took its place. */
  readonly nixStoreMoved: string;

  constructor() {
    requireTool('nix-build', 'apt-get install -y nix-bin');
    this.dir = mkdtempSync(join(tmpdir(), 'drvbox-twin-'));
    this.storeDir = join(this.dir, 'store');
    this.tmp = join(this.dir, 'tmp');
    this.nixStoreMoved = join(this.dir, 'nix-store');
    const conf = join(this.dir, 'nix-conf');
    for (const d of [this.tmp, conf, join(this.dir, 'home'), join(this.dir, 'dx-conf')]) mkdirSync(d, { recursive: true });
    writeFileSync(
      join(conf, 'nix.conf'),
      [
        'build-users-group =',
        'sandbox = false',
        'substituters =',
        'experimental-features = nix-command ca-derivations',
        'system-features = benchmark big-parallel',
        'cores = 1',
        'max-jobs = 1',
      ].join('\n') + '\n',
    );
    const base: NodeJS.ProcessEnv = { ...process.env, TMPDIR: this.tmp, HOME: join(this.dir, 'home'), NIX_PATH: '' };
    delete base.NIX_REMOTE;
    this.nixEnv = { ...base, NIX_CONF_DIR: conf, XDG_CACHE_HOME: join(this.dir, 'home', '.cache') };
    this.dxEnv = { ...base, XDG_CONFIG_HOME: join(this.dir, 'dx-conf'), DRVBOX_CONFIG: '', DRVBOX_STORE: '' };
    this.nixStore = `local?store=${this.storeDir}&state=${join(this.dir, 'nix-state', 'nix')}&log=${join(this.dir, 'nix-state', 'log')}`;
  }

  nix(cmd: string, args: string[], input?: Buffer): { status: number | null; signal: NodeJS.Signals | null; stdout: Buffer; stderr: string } {
    const r = spawnSync(cmd, ['--store', this.nixStore, ...args], { env: this.nixEnv, input, maxBuffer: 1 << 30 });
    return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: String(r.stderr) };
  }

  /** attribute -> .drv path */
  instantiate(attrs: readonly string[]): Map<string, string> {
    const r = this.nix('nix-instantiate', [CORPUS, ...attrs.flatMap((a) => ['-A', a])]);
    if (r.status !== 0) throw new Error(`nix-instantiate failed: ${r.stderr}`);
    const paths = r.stdout.toString().trim().split('\n');
    if (paths.length !== attrs.length) throw new Error(`nix-instantiate gave ${paths.length} paths for ${attrs.length} attributes`);
    return new Map(attrs.map((a, i) => [a, paths[i]!]));
  }

  /** The export stream of the closures of `drvs`. */
  exportClosure(drvs: Iterable<string>): Buffer {
    const q = this.nix('nix-store', ['-qR', ...drvs]);
    if (q.status !== 0) throw new Error(`nix-store -qR failed: ${q.stderr}`);
    const e = this.nix('nix-store', ['--export', ...q.stdout.toString().trim().split('\n')]);
    if (e.status !== 0) throw new Error(`nix-store --export failed: ${e.stderr}`);
    return e.stdout;
  }

  /** Hands the store dir over to drvbox: Nix's copy moves aside, drvbox imports `exported`. */
  switchToDrvbox(exported: Buffer): void {
    renameSync(this.storeDir, this.nixStoreMoved);
    const r = this.drvbox(['store', 'import'], exported);
    if (r.status !== 0) throw new Error(`drvbox store import failed: ${r.stderr}`);
  }

  drvbox(args: string[], input?: Buffer): Ran {
    const r = spawnSync(process.execPath, [CLI, '--store-dir', this.storeDir, ...args], {
      env: this.dxEnv,
      cwd: this.dir,
      input,
      maxBuffer: 1 << 30,
    });
    return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** drvbox build with the settings Nix uses here. */
  drvboxBuild(args: string[]): Ran {
    return this.drvbox(['build', '--sandbox', 'false', '--cores', '1', '--max-jobs', '1', '--option', 'system-features', SYSTEM_FEATURES, ...args]);
  }

  /** A path of Nix's store, read after the switch. */
  nixReal(path: string): string {
    return this.nixStoreMoved + path.slice(this.storeDir.length);
  }

  remove(): void {
    if (!process.env.DRVBOX_KEEP_TEST_DIRS) removeTree(this.dir);
  }
}

/** The `error:` block of a nix-build/drvbox stderr: the message and its indented continuation lines (drvbox's log tail and log location dropped). */
export function errorBlock(stderr: string): string[] {
  const lines = stderr.split('\n');
  const start = lines.findIndex((l) => l.startsWith('error:'));
  if (start < 0) return [];
  const block = [lines[start]!];
  for (const l of lines.slice(start + 1)) {
    if (!l.startsWith(' ')) break;
    if (/^ {7}(last \d+ log lines:|> |For full logs, run )/.test(l)) break;
    block.push(l);
  }
  // drvbox ends the message with ';' when log lines follow (Nix does too, when it shows them).
  return block.map((l) => l.replace(/;$/, ''));
}
