// What verify reports per table, and its text form. Keys only, never other values: a key is shown as
// the JSON object of its key columns.
import type { CatchUpOutcome } from '../source/catch-up-state.js';
import { DIFF_KINDS, type DiffKind, type DiffSet } from './diff-set.js';

export interface KeyList {
  /** how many keys differ this way */
  count: number;
  /** the first of them (up to the show limit), as key JSON */
  keys: string[];
}

export type Differences = Record<DiffKind, KeyList>;

/** how the repair events of the last round were applied: by the running replicator, or here ('applied-here') */
export type RepairApplied = CatchUpOutcome | 'applied-here';

export interface RepairReport {
  rounds: number;
  /** events written: 'U' for missing and different keys, 'D' for extra keys */
  upserts: number;
  deletes: number;
  catchUp: RepairApplied;
  /** what still differs after the last round (re-checked by key after the replicator caught up) */
  remaining: Differences;
}

export interface TableReport {
  /** source table, schema.table */
  table: string;
  target: string;
  /** equal after everything (with repair: after the repair) */
  equal: boolean;
  sourceRows: number;
  targetRows: number;
  ranges: number;
  differingRanges: number;
  /** differences found in the walk, before waiting for changes in flight */
  firstPass: Record<DiffKind, number>;
  /** waiting for the replicator before the re-check; 'not-needed' when the walk found nothing */
  catchUp: CatchUpOutcome | 'not-needed';
  /** what differs after the re-check (before any repair) */
  differences: Differences;
  /** differences beyond the key limit: counted, not re-checked nor repaired */
  notKept: number;
  repair?: RepairReport;
  notes: string[];
  durationMs: number;
}

export function differencesOf(set: DiffSet, show: number): Differences {
  const out = {} as Differences;
  for (const kind of DIFF_KINDS) out[kind] = { count: 0, keys: [] };
  for (const d of set.diffs()) {
    const l = out[d.kind];
    l.count++;
    if (l.keys.length < show) l.keys.push(d.key.json);
  }
  return out;
}

function countsLine(d: Differences): string {
  return DIFF_KINDS.map((k) => `${k} ${d[k].count}`).join(', ');
}

function keyLines(d: Differences, indent: string): string[] {
  const lines: string[] = [];
  for (const kind of DIFF_KINDS) {
    const l = d[kind];
    if (l.count === 0) continue;
    const more = l.count - l.keys.length;
    lines.push(`${indent}${kind}: ${l.keys.join(' ')}${more > 0 ? ` … and ${more} more` : ''}`);
  }
  return lines;
}

const CATCH_UP_TEXT: Record<TableReport['catchUp'], string> = {
  'not-needed': '',
  'caught-up': 're-checked after the replicator caught up',
  'no-replicator': 'no replicator is running: re-checked without waiting, so changes not yet applied show as differences',
  timeout: 'the replicator did not catch up in time: re-checked anyway, so changes in flight may show as differences',
};

/** The columns of the text form, sized before the first table is done so that rows line up as they come. */
export interface ReportLayout {
  tableWidth: number;
  /** the target column, shown when some table lands under another name */
  targetWidth: number | null;
}

export function reportLayout(tables: readonly { table: string; target: string }[]): ReportLayout {
  const width = (xs: string[]) => Math.max(...xs.map((x) => [...x].length));
  const renamed = tables.some((t) => t.table !== t.target);
  return {
    tableWidth: width(['table', ...tables.map((t) => t.table)]),
    targetWidth: renamed ? width(['target', ...tables.map((t) => t.target)]) : null,
  };
}

const NUMBERS = ['source rows', 'target rows', 'missing', 'extra', 'different'] as const;

function row(l: ReportLayout, table: string, target: string, result: string, numbers: string[], time: string): string {
  const cells = [table.padEnd(l.tableWidth), ...(l.targetWidth === null ? [] : [target.padEnd(l.targetWidth)]), result.padEnd(9)];
  numbers.forEach((n, i) => cells.push(n.padStart(Math.max(NUMBERS[i].length, 7))));
  cells.push(time.padStart(7));
  return cells.join('  ');
}

/** The header line above the tables' rows. */
export function reportHeader(l: ReportLayout): string {
  return row(l, 'table', 'target', 'result', [...NUMBERS], 'time');
}

/**
 * The text form of one table: a row under reportHeader (counts after the re-check), then the
 * differing keys and what happened, indented.
 */
export function formatTableReport(r: TableReport, layout: ReportLayout = reportLayout([r])): string[] {
  const n = (x: number) => x.toLocaleString('en');
  const lines = [
    row(layout, r.table, r.target, r.equal ? 'equal' : 'DIFFERENT',
      [n(r.sourceRows), n(r.targetRows), ...DIFF_KINDS.map((k) => n(r.differences[k].count))], `${(r.durationMs / 1000).toFixed(1)} s`),
  ];
  if (r.differingRanges > 0) lines.push(`  ${r.differingRanges} of ${r.ranges} key range(s) differed in the walk`);
  lines.push(...keyLines(r.differences, '  '));
  const first = DIFF_KINDS.reduce((n, k) => n + r.firstPass[k], 0);
  const now = DIFF_KINDS.reduce((n, k) => n + r.differences[k].count, 0);
  if (first > now) lines.push(`  ${first - now} difference(s) of the first pass did not hold up on re-check (changes in flight, or keys the two sides order differently)`);
  if (CATCH_UP_TEXT[r.catchUp]) lines.push(`  ${CATCH_UP_TEXT[r.catchUp]}`);
  if (r.notKept > 0) lines.push(`  ${r.notKept} more difference(s) beyond the key limit were counted but not re-checked nor repaired; run again`);
  if (r.repair) {
    const rp = r.repair;
    lines.push(`  repair: ${rp.upserts} row(s) re-copied, ${rp.deletes} delete(s) sent in ${rp.rounds} round(s); remaining: ${countsLine(rp.remaining)}`);
    if (rp.catchUp === 'applied-here') lines.push('  no replicator was running: verify applied the repair itself (as catch-up does) and re-checked');
    else if (rp.catchUp === 'no-replicator') lines.push('  repair events are in the outbox; no replicator is running to apply them (run `pg2crate catch-up`)');
    else if (rp.catchUp === 'timeout') lines.push('  the replicator did not apply the repair in time; run verify again');
    lines.push(...keyLines(rp.remaining, '    '));
  }
  for (const n of r.notes) lines.push(`  note: ${n}`);
  return lines;
}
