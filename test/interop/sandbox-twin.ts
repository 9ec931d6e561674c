// Nix 2.8 and drvbox building the same derivations SANDBOXED, each in its own
// chroot-style store (logical /nix/store, so .drv and output paths agree):
//   1. nix-instantiate into the oracle's store (nixOracle: isolated
//      NIX_CONF_DIR, --store ROOT, sandbox = true),
//   2. nix-store --export of the .drv closures, imported into drvbox's root,
//   3. both build with the same sandbox-paths: /bin/sh=busybox (as the
//      oracle's default), busybox itself and /bin/bash with its loader and
//      libraries (the corpus calls both), and the same TMPDIR.
// Nix runs as root without build users, as the oracle always does.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localShellHost, runtimeClosure } from '../../backends/linux/default-shell.js';
import { CLI, requireRoot, requireTool } from '../helpers/host.js';
import { nixOracle, type NixOracle } from '../helpers/nix.js';
import { requireSandbox } from '../helpers/sandbox.js';
import { removeTree } from '../helpers/tmp.js';

export const BUSYBOX = '/usr/bin/busybox';

export interface Ran {
  status: number | null;
  signal?: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The sandbox-paths both builders get (beyond /bin/sh=busybox): busybox, bash and what bash needs. */
export function corpusSandboxPaths(): string[] {
  const host = localShellHost();
  const bash = realpathSync('/bin/bash');
  const elf = host.elf(bash);
  if (!elf) throw new Error(`/bin/bash ('${bash}') is not an ELF program`);
  const closure = runtimeClosure(host, bash, elf);
  if (closure.missing) throw new Error(`library '${closure.missing}' of /bin/bash not found`);
  return [BUSYBOX, `/bin/bash=${bash}`, ...closure.words];
}

export class SandboxTwin {
  readonly dir: string;
  readonly tmp: string;
  readonly nix: NixOracle;
  readonly dxRoot: string;
  readonly sandboxPaths: string[];
  private readonly dxEnv: NodeJS.ProcessEnv;

  /** Fails (never skips) without Nix, root or the sandbox. */
  static async create(): Promise<SandboxTwin> {
    requireTool('nix-build', 'apt-get install -y nix-bin');
    requireTool('busybox', 'apt-get install -y busybox-static');
    requireRoot('Nix 2.8 builds sandboxed only as root here (no build users, no daemon)');
    await requireSandbox('drvbox builds the corpus sandboxed');
    return new SandboxTwin();
  }

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'drvbox-sandbox-twin-'));
    this.tmp = join(this.dir, 'tmp');
    mkdirSync(this.tmp);
    this.sandboxPaths = corpusSandboxPaths();
    this.nix = nixOracle(
      this.dir,
      [
        `extra-sandbox-paths = ${this.sandboxPaths.join(' ')}`,
        'system-features = benchmark big-parallel',
        'cores = 1',
        'max-jobs = 1',
      ].join('\n'),
    );
    this.dxRoot = join(this.dir, 'drvbox-root');
    mkdirSync(join(this.dir, 'dx-conf'));
    this.dxEnv = { ...process.env, TMPDIR: this.tmp, HOME: join(this.dir, 'nix-home'), XDG_CONFIG_HOME: join(this.dir, 'dx-conf'), DRVBOX_CONFIG: '', DRVBOX_STORE: '' };
  }

  nixRun(cmd: string, args: string[], input?: Buffer): { status: number | null; signal: NodeJS.Signals | null; stdout: Buffer; stderr: string } {
    const r = spawnSync(cmd, ['--store', this.nix.root, ...args], { env: { ...this.nix.env, TMPDIR: this.tmp }, input, maxBuffer: 1 << 30 });
    return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: String(r.stderr) };
  }

  /** attribute -> .drv path */
  instantiate(file: string, attrs: readonly string[]): Map<string, string> {
    const r = this.nixRun('nix-instantiate', [file, ...attrs.flatMap((a) => ['-A', a])]);
    if (r.status !== 0) throw new Error(`nix-instantiate failed: ${r.stderr}`);
    const paths = r.stdout.toString().trim().split('\n');
    if (paths.length !== attrs.length) throw new Error(`nix-instantiate gave ${paths.length} paths for ${attrs.length} attributes`);
    return new Map(attrs.map((a, i) => [a, paths[i]!]));
  }

  /** Exports the closures of `drvs` from Nix's store and imports them into drvbox's. */
  share(drvs: Iterable<string>): void {
    const q = this.nixRun('nix-store', ['-qR', ...drvs]);
    if (q.status !== 0) throw new Error(`nix-store -qR failed: ${q.stderr}`);
    const e = this.nixRun('nix-store', ['--export', ...q.stdout.toString().trim().split('\n')]);
    if (e.status !== 0) throw new Error(`nix-store --export failed: ${e.stderr}`);
    const r = this.drvbox(['store', 'import'], e.stdout);
    if (r.status !== 0) throw new Error(`drvbox store import failed: ${r.stderr}`);
  }

  nixBuild(args: string[]): Ran {
    const r = this.nixRun('nix-build', ['--no-out-link', ...args]);
    return { status: r.status, signal: r.signal, stdout: r.stdout.toString(), stderr: r.stderr };
  }

  drvbox(args: string[], input?: Buffer): Ran {
    const r = spawnSync(process.execPath, [CLI, '--store', this.dxRoot, ...args], { env: this.dxEnv, cwd: this.dir, input, maxBuffer: 1 << 30 });
    return { status: r.status, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** drvbox build, sandboxed, with the settings the oracle has. */
  drvboxBuild(args: string[]): Ran {
    return this.drvbox([
      'build',
      '--sandbox', 'true',
      '--cores', '1',
      '--max-jobs', '1',
      '--option', 'sandbox-fallback', 'false',
      '--option', 'sandbox-paths', [`/bin/sh=${BUSYBOX}`, ...this.sandboxPaths].join(' '),
      '--option', 'system-features', 'benchmark big-parallel ca-derivations',
      ...args,
    ]);
  }

  nixReal(p: string): string {
    return join(this.nix.root, p);
  }

  dxReal(p: string): string {
    return join(this.dxRoot, p);
  }

  remove(): void {
    if (process.env.DRVBOX_KEEP_TEST_DIRS) return;
    removeTree(this.dir);
  }
}
