// Where a drvbox process spends its CPU: a `node --cpu-prof` profile
// summarised by area (drvbox's source dirs, module loading, SQLite, garbage
// collection, idle). Profiled runs use the unbundled tsc output so that
// samples name their source dir.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

export function summariseProfileDir(dir: string): Record<string, number> {
  const f = readdirSync(dir).find((x) => x.endsWith('.cpuprofile'));
  if (!f) throw new Error(`no .cpuprofile in ${dir}`);
  return summariseProfile(join(dir, f));
}

export interface SummaryOptions {
  /** Bucket drvbox's code by file (`src/build/goal`) instead of by dir (`src/build`). */
  byFile?: boolean;
  /** Keep only the largest buckets. */
  top?: number;
}

export function summariseProfile(file: string, o: SummaryOptions = {}): Record<string, number> {
  const area = o.byFile ? /\/dist\/((?:src|backends)\/[a-z-]+\/[a-z-]+)\.js/ : /\/dist\/(src\/[a-z-]+|backends\/[a-z]+)\//;
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const buckets: Record<string, number> = {};
  p.samples.forEach((id, k) => {
    const dt = (p.timeDeltas[k] ?? 0) / 1000;
    const self = byId.get(id)!.callFrame;
    let bucket = 'node internals';
    if (self.functionName === '(garbage collector)') bucket = 'garbage collector';
    else if (self.functionName === '(idle)') bucket = 'idle (waiting)';
    else if (self.functionName === '(program)') bucket = 'V8/native (program)';
    else {
      for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
        const f = byId.get(x)!.callFrame;
        if (/compileSourceTextModule|compileForInternalLoader|wrapSafe|Module\._compile|defaultResolve|ModuleJob|moduleStrategy/.test(f.functionName)) {
          bucket = 'module loading';
          break;
        }
        const m = area.exec(f.url);
        if (m) {
          bucket = `drvbox ${m[1]}`;
          break;
        }
        if (f.url.includes('better-sqlite3')) {
          bucket = 'better-sqlite3';
          break;
        }
        if (f.url.includes('koffi')) {
          bucket = 'koffi';
          break;
        }
        if (f.url.includes('/cac/')) {
          bucket = 'cac';
          break;
        }
      }
    }
    buckets[bucket] = (buckets[bucket] ?? 0) + dt;
  });
  return Object.fromEntries(
    Object.entries(buckets)
      .sort((a, b) => b[1] - a[1])
      .slice(0, o.top ?? Infinity)
      .map(([k, v]) => [k, Math.round(v * 10) / 10]),
  );
}
