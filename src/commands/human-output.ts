// The text a person reads: aligned columns, counts with thousands separators, durations, and an
// initial load's progress. The --json form of each command prints its data as it is instead.
import type { BackfillProgress } from '../load/backfill.js';

/** Rows as columns, each as wide as its widest cell; the columns `right` names are right-aligned (numbers). */
export function alignColumns(rows: string[][], right: ReadonlySet<number> = new Set()): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, [...cell].length); });
  return rows.map((r) => r.map((cell, i) => {
    if (i === r.length - 1 && !right.has(i)) return cell; // no trailing spaces
    const pad = ' '.repeat(widths[i] - [...cell].length);
    return right.has(i) ? pad + cell : cell + pad;
  }).join('  ').trimEnd());
}

export function count(n: number): string {
  return Math.round(n).toLocaleString('en');
}

/** 45 s, 12 min 5 s, 3 h 20 min */
export function duration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  return `${Math.floor(s / 3600)} h${Math.floor((s % 3600) / 60) ? ` ${Math.floor((s % 3600) / 60)} min` : ''}`;
}

/** `12,000 of ~100,000 rows (12%), 5,000 rows/s, ETA 18 s`; the parts not known yet are left out. */
export function loadProgressText(p: Omit<BackfillProgress, 'table'>): string {
  const parts: string[] = [];
  if (p.rowsEstimate && p.rowsCopied <= p.rowsEstimate) {
    parts.push(`${count(p.rowsCopied)} of ~${count(p.rowsEstimate)} rows (${Math.floor((100 * p.rowsCopied) / Math.max(p.rowsEstimate, 1))}%)`);
  } else parts.push(`${count(p.rowsCopied)} rows`);
  if (p.rowsPerSecond > 0) parts.push(`${count(p.rowsPerSecond)} rows/s`);
  if (p.etaSeconds !== null) parts.push(`ETA ${duration(p.etaSeconds)}`);
  return parts.join(', ');
}
