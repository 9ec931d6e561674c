// An in-memory DaemonStore for protocol tests. It computes real store paths
// and NAR hashes (so a real Nix client accepts its answers) and "builds" a
// derivation by writing a small file per output.
import { hashBytes, formatHash, type Hash } from '../../src/format/hash.js';
import { makeFixedOutputPath, makeTextPath, DEFAULT_STORE_DIR } from '../../src/format/store-path.js';
import { narOfFile } from '../../src/daemon/client.js';
import { BuildStatus } from '../../src/daemon/protocol.js';
import type {
  AddNarOptions,
  AddToStoreRequest,
  BuildResult,
  DaemonStore,
  DerivedPath,
  GcRequest,
  GcResult,
  GcRoot,
  MissingInfo,
  OpContext,
  PathInfo,
  Realisation,
} from '../../src/daemon/store-api.js';

export class FakeInvalidPath extends Error {}

interface Entry {
  info: PathInfo;
  nar: Buffer;
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

export class FakeStore implements DaemonStore {
  readonly storeDir: string;
  readonly paths = new Map<string, Entry>();
  readonly calls: string[] = [];
  readonly tempRoots = new Set<string>();
  readonly indirectRoots = new Set<string>();
  readonly drvText = new Map<string, string>();
  readonly realisations = new Map<string, Realisation>();
  /** When set, buildPaths waits for this promise (or the client's disconnect). */
  buildGate: Promise<void> | null = null;
  /** Called when a build notices its client went away. */
  onBuildAborted: (() => void) | null = null;
  now = 1700000000;

  constructor(storeDir = DEFAULT_STORE_DIR) {
    this.storeDir = storeDir;
  }

  private register(info: PathInfo, nar: Buffer): void {
    this.paths.set(info.path, { info, nar });
  }

  private info(path: string): PathInfo | null {
    return this.paths.get(path)?.info ?? null;
  }

  async isValidPath(path: string, _ctx: OpContext): Promise<boolean> {
    this.calls.push('isValidPath');
    return this.paths.has(path);
  }

  async queryValidPaths(paths: string[], _s: boolean, _ctx: OpContext): Promise<string[]> {
    this.calls.push('queryValidPaths');
    return paths.filter((p) => this.paths.has(p)).sort();
  }

  async queryPathInfo(path: string, _ctx: OpContext): Promise<PathInfo | null> {
    this.calls.push('queryPathInfo');
    return this.info(path);
  }

  async queryReferrers(path: string, _ctx: OpContext): Promise<string[]> {
    this.calls.push('queryReferrers');
    return [...this.paths.values()].filter((e) => e.info.references.includes(path)).map((e) => e.info.path).sort();
  }

