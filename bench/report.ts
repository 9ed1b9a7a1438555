// What every benchmark scenario reports: min / median / max over repetitions, a short table on
// stdout, and the raw figures as JSON under bench/results/ (gitignored), with what the machine was
// doing at the time (load average before and after: other jobs on a 2-core machine are noise).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';

/** `--name=value` options after the scenario name. */
export type BenchArgs = Record<string, string | undefined>;

export interface Spread {
  n: number;
  min: number;
  median: number;
  max: number;
}

/** min / median / max of the figures measured (a figure not measured, NaN, is left out). */
export function spread(xs: number[]): Spread {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return { n: 0, min: NaN, median: NaN, max: NaN };
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { n: s.length, min: s[0], median, max: s[s.length - 1] };
}

/** The q-quantile (0..1) by the nearest-rank method. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** Figures with a sensible number of digits. */
export function fmt(x: number, digits?: number): string {
  if (!Number.isFinite(x)) return String(x);
  const d = digits ?? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : Math.abs(x) >= 1 ? 2 : 3);
  return x.toLocaleString('en', { minimumFractionDigits: d, maximumFractionDigits: d });
}

export function fmtSpread(s: Spread, digits?: number): string {
  if (s.n === 0) return '—';
  return `${fmt(s.min, digits)} / ${fmt(s.median, digits)} / ${fmt(s.max, digits)}`;
}

export function printTable(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  process.stdout.write(`\n${title}\n${line(header)}\n|${widths.map((w, i) => (i === 0 ? ` ${'-'.repeat(w)} ` : ` ${'-'.repeat(w - 1)}: `)).join('|')}|\n${rows.map(line).join('\n')}\n`);
}

export function note(text: string): void {
  process.stdout.write(`${text}\n`);
}

export interface Machine {
  cores: number;
  cpu: string;
  node: string;
  commit: string;
  dirty: boolean;
  loadBefore: number[];
}

export function machine(): Machine {
  let commit = 'unknown';
  let dirty = false;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'migrations'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
  } catch { /* not a checkout */ }
  return { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, commit, dirty, loadBefore: loadavg() };
}

/** Writes bench/results/<scenario>-<timestamp>.json and returns its path. */
export function writeResult(scenario: string, started: Machine, data: unknown): string {
  const dir = join('bench', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = join(dir, `${scenario}-${stamp}.json`);
  writeFileSync(file, JSON.stringify({ scenario, finishedAt: new Date().toISOString(), machine: { ...started, loadAfter: loadavg() }, ...(data as object) }, null, 2) + '\n');
  return file;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
