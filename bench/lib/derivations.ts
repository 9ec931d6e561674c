// The derivations the whole-build rows use, made with drvbox's own
// derivation code (the same .drv bytes and paths nix-instantiate writes) and
// handed to both tools as one `nix-store --export` stream: `nix-store
// --import` for Nix, `drvbox store import` for drvbox, so both build exactly
// the same .drv files and neither needs the other to instantiate them.
import { derivationPath, completeDerivation, type DerivationResolver } from '../../src/format/hash-modulo.js';
import type { Derivation, DraftOutput } from '../../src/format/derivation.js';
import { printDerivationBytes } from '../../src/format/aterm.js';
import { exportEntryTrailer, exportPathStart, exportStreamEnd } from '../../src/format/export-stream.js';
import { NarWriter } from '../../src/format/nar-writer.js';
import { hashPlaceholder } from '../../src/format/store-path.js';

export const STORE_DIR = '/nix/store';
/** What runs a script: the builder and the arguments before `-c SCRIPT`. */
export const DEFAULT_SHELL: readonly string[] = ['/bin/sh'];
export const SYSTEM = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux`;

export interface DrvSpec {
  name: string;
  /** A busybox sh script; `@IN<i>@` is replaced by the output path of inputs[i]. */
  script: string;
  /** .drv paths of inputs (their `out`). */
  inputs?: readonly string[];
  /** A CA floating output (recursive sha256), the rest input-addressed. */
  contentAddressed?: boolean;
}

export interface SetOptions {
  /** The logical store dir the paths are made for (default /nix/store). */
  storeDir?: string;
  /** Builder and leading arguments (default /bin/sh: busybox in the sandbox). */
  shell?: readonly string[];
}

export class DrvSet {
  private readonly drvs = new Map<string, Derivation>();
  private readonly order: string[] = [];
  private readonly resolve: DerivationResolver = (p) => this.drvs.get(p);
  readonly storeDir: string;
  private readonly shell: readonly string[];

  constructor(o: SetOptions = {}) {
    this.storeDir = o.storeDir ?? STORE_DIR;
    this.shell = o.shell ?? DEFAULT_SHELL;
  }

  /** Adds a derivation; returns its .drv path. */
  add(s: DrvSpec): string {
    const inputs = s.inputs ?? [];
    let script = s.script;
    inputs.forEach((p, i) => {
      const out = this.drvs.get(p)?.outputs.get('out');
      const path = out && out.kind === 'inputAddressed' ? out.path : hashPlaceholder('out');
      script = script.replaceAll(`@IN${i}@`, path);
    });
    const env = new Map<string, string>([
      ['builder', this.shell[0]!],
      ['name', s.name],
      ['system', SYSTEM],
    ]);
    let out: DraftOutput = { kind: 'inputAddressed' };
    if (s.contentAddressed) {
      out = { kind: 'caFloating', method: 'recursive', hashAlgo: 'sha256' };
      env.set('__contentAddressed', '1');
      env.set('outputHashAlgo', 'sha256');
      env.set('outputHashMode', 'recursive');
    }
    const done = completeDerivation(
      {
        name: s.name,
        outputs: new Map([['out', out]]),
        inputDrvs: new Map(inputs.map((p) => [p, new Set(['out'])])),
        inputSrcs: new Set(),
        platform: SYSTEM,
        builder: this.shell[0]!,
        args: [...this.shell.slice(1), '-c', script],
        env,
      },
      { storeDir: this.storeDir, resolve: this.resolve },
    );
    if (!this.drvs.has(done.drvPath)) {
      this.drvs.set(done.drvPath, done.drv);
      this.order.push(done.drvPath);
    }
    return done.drvPath;
  }

  derivation(drvPath: string): Derivation | undefined {
    return this.drvs.get(drvPath);
  }

  get size(): number {
    return this.order.length;
  }

  /** The export stream of every .drv, references first. */
  exportStream(): Buffer {
    const parts: Uint8Array[] = [];
    for (const p of this.order) {
      const drv = this.drvs.get(p)!;
      if (derivationPath(drv, this.storeDir) !== p) throw new Error(`internal: ${p} changed`);
      const text = printDerivationBytes(drv);
      parts.push(exportPathStart());
      parts.push(
        NarWriter.encodeAll([
          { type: 'regular', executable: false, size: text.length },
          { type: 'contents', data: text },
          { type: 'regularEnd' },
        ]),
      );
      parts.push(exportEntryTrailer({ path: p, references: [...drv.inputDrvs.keys(), ...drv.inputSrcs], deriver: null }, this.storeDir));
    }
    parts.push(exportStreamEnd());
    return Buffer.concat(parts);
  }
}

export interface ShapeOptions extends SetOptions {
  /** Shell commands the target's script runs last (after writing $out). */
  targetTail?: string;
}

const tail = (o: ShapeOptions): string => (o.targetTail ? `; ${o.targetTail}` : '');

/** `leaves` trivial derivations and one root that depends on all of them. */
export function wideDag(leaves: number, tag = 'wide', o: ShapeOptions = {}): { set: DrvSet; target: string } {
  const set = new DrvSet(o);
  const ls = Array.from({ length: leaves }, (_, i) => set.add({ name: `${tag}-${i}`, script: `echo ${i} > $out` }));
  const target = set.add({ name: `${tag}-root`, script: `echo ${ls.map((_, i) => `@IN${i}@`).join(' ')} > $out${tail(o)}`, inputs: ls });
  return { set, target };
}

/** A chain of `n` derivations, each depending on the one before. */
export function chain(n: number, tag = 'chain', o: ShapeOptions = {}): { set: DrvSet; target: string } {
  const set = new DrvSet(o);
  let prev: string | null = null;
  for (let i = 1; i <= n; i++) {
    const last = i === n ? tail(o) : '';
    prev = set.add({ name: `${tag}-${i}`, script: (prev ? `echo ${i} @IN0@ > $out` : `echo ${i} > $out`) + last, inputs: prev ? [prev] : [] });
  }
  return { set, target: prev! };
}

/**
 * `total` derivations in layers of `width` (the last one may be shorter),
 * each depending on two of the layer before, plus a root on the last layer.
 */
export function layeredDag(total: number, width: number, tag = 'dag'): { set: DrvSet; target: string } {
  const set = new DrvSet();
  let prev: string[] = [];
  let made = 0;
  for (let layer = 0; made < total - 1; layer++) {
    const cur: string[] = [];
    for (let i = 0; i < width && made < total - 1; i++, made++) {
      const inputs = prev.length ? [...new Set([prev[i % prev.length]!, prev[(i + 1) % prev.length]!])] : [];
      cur.push(set.add({ name: `${tag}-${layer}-${i}`, script: `echo ${layer} ${i} ${inputs.map((_, k) => `@IN${k}@`).join(' ')} > $out`, inputs }));
    }
    prev = cur;
  }
  const target = set.add({ name: `${tag}-root`, script: `echo ${prev.map((_, k) => `@IN${k}@`).join(' ')} > $out`, inputs: prev });
  return { set, target };
}

/**
 * One derivation writing `bytes` of text lines of `pad` 'x' followed by a
 * store path: the path of a small input (input-addressed: a reference to
 * scan for) or its own $out (CA floating: self-references to rewrite).
 */
export function bigOutput(bytes: number, pad: number, contentAddressed: boolean, tag = 'big'): { set: DrvSet; target: string } {
  const set = new DrvSet();
  const filler = `$(head -c ${pad} /dev/zero | tr '\\0' x)`;
  if (contentAddressed) {
    const target = set.add({
      name: `${tag}-ca`,
      script: `mkdir $out; yes "${filler}$out" | head -c ${bytes} > $out/big; echo $out > $out/small`,
      contentAddressed: true,
    });
    return { set, target };
  }
  const dep = set.add({ name: `${tag}-dep`, script: 'echo dependency > $out' });
  const target = set.add({ name: tag, script: `mkdir $out; yes "${filler}@IN0@" | head -c ${bytes} > $out/big`, inputs: [dep] });
  return { set, target };
}
