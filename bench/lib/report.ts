// The suite's result model and its three renderings: raw JSON, a Markdown
// table with the machine described, and an SVG bar chart of the ratios
// (drawn here: a few rectangles and lines need no charting library).
import { fmtMs, fmtRange, sig, type Summary } from './stats.js';

/** One tool's samples in one row. */
export interface Side {
  name: string;
  /** 'ms' (lower is better) or 'MB/s' (higher is better). */
  unit: 'ms' | 'MB/s';
  samples: number[];
  summary: Summary;
  /** Largest peak RSS over the samples, MiB. */
  peakRssMB?: number | null;
  /** Anything else measured per side (CPU per derivation, profile buckets …). */
  extra?: Record<string, unknown>;
}

/** A figure checked against its target from the issues. */
export interface Check {
  label: string;
  value: number | null;
  /** '×': a ratio drvbox / peer of times (drawn in the chart); 'MB', '%', 'ms': absolute. */
  unit: '×' | 'MB' | '%' | 'ms';
  target: number | null;
  cmp: '<=' | '>=' | '<';
  /** null when it could not be measured (a peer missing). */
  met: boolean | null;
}

export interface RowResult {
  id: string;
  /** Row number in issue 7 §1, or a label such as "i2" for another issue's figure. */
  n: string;
  title: string;
  sides: Side[];
  checks: Check[];
  /** Peers that are not installed here, with how to get them. */
  missing: string[];
  notes: string[];
}

export interface MicroResult {
  name: string;
  meanMs: number;
  p50Ms: number;
  opsPerSecond: number;
  samples: number;
  /** Bytes processed per op, for a throughput figure. */
  bytes?: number;
}

export interface Machine {
  date: string;
  cpus: number;
  cpuModel: string;
  memoryGB: number;
  kernel: string;
  os: string;
  node: string;
  uid: number;
  tools: Record<string, string | null>;
  env: string[];
  loadavgStart: number[];
  loadavgEnd?: number[];
}

export interface SuiteResult {
  machine: Machine;
  options: Record<string, unknown>;
  rows: RowResult[];
  micro: MicroResult[];
  durationS?: number;
}

export function side(name: string, unit: Side['unit'], samples: number[], summary: Summary, peakRssMB?: number | null, extra?: Record<string, unknown>): Side {
  const s: Side = { name, unit, samples: samples.map((x) => sig(x)), summary: { ...summary, median: sig(summary.median), min: sig(summary.min), max: sig(summary.max) } };
  if (peakRssMB !== undefined) s.peakRssMB = peakRssMB === null ? null : sig(peakRssMB, 3);
  if (extra) s.extra = extra;
  return s;
}

export function check(label: string, value: number | null, unit: Check['unit'], target: number | null, cmp: Check['cmp'] = '<='): Check {
  const v = value === null || !Number.isFinite(value) ? null : sig(value, 3);
  let met: boolean | null = null;
  if (v !== null && target !== null) met = cmp === '<=' ? v <= target : cmp === '>=' ? v >= target : v < target;
  return { label, value: v, unit, target, cmp, met };
}

const fmtSide = (s: Side): string => {
  const f = s.unit === 'ms' ? fmtMs : (x: number) => `${x.toFixed(0)} MB/s`;
  const range = fmtRange(s.summary, f);
  const rss = s.peakRssMB != null ? `, ${s.peakRssMB.toFixed(0)} MB RSS` : '';
  return `${s.name}: **${f(s.summary.median)}**${range ? ` (${range})` : ''}${rss}`;
};

function fmtValue(c: Check): string {
  if (c.value === null) return 'n/a';
  if (c.unit === '×') return `${c.value.toFixed(2)}×`;
  if (c.unit === '%') return `${c.value.toFixed(1)}%`;
  if (c.unit === 'ms') return `${c.value.toFixed(2)} ms`;
  return `${c.value.toFixed(0)} MB`;
}

function fmtTarget(c: Check): string {
  if (c.target === null) return '';
  const t = c.unit === '×' ? `${c.target}×` : c.unit === '%' ? `${c.target}%` : `${c.target} ${c.unit}`;
  return `${c.cmp.replace('<=', '≤').replace('>=', '≥')} ${t}`;
}

const mark = (m: boolean | null): string => (m === null ? '–' : m ? 'yes' : '**no**');