  /** Outputs of a .drv added as text: `Derive([("out","/nix/store/…",…` */
  outputsOf(drvPath: string): Map<string, string> {
    const text = this.drvText.get(drvPath);
    if (text === undefined) throw new FakeInvalidPath(`path '${drvPath}' is not valid`);
    const m = new Map<string, string>();
    const outs = /^Derive\(\[(.*?)\],/.exec(text)?.[1] ?? '';
    for (const o of outs.matchAll(/\("([^"]+)","([^"]*)","[^"]*","[^"]*"\)/g)) m.set(o[1]!, o[2]!);
    return m;
  }

  async queryDerivationOutputMap(drvPath: string, _ctx: OpContext): Promise<Map<string, string | null>> {
    this.calls.push('queryDerivationOutputMap');
    return new Map(this.outputsOf(drvPath));
  }

  async queryMissing(targets: DerivedPath[], _ctx: OpContext): Promise<MissingInfo> {
    this.calls.push('queryMissing');
    const willBuild = new Set<string>();
    const unknown = new Set<string>();
    for (const t of targets) {
      if (t.kind === 'opaque') {
        if (!this.paths.has(t.path)) unknown.add(t.path);
      } else if (!this.drvText.has(t.drvPath)) unknown.add(t.drvPath);
      else if ([...this.outputsOf(t.drvPath).values()].some((p) => !this.paths.has(p))) willBuild.add(t.drvPath);
    }
    return { willBuild: [...willBuild].sort(), willSubstitute: [], unknown: [...unknown].sort(), downloadSize: 0, narSize: 0 };
  }

  async queryAllValidPaths(_ctx: OpContext): Promise<string[]> {
    this.calls.push('queryAllValidPaths');
    return [...this.paths.keys()].sort();
  }

  async queryPathFromHashPart(hashPart: string, _ctx: OpContext): Promise<string | null> {
    this.calls.push('queryPathFromHashPart');
    return [...this.paths.keys()].find((p) => p.startsWith(`${this.storeDir}/${hashPart}-`)) ?? null;
  }

  async addToStore(req: AddToStoreRequest, contents: AsyncIterable<Uint8Array>, _ctx: OpContext): Promise<PathInfo> {
    this.calls.push('addToStore');
    const data = await collect(contents);
    let path: string;
    let nar: Buffer;
    let ca: string;
    if (req.method.kind === 'text') {
      const h = hashBytes('sha256', data);
      path = makeTextPath(this.storeDir, h, req.name, req.references);
      nar = narOfFile(data);
      ca = `text:${formatHash(h)}`;
      if (req.name.endsWith('.drv')) this.drvText.set(path, data.toString());
    } else if (req.method.recursive) {
      const h = hashBytes(req.method.algo, data);
      path = makeFixedOutputPath(this.storeDir, 'recursive', h, req.name, req.references);
      nar = data;
      ca = `fixed:r:${formatHash(h)}`;
    } else {
      const h = hashBytes(req.method.algo, data);
      path = makeFixedOutputPath(this.storeDir, 'flat', h, req.name, req.references);
      nar = narOfFile(data);
      ca = `fixed:${formatHash(h)}`;
    }
    const existing = this.info(path);
    if (existing) return existing;
    const info: PathInfo = {
      path,
      deriver: null,
      narHash: hashBytes('sha256', nar),
      references: [...req.references].sort(),
      registrationTime: this.now,
      narSize: nar.length,
      ultimate: true,
      sigs: [],
      ca,
    };
    this.register(info, nar);
    return info;
  }

  async addNarToStore(info: PathInfo, nar: AsyncIterable<Uint8Array>, _o: AddNarOptions, _ctx: OpContext): Promise<void> {
    this.calls.push('addNarToStore');
    const data = await collect(nar);
    const h = hashBytes('sha256', data);
    if (Buffer.compare(h.digest, info.narHash.digest) !== 0) {
      throw new Error(`hash mismatch importing path '${info.path}'; specified: ${formatHash(info.narHash)}, got: ${formatHash(h)}`);
    }
    if (data.length !== info.narSize) throw new Error(`size mismatch importing path '${info.path}'`);
    this.register({ ...info, registrationTime: this.now }, data);
  }

  async narFromPath(path: string, _ctx: OpContext): Promise<AsyncIterable<Uint8Array>> {
    this.calls.push('narFromPath');
    const e = this.paths.get(path);
    if (!e) throw new FakeInvalidPath(`path '${path}' is not valid`);
    const nar = e.nar;
    return (async function* () {
      for (let off = 0; off < nar.length; off += 1000) yield nar.subarray(off, off + 1000);
    })();
  }

  private fakeOutput(drvPath: string, output: string, path: string): PathInfo {
    const nar = narOfFile(Buffer.from(`built ${output} of ${drvPath}\n`));
    const info: PathInfo = {
      path,
      deriver: drvPath,
      narHash: hashBytes('sha256', nar),
      references: [],
      registrationTime: this.now,
      narSize: nar.length,
      ultimate: true,
      sigs: [],
      ca: null,
    };
    this.register(info, nar);
    return info;
  }

  async buildPaths(targets: DerivedPath[], _mode: number, ctx: OpContext): Promise<BuildResult[]> {
    this.calls.push('buildPaths');
    if (this.buildGate) {
      await Promise.race([
        this.buildGate,
        new Promise<void>((_, reject) => {
          const onAbort = () => {
            this.onBuildAborted?.();
            reject(new Error('build interrupted: client went away'));
          };
          if (ctx.signal.aborted) onAbort();
          else ctx.signal.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
    }
    const results: BuildResult[] = [];
    for (const t of targets) {
      const base = { errorMsg: '', timesBuilt: 0, isNonDeterministic: false, startTime: 0, stopTime: 0, builtOutputs: [] as Realisation[] };
      if (t.kind === 'opaque') {
        if (this.paths.has(t.path)) results.push({ ...base, path: t, status: BuildStatus.AlreadyValid });
        else
          results.push({
            ...base,
            path: t,
            status: BuildStatus.NoSubstituters,
            errorMsg: `path '${t.path}' is required, but there is no substituter that can build it`,
          });
        continue;
      }
      const outs = this.outputsOf(t.drvPath);
      const text = this.drvText.get(t.drvPath)!;
      if (text.includes('FAIL_THIS_BUILD')) {
        ctx.log(`building '${t.drvPath}'...`);
        results.push({ ...base, path: t, status: BuildStatus.PermanentFailure, errorMsg: `builder for '${t.drvPath}' failed with exit code 1` });
        continue;
      }
      const wanted = t.outputs.length === 0 ? [...outs.keys()] : t.outputs;
      const built: Realisation[] = [];
      let didBuild = false;
      for (const o of wanted) {
        const p = outs.get(o);
        if (p === undefined) throw new Error(`derivation '${t.drvPath}' does not have an output named '${o}'`);
        if (!this.paths.has(p)) {
          if (!didBuild) ctx.log(`building '${t.drvPath}'...`);
          didBuild = true;
          this.fakeOutput(t.drvPath, o, p);
        }
        const drvHash = formatHash(hashBytes('sha256', t.drvPath), 'base16');
        built.push({ id: `${drvHash}!${o}`, outPath: p, signatures: [], dependentRealisations: {} });
      }
      results.push({
        ...base,
        path: t,
        status: didBuild ? BuildStatus.Built : BuildStatus.AlreadyValid,
        timesBuilt: didBuild ? 1 : 0,
        startTime: didBuild ? this.now : 0,
        stopTime: didBuild ? this.now : 0,
        builtOutputs: built,
      });
    }
    return results;
  }

  async ensurePath(path: string, _ctx: OpContext): Promise<void> {
    this.calls.push('ensurePath');
    if (!this.paths.has(path)) throw new FakeInvalidPath(`path '${path}' is not valid`);
  }

  async addTempRoot(path: string, _ctx: OpContext): Promise<void> {
    this.calls.push('addTempRoot');
    this.tempRoots.add(path);
  }

  async addIndirectRoot(path: string, _ctx: OpContext): Promise<void> {
    this.calls.push('addIndirectRoot');
    this.indirectRoots.add(path);
  }

  async findRoots(_censor: boolean, _ctx: OpContext): Promise<GcRoot[]> {
    this.calls.push('findRoots');
    return [...this.tempRoots].sort().map((t) => ({ link: '{temp:1}', target: t }));
  }

  async collectGarbage(_req: GcRequest, _ctx: OpContext): Promise<GcResult> {
    this.calls.push('collectGarbage');
    return { paths: [], bytesFreed: 0n };
  }

  async queryRealisation(id: string, _ctx: OpContext): Promise<Realisation | null> {
    this.calls.push('queryRealisation');
    return this.realisations.get(id) ?? null;
  }

  async registerDrvOutput(r: Realisation, _ctx: OpContext): Promise<void> {
    this.calls.push('registerDrvOutput');
    this.realisations.set(r.id, r);
  }
}

export function sha256Of(data: Uint8Array | string): Hash {
  return hashBytes('sha256', data);
}