export function renderMarkdown(r: SuiteResult): string {
  const m = r.machine;
  const out: string[] = [];
  out.push('# drvbox benchmark results', '');
  out.push(`Run ${m.date} with \`npm run bench${r.options.argv ? ` -- ${(r.options.argv as string[]).join(' ')}` : ''}\`${r.durationS ? ` (${Math.round(r.durationS)} s)` : ''}.`, '');
  out.push('## Machine', '');
  out.push(`- ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGB.toFixed(0)} GB RAM`);
  out.push(`- ${m.os}, kernel ${m.kernel}, Node ${m.node}, uid ${m.uid}`);
  out.push(`- peers: ${Object.entries(m.tools).map(([k, v]) => `${k} ${v ?? '**missing**'}`).join('; ')}`);
  for (const e of m.env) out.push(`- ${e}`);
  out.push(`- load average at start ${m.loadavgStart.map((x) => x.toFixed(2)).join(' ')}${m.loadavgEnd ? `, at end ${m.loadavgEnd.map((x) => x.toFixed(2)).join(' ')}` : ''}`);
  out.push('');
  out.push('## Side by side', '');
  out.push('Whole processes, run alternately (A B, B A, …) in one run; medians with min – max; ratios are drvbox / peer of the medians (lower is better).', '');
  out.push('| # | row | measured | figure | value | target | met |', '|---|---|---|---|---|---|---|');
  for (const row of r.rows) {
    const sides = row.sides.map(fmtSide).join('<br>');
    const miss = row.missing.length ? `<br>missing: ${row.missing.join('; ')}` : '';
    const checks = row.checks.length ? row.checks : [null];
    checks.forEach((c, i) => {
      out.push(
        `| ${i === 0 ? row.n : ''} | ${i === 0 ? row.title : ''} | ${i === 0 ? sides + miss : ''} | ${c?.label ?? ''} | ${c ? fmtValue(c) : ''} | ${c ? fmtTarget(c) : ''} | ${c ? mark(c.met) : ''} |`,
      );
    });
  }
  out.push('');
  const notes = r.rows.filter((row) => row.notes.length);
  if (notes.length) {
    out.push('## Notes', '');
    for (const row of notes) for (const n of row.notes) out.push(`- (${row.n}) ${n}`);
    out.push('');
  }
  if (r.micro.length) {
    out.push('## In-process hot paths (tinybench)', '');
    out.push('| task | mean | median | ops/s | throughput |', '|---|---|---|---|---|');
    for (const t of r.micro) {
      const tp = t.bytes ? `${((t.bytes / (t.meanMs / 1000)) / 1e6).toFixed(0)} MB/s` : '';
      out.push(`| ${t.name} | ${fmtMicro(t.meanMs)} | ${fmtMicro(t.p50Ms)} | ${t.opsPerSecond.toFixed(0)} | ${tp} |`);
    }
    out.push('');
  }
  out.push('![ratios](latest.svg)', '');
  return out.join('\n');
}

function fmtMicro(ms: number): string {
  if (ms < 0.001) return `${(ms * 1e6).toFixed(0)} ns`;
  if (ms < 1) return `${(ms * 1000).toFixed(1)} µs`;
  return `${ms.toFixed(2)} ms`;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Bars of the '×' checks on a log scale, growing from 1× (left: drvbox
 * faster, right: slower), with the target of each as a tick.
 */
export function renderSvg(r: SuiteResult): string {
  const bars = r.rows.flatMap((row) => row.checks.filter((c) => c.unit === '×').map((c) => ({ row, c })));
  // Rows sharing a number (the unsandboxed wide DAG and chain are both i3) are told apart by their id.
  const shared = new Set(r.rows.map((row) => row.n).filter((n, i, all) => all.indexOf(n) !== i));
  const W = 900;
  const labelW = 360;
  const plotW = W - labelW - 70;
  const barH = 18;
  const gap = 8;
  const top = 50;
  const H = top + bars.length * (barH + gap) + 40;
  const lo = Math.log2(1 / 16);
  const hi = Math.log2(8);
  const x = (v: number): number => labelW + ((Math.log2(Math.min(Math.max(v, 1 / 16), 8)) - lo) / (hi - lo)) * plotW;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  o.push(`<text x="10" y="20" font-size="14" font-weight="bold">drvbox / peer, time ratio of medians (log scale; left of 1× drvbox is faster)</text>`);
  o.push(`<text x="10" y="38" fill="#555">${esc(`${r.machine.cpus} CPUs, Linux ${r.machine.kernel}, Node ${r.machine.node}, ${r.machine.date.slice(0, 10)}`)} — tick: target; green: target met</text>`);
  for (const t of [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8]) {
    const tx = x(t);
    o.push(`<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${H - 30}" stroke="${t === 1 ? '#000' : '#ddd'}"/>`);
    o.push(`<text x="${tx}" y="${H - 14}" text-anchor="middle" fill="#555">${t < 1 ? `1/${1 / t}` : t}×</text>`);
  }
  bars.forEach(({ row, c }, i) => {
    const y = top + i * (barH + gap);
    o.push(`<text x="${labelW - 8}" y="${y + barH - 5}" text-anchor="end">${esc(`(${row.n}${shared.has(row.n) ? ` ${row.id}` : ''}) ${c.label}`)}</text>`);
    if (c.value === null) {
      o.push(`<text x="${x(1) + 6}" y="${y + barH - 5}" fill="#999">peer missing</text>`);
      return;
    }
    const x0 = Math.min(x(1), x(c.value));
    const x1 = Math.max(x(1), x(c.value));
    const fill = c.met === null ? '#888' : c.met ? '#2e8b57' : '#e07b39';
    o.push(`<rect x="${x0}" y="${y}" width="${Math.max(x1 - x0, 1)}" height="${barH}" fill="${fill}"/>`);
    o.push(`<text x="${x1 + 4}" y="${y + barH - 5}">${c.value.toFixed(2)}×</text>`);
    if (c.target !== null) {
      const tx = x(c.target);
      o.push(`<line x1="${tx}" y1="${y - 2}" x2="${tx}" y2="${y + barH + 2}" stroke="#c00" stroke-width="2"/>`);
    }
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}
